"""Configs, command-line overrides, the optimizer and the metric files (no training)."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from memreasoner_jax.configs import babi
from memreasoner_jax import metric_writers
from memreasoner_jax.models import presets
from memreasoner_jax import optimizer as optimizer_lib

CONFIG_FILE = "configs/babi.py"


@pytest.mark.parametrize("tasks", ["qa1", "qa2", "vt1", "vt2", "qa1+qa2"])
@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_task_and_preset_builds_a_locked_config(tasks, preset):
  config = babi.get_config(f"{tasks},{preset}")
  two_hop = "qa2" in tasks or "vt2" in tasks
  # A read per line holding part of the answer: a vt chain names one variable per line.
  reads = {"qa1": 1, "qa2": 2, "vt1": 2, "vt2": 3, "qa1+qa2": 2}[tasks]
  assert config.model.hops.num_hops == reads
  assert config.data.sf_fraction == (0.01 if two_hop else 0.0)
  assert config.model.preset == preset
  with pytest.raises(AttributeError):
    config.training.num_stepz = 3  # locked: no new keys


def test_every_field_is_commented():
  source = open(babi.__file__, encoding="utf-8").read()  # the package's config, not the re-export
  body = source[source.index("def get_config"):source.index("  if runlocal:")]
  for line in body.splitlines():
    if line.strip().startswith("config.") and " = " in line and "ConfigDict()" not in line:
      if "preset" in line or "loss_config" in line:
        continue
      assert "#" in line or _previous_is_comment(body, line), f"uncommented field: {line.strip()}"


def _previous_is_comment(body: str, line: str) -> bool:
  lines = body.splitlines()
  i = lines.index(line)
  return lines[i - 1].strip().startswith("#")


def test_long_option_sets_the_distractor_recipe():
  clean, long = babi.get_config("qa1,tiny"), babi.get_config("qa1,tiny,long")
  assert (clean.data.train_filler_max, long.data.train_filler_max) == (0, 30)
  assert (long.model.memory.mode, long.model.decoder.condition) == ("chunked", "facts")
  assert long.data.sf_fraction == 1.0 and long.data.eval_length == "1k"
  assert long.training.num_steps == 600 and long.model.latent_size == clean.model.latent_size
  assert long.data.pack_lines and not clean.data.pack_lines
  assert long.data.max_lines == 256  # qa2 stories with filler pass 128 lines


def test_shape_overrides_put_another_presets_model_on_a_configs_data_and_schedule():
  config = babi.get_config("qa1,tiny,long")
  config.update_from_flattened_dict(presets.shape_overrides("small"))
  small = babi.get_config("qa1,small,long")
  assert config.model.to_dict() == small.model.to_dict()
  assert config.model.to_dict() != babi.get_config("qa1,tiny,long").model.to_dict()
  assert (config.training.num_steps, config.data.global_batch) == (600, 32)
  assert (small.training.num_steps, small.data.global_batch) == (2000, 64)


@pytest.mark.parametrize("options", ["", ",long", ",baseline", ",runlocal", ",baseline,runlocal"])
def test_sweep_runs_keep_the_preset_and_every_option(options):
  sweep = babi.get_sweep(f"qa1,base{options}")
  assert {run["arg"].split(",", 1)[1] for run in sweep} == {f"base{options}"}
  config = babi.get_config(sweep[0]["arg"])
  assert (config.data.train_filler_max > 0) == ("long" in options)
  assert (config.model.kind == "baseline") == ("baseline" in options)
  assert (config.training.num_steps == 20) == ("runlocal" in options)


@pytest.mark.parametrize("arg", ["qa3,tiny", "qa1,huge", "qa1", "qa1,tiny,fast", "qa1+qa1,tiny"])
def test_bad_config_argument_is_named(arg):
  with pytest.raises(ValueError, match="config argument"):
    babi.get_config(arg)


def test_misspelled_override_fails_at_once_naming_the_key(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "memreasoner_jax.main", f"--config={CONFIG_FILE}:qa1,tiny",
       f"--workdir={tmp_path}", "--config.training.num_stepz=7"],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert "num_stepz" in result.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_schedule_warms_up_then_decays():
  cfg = babi.get_config("qa1,tiny").optimizer
  schedule = optimizer_lib.learning_rate_schedule(cfg, 400)
  assert float(schedule(0)) == 0.0
  assert float(schedule(cfg.warmup_steps)) == pytest.approx(cfg.learning_rate)
  assert float(schedule(400)) == pytest.approx(cfg.learning_rate * cfg.final_lr_fraction)


def test_weight_decay_skips_biases_norms_embeddings_and_prior():
  params = {"dense": {"kernel": jnp.arange(1.0, 5.0).reshape(2, 2), "bias": jnp.ones(2)},
            "norm": {"scale": jnp.ones(2)}, "embed": {"embedding": jnp.ones((3, 2))},
            "memory": {"prior": jnp.eye(2)}}
  mask = optimizer_lib.decay_mask(params)
  assert mask == {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False},
                  "embed": {"embedding": False}, "memory": {"prior": False}}
  cfg = babi.get_config("qa1,tiny").optimizer.copy_and_resolve_references()
  cfg.warmup_steps = 3
  tx, schedule = optimizer_lib.make_optimizer(cfg, 400)
  zeros = jax.tree.map(jnp.zeros_like, params)
  state = tx.init(params)
  for _ in range(cfg.warmup_steps):  # zero gradients: Adam's moments stay 0, only decay moves
    _, state = tx.update(zeros, state, params)
  updates, _ = tx.update(zeros, state, params)  # step 3: the end of warm-up, lr at its peak
  assert float(schedule(cfg.warmup_steps)) == pytest.approx(cfg.learning_rate)
  # Decoupled decay with zero gradients: update = -lr * weight_decay * param on decayed leaves.
  expected = -cfg.learning_rate * cfg.weight_decay * np.array([[1.0, 2.0], [3.0, 4.0]])
  np.testing.assert_allclose(updates["dense"]["kernel"], expected, rtol=1e-5)
  assert float(jnp.abs(updates["dense"]["kernel"]).min()) > 0.0
  for part, name in [("dense", "bias"), ("norm", "scale"), ("embed", "embedding"),
                     ("memory", "prior")]:
    np.testing.assert_array_equal(updates[part][name], 0.0, err_msg=f"{part}/{name} decayed")


def test_metric_files(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.write(3, {"train/loss": 1.5, "perf/steps_per_sec": np.float32(2.0)})
  writer.close()
  assert metric_writers.read_jsonl(str(tmp_path / "metrics.jsonl")) == [
      {"step": 3, "train/loss": 1.5, "perf/steps_per_sec": 2.0}]
  (event_file,) = (tmp_path / "tensorboard").iterdir()
  assert event_file.name.startswith("events.out.tfevents.")
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(3, 1.5)]
