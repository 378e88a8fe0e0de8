"""The long-context speed benchmark runs end to end and records both models."""

import json
import math
import subprocess
import sys

import pytest


def test_benchmark_times_both_models_and_skips_what_does_not_fit(tmp_path):
  out = tmp_path / "context.json"
  # A 9 MB budget holds the baseline's attention at 1k and 2k tokens but not at 4k.
  command = [sys.executable, "-m", "memreasoner_jax.tools.benchmark_context", "--preset=tiny",
             "--lengths=1k,2k,4k", "--repeats=1", "--memory_budget_gib=0.008", f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  report = json.loads(out.read_text())
  rows = report["rows"]
  assert [r["length"] for r in rows] == ["1k", "2k", "4k"]
  assert rows[0]["tokens"] < rows[1]["tokens"] < rows[2]["tokens"]
  assert all(r["memreasoner"]["median_s"] > 0 and r["memreasoner"]["compile_s"] > 0 for r in rows)
  for row in rows[:2]:
    assert row["baseline"]["median_s"] > 0 and row["ratio"] > 0
  assert "memory_budget_gib" in rows[2]["baseline_skipped"]
  # The extrapolation follows the growth between the two measured lengths (a timing relation
  # between them would fail whenever the shared machine makes 2k time like 1k).
  (l0, t0), (l1, t1) = [(r["tokens"], r["baseline"]["median_s"]) for r in rows[:2]]
  growth = math.log(t1 / t0) / math.log(l1 / l0)
  assert rows[2]["baseline_extrapolated_s"] == pytest.approx(
      t1 * (rows[2]["tokens"] / l1) ** growth)
  assert report["growth"]["memreasoner"]["all"] is not None
  assert report["growth"]["baseline"]["all"] is not None
  assert "| 4k |" in result.stdout and "extrapolated" in result.stdout
