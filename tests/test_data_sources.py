"""`data.source`: training and evaluation read bAbI files (the generator's and the released ones)
and the project's TFDS dataset (built once, then reused); bad sources are named."""

import re
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import sources
from memreasoner_jax.data import tfds_builder
from memreasoner_jax import input_pipeline
from memreasoner_jax import metric_writers
from memreasoner_jax.tasks import babi_format
from memreasoner_jax.tasks import output
from memreasoner_jax.tasks import registry
from memreasoner_jax.tasks import vocab
from memreasoner_jax.tasks.reference_data import shared_data_dir
from memreasoner_jax import train

DATA = shared_data_dir()


def _config(source, tfds_dir="~/tensorflow_datasets", eval_examples=8):
  config = babi.get_config("qa1,tiny,runlocal")
  config.data.source = source
  config.data.tfds_dir = tfds_dir
  config.data.eval_examples = eval_examples
  # One example per fake device (conftest's eight): see BUILD_NOTES, "Batched SVD on many fake
  # CPU devices".
  config.data.global_batch = config.data.eval_batch = 8
  config.training.num_steps = 2
  config.training.checkpoint_every = config.training.eval_every = 100
  return config


def _write_generated_babi(directory):
  for split, num in (("train", 40), ("test", 10)):
    stories = registry.generate_stories("qa1", split, num, seed=3)
    (directory / f"qa1_generated_{split}.txt").write_text(babi_format.format_babi(stories))


def test_files_source_trains_on_generated_babi_files(tmp_path):
  _write_generated_babi(tmp_path)
  config = _config(f"files:{tmp_path}/qa1_*_{{split}}.txt")
  expected = babi_format.stories_to_examples(
      registry.generate_stories("qa1", "train", 40, seed=3), "qa1")
  assert input_pipeline.train_examples(config.data) == expected
  held_out = input_pipeline.eval_examples(config.data)
  assert list(held_out) == ["qa1"] and len(held_out["qa1"]) == 8
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["eval/qa1/babilong"] >= 0 and "eval/qa1/sf_accuracy" in results
  final = metric_writers.read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))[-1]
  assert final["step"] == 2 and "eval/qa1/exact_match" in final


@pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not present")
def test_files_source_reads_the_released_babi_files():
  config = _config(f"files:{DATA}/babi/en/qa1_*_{{split}}.txt", eval_examples=1000)
  train_split = input_pipeline.train_examples(config.data)
  test_split = input_pipeline.eval_examples(config.data)["qa1"]
  assert len(train_split) == len(test_split) == 1000  # 200 stories of 5 questions each
  first = train_split[0]
  assert first.context == ("Mary moved to the bathroom.", "John went to the hallway.")
  assert (first.question, first.answer, first.support) == ("Where is Mary?", "bathroom", (0,))
  batch = input_pipeline.make_batcher(config.data)(train_split[:8])
  assert batch["context_BxExT"].shape[0] == 8


def test_tfds_source_builds_once_and_trains(tmp_path, monkeypatch):
  config = _config("tfds:memreasoner_tasks/qa1_0k", tfds_dir=str(tmp_path / "tfds"))
  builds = []
  original = tfds_builder.MemreasonerTasks.generate_split

  def counted(self, split, num):
    builds.append(split)
    return original(self, split, num)

  monkeypatch.setattr(tfds_builder.MemreasonerTasks, "generate_split", counted)
  train.train_and_evaluate(config, str(tmp_path / "first"))
  assert sorted(builds) == ["test", "train"]
  generated = registry.generate("qa1", "train", 10000, seed=0)
  assert input_pipeline.train_examples(config.data) == generated  # the builder's own examples
  builds.clear()
  results = train.train_and_evaluate(config, str(tmp_path / "second"))
  assert builds == [] and "eval/qa1/babilong" in results


@pytest.mark.parametrize("source, message", [
    ("generatd", "is not one of generated, files:PATTERN, tfds:NAME"),
    ("files:", "is not one of"),
    ("files:/nowhere/qa1_*.txt", "must hold {split}"),
    ("files:/nowhere/qa1_*_{split}.txt", "no train file matches /nowhere/qa1_\\*_train.txt"),
    ("tfds:memreasoner_tasks/qa9_0k", "has no config 'qa9_0k'; choose one of qa1_0k"),
    ("tfds:memreasoner_tasks/qa1_4k", "has no train split \\(it has test\\)"),
])
def test_bad_sources_are_named(tmp_path, source, message):
  config = _config(source, tfds_dir=str(tmp_path / "tfds"))
  with pytest.raises(sources.SourceError, match=message):
    input_pipeline.train_examples(config.data)


def test_a_file_in_the_wrong_format_is_named(tmp_path):
  (tmp_path / "qa1_notes_train.txt").write_text("Mary went home, then\nsomething else\n")
  config = _config(f"files:{tmp_path}/qa1_*_{{split}}.txt")
  with pytest.raises(sources.SourceError, match="qa1_notes_train.txt is neither a bAbI-format"):
    input_pipeline.train_examples(config.data)


def test_a_malformed_record_is_named_by_file_and_line(tmp_path):
  good = output.format_jsonl(registry.generate("qa1", "train", 2, seed=0))
  (tmp_path / "qa1_train.jsonl").write_text(good + '{"context": ["Mary went home."]}\n')
  config = _config(f"files:{tmp_path}/qa1_{{split}}.jsonl")
  with pytest.raises(sources.SourceError, match=r"qa1_train.jsonl:3: not a JSON Example record"):
    input_pipeline.train_examples(config.data)
  (tmp_path / "qa1_train.jsonl").write_text(good + "{oops\n")
  with pytest.raises(sources.SourceError, match=r"qa1_train.jsonl:3: .*'\{oops'"):
    input_pipeline.train_examples(config.data)
  (tmp_path / "qa1_x_train.txt").write_text("1 Mary went home.\n2 Where is Mary?\thome\t9\n")
  config = _config(f"files:{tmp_path}/qa1_x_{{split}}.txt")
  with pytest.raises(sources.SourceError, match=r"qa1_x_train.txt:2: support ids \[9\]"):
    input_pipeline.train_examples(config.data)


def test_generated_training_renames_the_configured_share_of_stories():
  config = _config("generated")
  config.data.train_examples = 400
  plain = input_pipeline.train_examples(config.data)
  config.data.rename_fraction = 0.5
  mixed = input_pipeline.train_examples(config.data)
  renamed = [m for p, m in zip(plain, mixed) if m != p]
  assert 150 < len(renamed) < 250
  rooms = set(vocab.ROOMS)
  assert all(m.answer not in rooms and m.question == p.question
             for p, m in zip(plain, mixed) if m != p)
  assert all(m.answer in rooms for p, m in zip(plain, mixed) if m == p)


def test_generated_training_doubles_a_letter_in_the_configured_share_of_pseudo_rooms():
  config = _config("generated")
  config.data.train_examples = 200
  config.data.rename_fraction = 1.0
  share = lambda examples: sum(bool(re.search(r"(.)\1", ex.answer)) for ex in examples) / 200
  plain = share(input_pipeline.train_examples(config.data))
  config.data.rename_doubled = 1.0
  assert plain < 0.3 and share(input_pipeline.train_examples(config.data)) == 1.0


def test_generated_training_gives_the_configured_share_of_vt_examples_pseudo_values():
  config = _config("generated")
  config.data.tasks = "vt1"
  config.data.train_examples = 400
  plain = input_pipeline.train_examples(config.data)
  config.data.value_rename_fraction = 0.5
  mixed = input_pipeline.train_examples(config.data)
  renamed = [(p, m) for p, m in zip(plain, mixed) if m != p]
  assert 150 < len(renamed) < 250
  assert all(m.answer == p.answer and m.question != p.question for p, m in renamed)
  assert all(len(re.search(r"value (\d+) ", m.question)[1]) in range(3, 9) for _, m in renamed)
  config.data.value_rename_fraction, config.data.rename_fraction = 0.0, 0.5
  assert input_pipeline.train_examples(config.data) == plain  # rooms only rename bAbI stories
