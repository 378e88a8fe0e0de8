"""load(): a checkpoint trained on 8 devices answers in a fresh 1-device process exactly as the
training process's own evaluation did; bad paths, partial and corrupt checkpoints."""

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

import memreasoner_jax
from memreasoner_jax import checkpointing

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
