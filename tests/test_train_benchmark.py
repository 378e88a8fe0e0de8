"""The train-step benchmark runs the real step over every device and reports consistent figures."""

import json
import math
import subprocess
import sys

import numpy as np

from memreasoner_jax.configs import babi
from memreasoner_jax.tools import benchmark_train


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
  # Two real lines of example 0 decoded twice at its mean line length minus BOS (12 / 3 - 1),
  # one of example 1 twice at 5 - 1.
  ae_targets = 2 * 2 * 3 + 2 * 1 * 4
  useful = lines + queries + answer_targets + ae_targets
  assert benchmark_train.step_tokens(cfg, batch, pad) == useful
  padded = 2 * 3 * 5 + 2 * 4 + 2 * 5 + 2 * 2 * 2 * 4
  assert benchmark_train.step_tokens(cfg, batch) == padded
  assert (benchmark_train.train_step_flops(cfg, batch, pad)
          < benchmark_train.train_step_flops(cfg, batch))
