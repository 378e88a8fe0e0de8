"""A TFDS dataset of generated task Examples, stored as ArrayRecord and read without TensorFlow.

Configs are task x haystack length (x answer-renamed), e.g. `qa1_0k`, `qa2_4k`,
`vt1_16k_renamed`; the Examples come from `tasks.registry.generate`. Records keep generation order (shuffling is the input pipeline's job, seeded per
epoch), so record i is the Example with index i. The lines per example are stored in the dataset
metadata, so every host can pick a global batch's line bucket without reading other hosts' records.

  python -m memreasoner_jax.data.tfds_builder --config=qa2_4k --data_dir=~/tensorflow_datasets
"""

from collections.abc import Iterator, Sequence
import dataclasses
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow_datasets as tfds

from memreasoner_jax.data import lines
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import haystack
from memreasoner_jax.tasks import registry

NAME = "memreasoner_tasks"
TASKS = ("qa1", "qa2", "vt1", "vt2")
LENGTHS = ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k")


@dataclasses.dataclass
class TaskConfig(tfds.core.BuilderConfig):
  """One generated dataset: which task, how long a haystack, which split sizes and seed."""

  task: str = "qa1"
  length: str = "0k"  # BABILong length name ("0k": facts only); see tasks/lengths.py.
  renamed: bool = False  # Answer words replaced by words never seen in training.
  splits: tuple[tuple[str, int], ...] = (("train", 10000), ("test", 1000))
  seed: int = 0
  # Distractor lines longer than this many UTF-8 bytes are split at spaces (lines.py), so any
  # tokenizer fits every line in line_tokens = max_line_bytes + 2; 0 keeps lines whole.
  max_line_bytes: int = 254


def task_config(task: str, length: str, renamed: bool = False, **kwargs) -> TaskConfig:
  """The standard config: a train split only for short stories (the paper trains on those)."""
  name = f"{task}_{length}" + ("_renamed" if renamed else "")
  splits = (("train", 10000), ("test", 1000)) if length == "0k" and not renamed else (
      ("test", 1000),)
  kwargs = {"splits": splits, **kwargs}
  return TaskConfig(name=name, task=task, length=length, renamed=renamed,
                    description=f"{task}, {length} haystack"
                    + (", answers renamed" if renamed else ""), **kwargs)


class MemreasonerTasks(tfds.core.GeneratorBasedBuilder):
  """Generated bAbI-style questions in haystacks; one Example per record."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [task_config(task, length, renamed) for task in TASKS for length in LENGTHS
                     for renamed in (False, True)]

  def _info(self) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict({
        "context": tfds.features.Sequence(tfds.features.Text()),
        "question": tfds.features.Text(),
        "answer": tfds.features.Text(),
        "support": tfds.features.Sequence(np.int32),
        "task": tfds.features.Text(),
        "index": np.int64,
    })
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True,
                                 metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is generated locally.
    splits = {}
    self.info.metadata["num_lines"] = {}
    for split, num in self.builder_config.splits:
      examples = self.generate_split(split, num)
      if self.builder_config.max_line_bytes:
        examples = [lines.split_long_lines(ex, self.builder_config.max_line_bytes)
                    for ex in examples]
      self.info.metadata["num_lines"][split] = [len(ex.context) for ex in examples]
      splits[split] = self._generate_examples(examples)
    return splits

  def _generate_examples(self, examples: Sequence[Example]):
    for position, ex in enumerate(examples):
      if ex.index != position:
        raise ValueError(f"Example {ex.task}[{ex.index}] is at position {position} of its split; "
                         "indices must count from 0 in order")
      yield position, {"context": list(ex.context), "question": ex.question,
                       "answer": ex.answer, "support": list(ex.support), "task": ex.task,
                       "index": ex.index}

  def generate_split(self, split: str, num: int) -> list[Example]:
    """Generates one split in-process with the task generators."""
    config = self.builder_config
    return registry.generate(config.task, split, num, seed=config.seed, length=config.length,
                             rename_answers=config.renamed,
                             max_line_chars=config.max_line_bytes or haystack.MAX_LINE_CHARS)


class TfdsSource:
  """A split of a built dataset as a random-access source of Examples (no TensorFlow)."""

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
    self._records = builder.as_data_source(split=split)
    stored = (builder.info.metadata or {}).get("num_lines", {}).get(split)
    self.num_lines_N = np.asarray(stored, np.int64) if stored is not None else None
    if self.num_lines_N is not None and len(self.num_lines_N) != len(self._records):
      raise ValueError(f"{builder.data_dir}: metadata has {len(self.num_lines_N)} line counts "
                       f"for split {split!r} of {len(self._records)} records")

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> Example:
    return _to_example(self._records[int(index)])


def _to_example(record: dict) -> Example:
  return Example(context=tuple(line.decode() for line in record["context"]),
                 question=record["question"].decode(), answer=record["answer"].decode(),
                 support=tuple(int(i) for i in record["support"]), task=record["task"].decode(),
                 index=int(record["index"]))


def build(config: str | TaskConfig, data_dir: str) -> tfds.core.DatasetBuilder:
  """Generates and writes one config as ArrayRecord (a no-op when already built)."""
  builder = MemreasonerTasks(data_dir=os.path.expanduser(data_dir), config=config,
                             file_format="array_record")
  builder.download_and_prepare()
  return builder


def load(config: str | TaskConfig, split: str, data_dir: str, *,
         build_if_missing: bool = True) -> TfdsSource:
  """The split of a config as a source, building it first when it is missing."""
  builder = MemreasonerTasks(data_dir=os.path.expanduser(data_dir), config=config,
                             file_format="array_record")
  if not builder.is_prepared():
    if not build_if_missing:
      raise FileNotFoundError(f"{NAME}/{builder.builder_config.name} is not built in {data_dir}")
    builder.download_and_prepare()
  return TfdsSource(builder, split)


def load_directory(builder_dir: str, split: str) -> TfdsSource:
  """A split of any built version directory (e.g. copied from elsewhere), no builder class."""
  return TfdsSource(tfds.builder_from_directory(builder_dir), split)


def main(argv: Sequence[str]) -> None:
  del argv
  for name in flags.FLAGS.config:
    builder = build(name, flags.FLAGS.data_dir)
    print(builder.data_dir, {s: i.num_examples for s, i in builder.info.splits.items()})


if __name__ == "__main__":
  # Flags are defined only when run as a command, so importing this module next to other
  # commands (tests, notebooks) never defines a flag twice.
  flags.DEFINE_list("config", None, "Config names to build, e.g. qa1_0k,qa2_4k.")
  flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where datasets are written.")
  flags.mark_flag_as_required("config")
  app.run(main)
