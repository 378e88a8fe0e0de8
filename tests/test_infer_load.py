"""load(): a checkpoint trained on 8 devices answers in a fresh 1-device process exactly as the
training process's own evaluation did; bad paths, partial and corrupt checkpoints; steps copied
out, zipped and exported."""

import functools
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

import memreasoner_jax
from memreasoner_jax import checkpointing
from memreasoner_jax import export
from memreasoner_jax import inference
from memreasoner_jax.data import tokenizers as tokenizers_lib

_FRESH_PROCESS = """
import json, sys
import jax
import memreasoner_jax
from memreasoner_jax import input_pipeline as input_lib
reasoner = memreasoner_jax.load(sys.argv[1])
examples = input_lib.eval_examples(reasoner.config.data)["qa1"]
print(json.dumps({"devices": jax.device_count(), "step": reasoner.step,
                  "questions": [e.question for e in examples],
                  "answers": reasoner.answer_examples(examples)}))
"""


def test_a_fresh_one_device_process_answers_as_the_training_evaluation_did(qa1_checkpoint):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, qa1_checkpoint.workdir],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  fresh = json.loads(result.stdout.strip().splitlines()[-1])
  assert fresh["devices"] == 1 and fresh["step"] == 240
  trained = qa1_checkpoint.answers
  assert len(trained) == len(fresh["answers"]) == 48
  assert fresh["questions"] == [a["question"] for a in trained]
  assert fresh["answers"] == [a["output"] for a in trained]
  right = sum(a["output"] == a["target"] for a in trained)
  assert 100.0 * right / len(trained) == pytest.approx(qa1_checkpoint.scores["exact_match"])


def _copy_step(qa1_checkpoint, tmp_path, steps=(240,)):
  """A workdir holding copies of the trained step under the given step numbers."""
  source = os.path.join(qa1_checkpoint.workdir, "checkpoints", "240")
  for step in steps:
    shutil.copytree(source, tmp_path / "checkpoints" / str(step))
  return tmp_path


def _corrupt_state(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for name in files:
      if "ocdbt" in root:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"not a checkpoint")


def test_corrupt_latest_step_falls_back_to_the_one_before_and_says_so(qa1_checkpoint, tmp_path,
                                                                    caplog):
  workdir = _copy_step(qa1_checkpoint, tmp_path, steps=(240, 300))
  _corrupt_state(workdir / "checkpoints" / "300")
  with caplog.at_level(logging.WARNING):
    reasoner = memreasoner_jax.load(str(workdir))
  assert reasoner.step == 240
  assert "checkpoints/300 is unreadable" in caplog.text and "Restored step 240" in caplog.text
  story = ["Mary went to the kitchen.", "John went to the garden."]
  assert reasoner.answer(story, "Where is Mary?") == memreasoner_jax.load(
      os.path.join(qa1_checkpoint.workdir, "checkpoints", "240")).answer(story, "Where is Mary?")


def test_a_step_with_files_missing_is_a_clear_error(qa1_checkpoint, tmp_path):
  step_dir = _copy_step(qa1_checkpoint, tmp_path) / "checkpoints" / "240"
  shutil.rmtree(step_dir / "metadata")
  with pytest.raises(checkpointing.UnreadableCheckpointError,
                     match=r"checkpoints/240 is incomplete: missing metadata"):
    memreasoner_jax.load(str(step_dir))
  shutil.copytree(os.path.join(qa1_checkpoint.workdir, "checkpoints", "240", "metadata"),
                  step_dir / "metadata")
  _corrupt_state(step_dir)
  with pytest.raises(checkpointing.UnreadableCheckpointError, match=r"240 is unreadable"):
    memreasoner_jax.load(str(step_dir))


def test_a_path_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such directory"):
    memreasoner_jax.load(str(tmp_path / "missing"))
  (tmp_path / "notes").mkdir()
  with pytest.raises(FileNotFoundError, match="expected a training workdir"):
    memreasoner_jax.load(str(tmp_path / "notes"))


def test_a_corrupt_newest_step_falls_back_with_one_line_of_warning(qa1_checkpoint, tmp_path,
                                                                   caplog):
  workdir = _copy_step(qa1_checkpoint, tmp_path, steps=(240, 300))
  _corrupt_state(workdir / "checkpoints" / "300")
  with caplog.at_level(logging.INFO):
    assert memreasoner_jax.load(str(workdir)).step == 240
  # Not orbax's restore logs, nor TensorStore's 60-line spec of the array it could not read.
  messages = [r.getMessage() for r in caplog.records]
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert len(warnings) == 1 and warnings[0].startswith("Restored step 240 instead"), warnings
  assert sum(len(m.splitlines()) for m in messages) <= 3, messages


_STORY = ["Mary went to the kitchen.", "John went to the garden.", "Mary moved to the hallway."]
_QUESTIONS = ["Where is Mary?", "Where is John?"]


def _answers(reasoner):
  return reasoner.answer_batch([_STORY] * len(_QUESTIONS), _QUESTIONS)


def test_a_step_copied_out_under_another_name_or_zipped_loads(qa1_checkpoint, tmp_path):
  step_dir = os.path.join(qa1_checkpoint.workdir, "checkpoints", "240")
  expected = _answers(memreasoner_jax.load(step_dir))
  shutil.copytree(step_dir, tmp_path / "my_model")
  renamed = memreasoner_jax.load(str(tmp_path / "my_model"))
  assert renamed.step == 240 and _answers(renamed) == expected
  archive = shutil.make_archive(str(tmp_path / "my_model"), "zip", tmp_path, "my_model")
  zipped = memreasoner_jax.load(archive)
  assert zipped.step == 240 and zipped.directory == archive and _answers(zipped) == expected
  shutil.rmtree(tmp_path / "my_model" / "config")
  with pytest.raises(checkpointing.UnreadableCheckpointError, match="missing config"):
    memreasoner_jax.load(str(tmp_path / "my_model"))


def test_a_step_that_does_not_exist_lists_the_steps_there(qa1_checkpoint):
  with pytest.raises(FileNotFoundError, match=r"checkpoints/500: no such directory; the steps "
                                              r"in .*/checkpoints are 240$"):
    memreasoner_jax.load(os.path.join(qa1_checkpoint.workdir, "checkpoints", "500"))


def _state_tree(step_dir):
  with open(os.path.join(step_dir, "state", "_METADATA"), encoding="utf-8") as f:
    return f.read()


def test_an_export_has_no_optimizer_state_and_answers_as_the_checkpoint(qa1_checkpoint, tmp_path):
  expected = _answers(memreasoner_jax.load(qa1_checkpoint.workdir))
  assert "opt_state" in _state_tree(os.path.join(qa1_checkpoint.workdir, "checkpoints", "240"))
  result = subprocess.run(
      [sys.executable, "-m", "memreasoner_jax.export", f"--checkpoint={qa1_checkpoint.workdir}",
       f"--out={tmp_path / 'model'}"], capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines() == [
      f"Exported step 240 of {qa1_checkpoint.workdir}/checkpoints/240 (240,832 parameters) to "
      f"{tmp_path / 'model'}"]
  items = set(os.listdir(tmp_path / "model"))
  assert {"config", "metadata", "state"} <= items and "data" not in items  # no data position
  tree = _state_tree(tmp_path / "model")
  assert "opt_state" not in tree and "params" in tree
  exported = memreasoner_jax.load(str(tmp_path / "model"))
  assert exported.step == 240 and _answers(exported) == expected
  export.export(str(tmp_path / "model"), str(tmp_path / "model.zip"))  # a zip, from the export
  assert _answers(memreasoner_jax.load(str(tmp_path / "model.zip"))) == expected


def test_an_export_carries_its_tokenizer_files_by_relative_paths(tmp_path):
  (tmp_path / "bert").mkdir()  # a folder of tokenizer files, and one file
  (tmp_path / "gpt2.json").write_text("{}")
  config = ml_collections.ConfigDict({"data": {"encoder_tokenizer": str(tmp_path / "bert"),
                                               "decoder_tokenizer": str(tmp_path / "gpt2.json")}})
  relocated, copies = export.bundle_tokenizers(config)
  assert relocated.data.to_dict() == {
      "encoder_tokenizer": "tokenizers/encoder_tokenizer",
      "decoder_tokenizer": "tokenizers/decoder_tokenizer/gpt2.json"}
  assert copies == [(str(tmp_path / "bert"), "tokenizers/encoder_tokenizer"),
                    (str(tmp_path / "gpt2.json"), "tokenizers/decoder_tokenizer/gpt2.json")]
  assert export.bundle_tokenizers(ml_collections.ConfigDict(
      {"data": {"encoder_tokenizer": "byte", "decoder_tokenizer": ""}}))[1] == []


def test_an_average_of_checkpoints_holds_their_mean_parameters(qa1_checkpoint, tmp_path):
  step_dir = os.path.join(qa1_checkpoint.workdir, "checkpoints", "240")
  restored = checkpointing.restore_params(step_dir, functools.partial(
      inference.abstract_params, mesh=inference.replicated_mesh(jax.local_devices())))
  tripled = jax.tree.map(lambda x: 3 * x, restored.params)
  checkpointing.save_params(str(tmp_path / "tripled"), tripled, 300, restored.config,
                            restored.metadata)
  averaged = memreasoner_jax.load_average([step_dir, str(tmp_path / "tripled")])
  assert averaged.step == 300
  for mean, one in zip(jax.tree.leaves(averaged._params), jax.tree.leaves(restored.params)):
    np.testing.assert_allclose(np.asarray(mean), 2 * np.asarray(one), rtol=1e-6, atol=1e-6)
  alone = inference.load_average([step_dir])
  assert _answers(alone) == _answers(memreasoner_jax.load(step_dir))

  # A checkpoint of another model (latents of another width) cannot be averaged in.
  config = restored.config.copy_and_resolve_references()
  with config.unlocked():
    config.model.latent_size = restored.config.model.latent_size // 2
  other = inference.abstract_params(config, inference.replicated_mesh(jax.local_devices()))
  zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), other)
  tokenizers = {part: tokenizers_lib.from_spec(spec)
                for part, spec in restored.metadata["tokenizers"].items()}
  checkpointing.save_params(str(tmp_path / "narrow"), zeros, 10, config,
                            checkpointing.model_metadata(config, other, tokenizers))
  with pytest.raises(ValueError, match=r"narrow holds parameters of other shapes than .*240"):
    inference.load_average([step_dir, str(tmp_path / "narrow")])
