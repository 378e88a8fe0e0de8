"""The baseline trains and evaluates through the ordinary command line and config."""

import json
import subprocess
import sys

from memreasoner_jax import metric_writers


def test_baseline_trains_through_main(tmp_path):
  command = [sys.executable, "-m", "memreasoner_jax.main",
             "--config=configs/babi.py:qa1,tiny,baseline,runlocal", f"--workdir={tmp_path}",
             "--config.training.eval_every=1000"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
  log = result.stdout + result.stderr
  assert result.returncode == 0, log[-4000:]
  records = metric_writers.read_jsonl(str(tmp_path / "metrics.jsonl"))
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert losses[-1] < 0.8 * losses[0], losses
  final = records[-1]
  assert final["step"] == 20 and {"eval/qa1/babilong", "eval/qa1/answer_loss"} <= set(final)
  assert result.stdout.strip().splitlines()[-1].startswith(
      f"qa1 held-out accuracy: {final['eval/qa1/babilong']:.1f}% (babilong), exact match ")
  metadata = json.loads((tmp_path / "checkpoints" / "20" / "metadata" / "metadata").read_text())
  assert metadata["model"]["kind"] == "baseline" and set(metadata["param_shapes"]) == {
      k for k in metadata["param_shapes"] if k.startswith("['decoder']")}
