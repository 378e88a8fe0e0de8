"""Checkpoints: SIGTERM and resume reproduce an uninterrupted run; bad states and bad workdirs."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax import checkpointing
from memreasoner_jax.data import tokenizers
from memreasoner_jax import metric_writers
from memreasoner_jax.models import losses
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax import train
from tests import infer_testing
from tests import toy_batches
from tests import train_testing

train_testing.use_compilation_cache()

ARG = "qa1,tiny,runlocal"
BYTE = tokenizers.ByteTokenizer()
# A short run with no evaluation (it has its own tests); every step logged.
OVERRIDES = {"training.num_steps": 10, "training.log_every": 1, "training.checkpoint_every": 100,
             "data.eval_examples": 0, "data.global_batch": 8}


def _config(**extra):
  config = babi.get_config(ARG)
  for key, value in {**OVERRIDES, **extra}.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def _train_metrics(workdir) -> dict[int, dict[str, float]]:
  return {r["step"]: {k: v for k, v in r.items() if k.startswith("train/")}
          for r in metric_writers.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
          if "train/loss" in r}


def _restore_raw(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=checkpointing.ITEMS)
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path):
  whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
  train.train_and_evaluate(_config(), whole)

  # The same run as a separate process with its batches built in two Grain worker processes,
  # sent SIGTERM once it has logged step 2.
  workers = {"data.workers": 2}
  command = [sys.executable, "-m", "memreasoner_jax.main", f"--config=configs/babi.py:{ARG}",
             f"--workdir={split}"] + [f"--config.{k}={v}"
                                      for k, v in {**OVERRIDES, **workers}.items()]
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  metrics_file = os.path.join(split, "metrics.jsonl")
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics_file) and _train_metrics(split).get(2):
      proc.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  output, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, output[-3000:]
  assert "Preempted: saved step" in output
  stopped_at = max(_train_metrics(split))
  assert 2 <= stopped_at < 10
  assert ocp.CheckpointManager(os.path.join(split, "checkpoints")).latest_step() == stopped_at

  train.train_and_evaluate(_config(**workers), split)  # resumes at stopped_at, Grain's state too
  manager = ocp.CheckpointManager(os.path.join(split, "checkpoints"),
                                  item_names=checkpointing.ITEMS)
  saved = manager.restore(stopped_at, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
  assert saved["workers"] == 2 and saved["step"] == stopped_at and saved["grain"]
  assert _train_metrics(split) == _train_metrics(whole)
  params_whole = _restore_raw(whole, 10)["params"]
  params_split = _restore_raw(split, 10)["params"]
  jax.tree.map(np.testing.assert_array_equal, params_whole, params_split)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  original = losses.loss_fn

  def poisoned(model, params, batch, rng, step, cfg):  # NaN loss (and gradients) at step 5
    loss, metrics = original(model, params, batch, rng, step, cfg)
    bad = jnp.where(step == 4, jnp.nan, 1.0)
    return loss * bad, {**metrics, "loss": metrics["loss"] * bad}

  monkeypatch.setattr(losses, "loss_fn", poisoned)
  workdir = str(tmp_path)
  with pytest.raises(train.NonFiniteLossError, match=r"at step 5.*last good checkpoint is step 4"):
    train.train_and_evaluate(_config(**{"training.checkpoint_every": 2,
                                         "training.log_every": 3}), workdir)
  assert ocp.CheckpointManager(os.path.join(workdir, "checkpoints")).all_steps() == [2, 4]
  state = _restore_raw(workdir, 4)
  assert int(state["step"]) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_checkpoint_of_another_model_is_refused_naming_the_difference(tmp_path):
  other = _config(**{"training.num_steps": 1})
  other.model.latent_size = 32
  other.model.hops.num_hops = 2
  model = model_lib.MemReasoner(other.model)
  abstract = jax.eval_shape(model.init, jax.random.key(0), toy_batches.qa1_batch(2))
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1)
  ckpt.save(1, {"step": jnp.ones((), jnp.int32)}, other,
            checkpointing.model_metadata(other, abstract, {"encoder": BYTE, "decoder": BYTE}), {})
  ckpt.close()
  with pytest.raises(checkpointing.IncompatibleCheckpointError) as error:
    train.train_and_evaluate(_config(), str(tmp_path))
  message = str(error.value)
  assert "model.latent_size: checkpoint 32, this config 64" in message
  assert "model.hops.num_hops: checkpoint 2, this config 1" in message
  assert "fresh --workdir" in message


def test_indivisible_global_batch_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="data.global_batch=12 does not divide over the 8 devices"):
    train.train_and_evaluate(_config(**{"data.global_batch": 12}), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_rerunning_a_finished_run_changes_nothing(qa1_checkpoint, tmp_path, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(qa1_checkpoint.workdir, workdir)
  before = (workdir / "metrics.jsonl").read_bytes()
  results = train.train_and_evaluate(infer_testing.config(), str(workdir))
  assert (workdir / "metrics.jsonl").read_bytes() == before
  assert "Nothing to do" in caplog.text and "step 240 of training.num_steps=240" in caplog.text
  assert {k.split("/")[-1]: v for k, v in results.items()
          if k.startswith("eval/qa1/")} == qa1_checkpoint.scores


def _save_steps(workdir, steps, metadata):
  """Checkpoints of a one-number state (its value is the step) at each of `steps`."""
  ckpt = checkpointing.Checkpointer(workdir, keep=len(steps))
  for step in steps:
    ckpt.save(step, {"step": jnp.array(step, jnp.int32)}, _config(), metadata, {"at": step})
  ckpt.close()


def _restore_steps(workdir, metadata):
  abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32,
                                           sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))}
  ckpt = checkpointing.Checkpointer(workdir, keep=3)
  try:
    return ckpt.restore(abstract, metadata)
  finally:
    ckpt.close()


def test_newest_step_with_unreadable_metadata_falls_back_to_the_one_before(tmp_path, caplog):
  metadata = {"format": checkpointing.FORMAT_VERSION, "model": {"latent_size": 64}}
  _save_steps(str(tmp_path), [1, 2], metadata)
  (tmp_path / "checkpoints" / "2" / "metadata" / "metadata").write_text("{not json")
  state, data, step = _restore_steps(str(tmp_path), metadata)
  assert (int(state["step"]), data, step) == (1, {"at": 1}, 1)
  assert "Checkpoint " + str(tmp_path / "checkpoints") + "/2 is unreadable" in caplog.text


def _write_tokenizer(directory, words):
  """A word-level tokenizer.json with BERT's special tokens ([PAD] is id 0)."""
  hf = pytest.importorskip("tokenizers")
  vocab = {w: i for i, w in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", *words])}
  os.makedirs(directory, exist_ok=True)
  hf.Tokenizer(hf.models.WordLevel(vocab, unk_token="[UNK]")).save(
      os.path.join(directory, "tokenizer.json"))
  return str(directory)


def _metadata_under(root):
  """What a run keeps in metadata with its pretrained encoder and tokenizer under `root`."""
  config = _config()
  config.model.encoder.init_from = str(root / "bert")
  abstract = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
  tok = tokenizers.from_spec(str(root / "bert"))
  return checkpointing.model_metadata(config, abstract, {"encoder": tok, "decoder": tok})


def test_a_moved_workdir_resumes_and_only_a_changed_tokenizer_is_refused(tmp_path):
  old, new = tmp_path / "mount_a" / "run", tmp_path / "mount_b" / "run"
  _write_tokenizer(old / "bert", ["mary", "went"])
  _save_steps(str(old), [1], _metadata_under(old))
  shutil.move(old, new)  # the workdir, its tokenizer and init_from directory seen from elsewhere
  _, _, step = _restore_steps(str(new), _metadata_under(new))
  assert step == 1
  _write_tokenizer(new / "bert", ["mary", "ran"])  # same path and size, other vocabulary
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match="tokenizer"):
    _restore_steps(str(new), _metadata_under(new))


def _write_lock(workdir, pid):
  (workdir / checkpointing.LOCK_FILE).write_text(
      json.dumps({"host": socket.gethostname(), "pid": pid}))


def test_a_second_run_on_a_held_workdir_stops_at_once_naming_the_holder(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
  try:
    _write_lock(tmp_path, holder.pid)
    with pytest.raises(checkpointing.WorkdirLockedError,
                       match=rf"host {socket.gethostname()}, pid {holder.pid}"):
      train.train_and_evaluate(_config(), str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  assert os.listdir(tmp_path) == [checkpointing.LOCK_FILE]  # no checkpoints, no metrics


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path, caplog):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  _write_lock(tmp_path, dead.pid)
  lock_file = tmp_path / checkpointing.LOCK_FILE
  with checkpointing.WorkdirLock(str(tmp_path)):
    assert json.loads(lock_file.read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
    with pytest.raises(checkpointing.WorkdirLockedError, match=f"pid {os.getpid()}"):
      with checkpointing.WorkdirLock(str(tmp_path)):  # held, even against its own process
        pass
  assert f"Taking over the workdir lock {lock_file} of process {dead.pid}" in caplog.text
  assert not lock_file.exists()


def test_a_preempted_run_returns_no_earlier_evaluation_as_its_result(tmp_path, monkeypatch):
  # Evaluated at step 2, preempted at step 3: the step-2 scores are not the run's result, and
  # main would print them as its final held-out accuracy.
  monkeypatch.setattr(checkpointing.Preemption, "reached", lambda self, step: step == 3)
  config = _config(**{"training.eval_every": 2, "data.eval_examples": 8, "data.eval_batch": 8})
  results = train.train_and_evaluate(config, str(tmp_path))
  evaluated = [r for r in metric_writers.read_jsonl(str(tmp_path / "metrics.jsonl"))
               if "eval/qa1/babilong" in r]
  assert [r["step"] for r in evaluated] == [2]
  assert "train/loss" in results and not any(k.startswith("eval/") for k in results), results


def test_execution_fields_differ_without_refusing_the_checkpoint():
  # How the same parameters are computed (attention, remat, pseudo-inverse, encoder chunks) is
  # not compared: a run written before such a field existed, or on another platform, resumes.
  config = _config()
  abstract = jax.eval_shape(model_lib.MemReasoner(config.model).init, jax.random.key(0),
                            toy_batches.qa1_batch(2))
  saved = checkpointing.model_metadata(config, abstract, {"encoder": BYTE, "decoder": BYTE})
  del saved["model"]["attention"], saved["model"]["remat"]
  saved["model"]["memory"]["pinv"], saved["model"]["encoder"]["encode_chunk"] = "svd", 7
  current = checkpointing.model_metadata(config, abstract, {"encoder": BYTE, "decoder": BYTE})
  assert current["model"]["memory"]["pinv"] == "auto"
  assert checkpointing.differences(saved, current) == []
  saved["model"]["dtype"] = "bfloat16"  # what the model computes in is still compared
  assert checkpointing.differences(saved, current) == [
      "model.dtype: checkpoint 'bfloat16', this config 'float32'"]
  # A field added since is its default in a checkpoint without it; any other value differs.
  saved["model"]["dtype"] = "float32"
  del saved["model"]["decoder"]["copy"], saved["model"]["memory"]["recency"]
  del saved["model"]["memory"]["learn_recency"], saved["model"]["memory"]["latest_margin"]
  del saved["model"]["memory"]["latest_alike"]
  assert checkpointing.differences(saved, current) == []
  current["model"]["decoder"]["copy"], current["model"]["memory"]["recency"] = True, 0.1
  current["model"]["memory"]["learn_recency"] = True
  current["model"]["memory"]["latest_margin"] = 0.1
  current["model"]["memory"]["latest_alike"] = 0.8
  assert checkpointing.differences(saved, current) == [
      "model.decoder.copy: checkpoint False, this config True",
      "model.memory.latest_alike: checkpoint -1.0, this config 0.8",
      "model.memory.latest_margin: checkpoint 0.0, this config 0.1",
      "model.memory.learn_recency: checkpoint False, this config True",
      "model.memory.recency: checkpoint 0.0, this config 0.1"]
