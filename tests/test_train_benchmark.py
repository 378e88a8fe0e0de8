"""The train-step benchmark runs the real step over every device and reports consistent figures."""

import json
import math
import subprocess
import sys

import jax
import numpy as np

from memreasoner_jax.configs import babi
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.tools import benchmark_train


def _loss_gradient_flops(global_batch: int) -> tuple[float, dict[str, list[int]]]:
  """XLA's count of one forward and backward pass of the tiny loss on the benchmark's batch, on
  one device and without the optimizer: a figure the benchmark's own formula plays no part in."""
  cfg = babi.get_config("qa1,tiny")
  cfg.data.global_batch = global_batch
  cfg.data.train_examples = max(global_batch, 64)
  batcher = input_lib.make_batcher(cfg.data)
  batch = batcher((input_lib.train_examples(cfg.data) * global_batch)[:global_batch])
  model = models.build(cfg.model)
  params = jax.eval_shape(model.init, jax.random.key(0), batch)
  loss = lambda p: model.loss(p, batch, jax.random.key(1), 0, cfg.loss)[0]
  cost = jax.jit(jax.grad(loss)).lower(params).cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]), {k: list(v.shape) for k, v in batch.items()}


def test_benchmark_reports_rates_flops_and_mfu(tmp_path):
  out = tmp_path / "bench.json"
  # Eight fake devices (from conftest's XLA_FLAGS), two examples each.
  command = [sys.executable, "-m", "memreasoner_jax.tools.benchmark_train", "--preset=tiny",
             "--batch=16", "--steps=2", "--peak_tflops=0.5", f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  r = json.loads(out.read_text())
  assert r["num_devices"] == 8 and r["global_batch"] == 16
  assert r["compile_s"] > 0 and r["step_s"] > 0 and math.isfinite(r["loss"])
  assert math.isclose(r["examples_per_s"], 16 / r["step_s"], rel_tol=1e-9)
  assert r["tokens_per_s"] > r["examples_per_s"]
  # The analytic count of the model's matmuls and attention agrees with XLA's own count of the
  # compiled step (which adds elementwise work, the memory algebra and the optimizer).
  assert 0.8 < r["model_tflops_per_step"] / r["xla_tflops_per_step"] < 1.05
  mfu = r["model_tflops_per_step"] / r["step_s"] / (0.5 * 8)
  assert math.isclose(r["padded_mfu"], mfu, rel_tol=1e-9)
  useful_mfu = r["useful_model_tflops_per_step"] / r["step_s"] / (0.5 * 8)
  assert math.isclose(r["useful_mfu"], useful_mfu, rel_tol=1e-9) and useful_mfu < mfu
  assert 0 < r["padding_fraction"] < 1
  assert math.isclose(r["padded_tokens_per_useful_token"], 1 / (1 - r["padding_fraction"]))
  # Against XLA's count of the loss gradient made here (measured: the benchmark counts 0.94 of
  # it), and the MFU that count gives at the benchmark's step time on 8 devices of 0.5 TFLOP/s.
  flops, batch_shape = _loss_gradient_flops(16)
  assert r["batch_shape"] == batch_shape
  assert 0.85 < r["model_tflops_per_step"] * 1e12 / flops < 1.05, (r, flops)
  assert 0.85 < r["padded_mfu"] / (flops / r["step_s"] / (8 * 0.5e12)) < 1.05, (r, flops)
  assert r["peak_tflops_per_device"] == 0.5 and r["host_max_rss_gib"] > 0
  row = result.stdout.strip().splitlines()[-1]
  assert row.startswith("| tiny | cpu x8 | 16 |") and row.endswith(
      f"| {100 * r['padded_mfu']:.1f}% | {100 * r['useful_mfu']:.1f}% |")


def test_useful_tokens_are_the_real_tokens_counted_by_hand():
  cfg = babi.get_config("qa1,tiny")  # ae_lines = 2
  pad = 0
  # Two examples, E=3 lines of T=5 tokens; example 1 has one real line.
  context = np.array([[[1, 7, 7, 2, pad], [1, 7, 2, pad, pad], [1, 7, 7, 7, 2]],
                      [[1, 7, 7, 7, 2], [pad] * 5, [pad] * 5]])
  query = np.array([[1, 8, 2, pad], [1, 8, 8, 2]])
  answer = np.array([[1, 9, 9, 2, pad, pad], [1, 9, 2, pad, pad, pad]])
  batch = {"context_BxExT": context, "line_mask_BxE": context[..., 0] != pad,
           "query_BxQ": query, "answer_BxA": answer}
  lines, queries = 4 + 3 + 5 + 5, 3 + 4
  answer_targets = 3 + 2  # answer[:, 1:] without padding
  # Two real lines of example 0 decoded at its mean line length minus BOS (12 / 3 - 1), one of
  # example 1 at 5 - 1; once, as the tiny memory (16 slots, 3 lines) reads a line back exactly.
  ae_targets = 2 * 3 + 1 * 4
  useful = lines + queries + answer_targets + ae_targets
  assert benchmark_train.step_tokens(cfg, batch, pad) == useful
  padded = 2 * 3 * 5 + 2 * 4 + 2 * 5 + 2 * 2 * 4
  assert benchmark_train.step_tokens(cfg, batch) == padded
  # With write noise the read differs from the line: both autoencoding terms decode.
  cfg.model.memory.write_noise_std = 0.1
  assert benchmark_train.step_tokens(cfg, batch, pad) == useful + ae_targets
  assert (benchmark_train.train_step_flops(cfg, batch, pad)
          < benchmark_train.train_step_flops(cfg, batch))
  # Packed lines: the encoder reads the S x M listed slots (one part of 4 slots) of T tokens,
  # not every B x E slot; the real tokens are the same.
  cfg.model.memory.write_noise_std = 0.0
  batch["line_rows_SxM"] = np.array([[0, 1, 2, 3]])
  assert benchmark_train.step_tokens(cfg, batch) == padded - 2 * 3 * 5 + 4 * 5
  assert benchmark_train.step_tokens(cfg, batch, pad) == useful


def test_benchmark_feeds_the_step_lines_padded_on_the_device(tmp_path):
  losses = {}
  for padding in ("--device_padding", "--nodevice_padding"):
    out = tmp_path / f"{padding}.json"
    command = [sys.executable, "-m", "memreasoner_jax.tools.benchmark_train", "--preset=tiny",
               "--batch=16", "--steps=1", padding, f"--out={out}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    r = json.loads(out.read_text())
    assert r["device_padding"] == (padding == "--device_padding")
    losses[padding] = r["loss"]
  # The same batch, padded on the host or by the step: the same second step.
  np.testing.assert_allclose(losses["--device_padding"], losses["--nodevice_padding"], rtol=1e-6)
