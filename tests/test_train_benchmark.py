"""The train-step benchmark runs the real step over every device and reports consistent figures."""

import json
import math
import subprocess
import sys


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
  assert math.isclose(r["mfu"], mfu, rel_tol=1e-9)
  assert r["peak_tflops_per_device"] == 0.5 and r["host_max_rss_gib"] > 0
  row = result.stdout.strip().splitlines()[-1]
  assert row.startswith("| tiny | cpu x8 | 16 |") and row.endswith(f"| {100 * r['mfu']:.1f}% |")
