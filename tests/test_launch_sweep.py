"""launch/sweep.py end to end: tiny runs of a few steps, each in its own workdir, one table.

Every run shares the shapes of one tiny train step, so the compilation cache compiles it once
for the whole file; the sweeps vary only seeds and data (nothing that changes the program).
"""

import csv
import os
import subprocess
import sys

import pytest

from launch import sweep
from tests import train_testing

train_testing.use_compilation_cache()

# A few steps and a tiny held-out evaluation for every run.
FAST = ["--config.training.num_steps=2", "--config.training.log_every=1",
        "--config.data.train_examples=20", "--config.data.global_batch=4",
        "--config.data.eval_examples=4", "--config.data.eval_batch=4",
        "--config.data.prefetch=0", "--config.eval.num_samples=0"]
GRID = [{"data.train_seed": seed, "data.sf_fraction": sf} for seed in (0, 1) for sf in (0.0, 1.0)]


def _config_file(tmp_path, entries: list[dict]) -> str:
  """A config file: configs/babi.py's get_config with `entries` as its sweep."""
  path = tmp_path / "sweep_config.py"
  path.write_text("from configs.babi import get_config\n\n\n"
                  f"def get_sweep(arg):\n  del arg\n  return {entries!r}\n")
  return f"{path}:qa1,tiny,runlocal"


def _sweep(config: str, workdir, *args: str) -> subprocess.CompletedProcess:
  command = ["timeout", "400", sys.executable, "launch/sweep.py", f"--config={config}",
             f"--workdir={workdir}", *args]
  return subprocess.run(command, capture_output=True, text=True, cwd=sweep.REPO,
                        env=train_testing.one_device_env(), timeout=420, check=False)


def _table(workdir) -> list[dict[str, str]]:
  with open(workdir / "results.csv", encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_by_two_sweep_runs_gathers_and_then_skips(tmp_path):
  config, out = _config_file(tmp_path, GRID), tmp_path / "sweep"
  result = _sweep(config, out, "--", *FAST)
  assert result.returncode == 0, result.stdout + result.stderr[-4000:]
  rows = _table(out)
  assert len(rows) == 4
  assert [(r["data.train_seed"], r["data.sf_fraction"]) for r in rows] == [
      ("0", "0.0"), ("0", "1.0"), ("1", "0.0"), ("1", "1.0")]
  for row in rows:
    assert row["status"] == "finished" and row["step"] == "2", row
    assert float(row["eval/qa1/loss"]) > 0 and row["eval/qa1/babilong"] != ""
    assert os.path.isfile(os.path.join(row["workdir"], sweep.FINAL_METRICS))
  assert os.path.basename(rows[0]["workdir"]) == "data.train_seed=0,data.sf_fraction=0.0"
  markdown = (out / "results.md").read_text().splitlines()
  assert len(markdown) == 2 + 4 and markdown[0].startswith("| run | data.train_seed |")
  assert (out / "results.png").read_bytes().startswith(b"\x89PNG")

  logs = {r["run"]: os.path.getsize(r["log"]) for r in rows}
  again = _sweep(config, out, "--", *FAST)
  assert again.returncode == 0, again.stderr[-4000:]
  assert "4 runs in" in again.stdout and "4 finished, 0 to run" in again.stdout
  assert again.stdout.count("skipped (finished)") == 4
  assert {r["run"]: os.path.getsize(r["log"]) for r in _table(out)} == logs  # nothing re-ran
  assert [r["status"] for r in _table(out)] == ["finished"] * 4


@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_log_and_the_others_finish(tmp_path):
  entries = [{"model.temporal.kind": "lstm"}, {"data.train_seed": 3}]
  out = tmp_path / "sweep"
  result = _sweep(_config_file(tmp_path, entries), out, "--parallel=2", "--", *FAST)
  assert result.returncode == 1, result.stdout + result.stderr[-4000:]
  rows = {r["run"]: r for r in _table(out)}
  assert rows["data.train_seed=3"]["status"] == "finished"
  failed = rows["model.temporal.kind=lstm"]
  assert failed["status"] == "failed (exit 1)"
  assert "temporal.kind" in open(failed["log"], encoding="utf-8").read()
  assert f"failed: model.temporal.kind=lstm (log {failed['log']})" in result.stdout
  assert "failed (exit 1)" in (out / "results.md").read_text()


@pytest.mark.parametrize("entries,extra,message", [
    ([{"data.train_seed": 0}, {"data.train_sed": 1}], [], "train_sed"),
    ([{"data.train_seed": 0}, {"nothing.here": 1}], [], "nothing"),
    ([{"data.train_seed": 0}, {"data.train_seed": "zero"}], [], "data.train_seed"),
    ([{"data.train_seed": 0}, {"arg": "qa9,tiny"}], [], "qa9"),
    ([{"data.train_seed": 0}], ["--", "--config.training.num_stepz=2"], "num_stepz"),
])
def test_a_bad_override_fails_before_any_run(tmp_path, entries, extra, message):
  out = tmp_path / "sweep"
  result = _sweep(_config_file(tmp_path, entries), out, *extra)
  assert result.returncode != 0
  assert message in result.stderr and "No run was started" in result.stderr, result.stderr
  assert not out.exists()


def test_dry_run_lists_the_paper_grid(tmp_path):
  result = _sweep("configs/babi.py:qa1,tiny", tmp_path / "grid", "--dry_run")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "128 runs in" in result.stdout and result.stdout.count("[to run]") == 128
  for task in ("qa1", "qa2", "vt1", "vt2"):
    assert f"--config=configs/babi.py:{task},tiny " in result.stdout.replace(sweep.REPO + "/", "")
  assert ("arg=vt2-tiny,data.sf_fraction=0.01,model.temporal.kind=none,"
          "model.hops.update_rule=nearest_fact") in result.stdout
  assert not (tmp_path / "grid").exists()


def test_slurm_mode_writes_one_sbatch_command_per_unfinished_run(tmp_path):
  config, out = _config_file(tmp_path, GRID), tmp_path / "sweep"
  # One run already ran to its end elsewhere (a SLURM job): its metrics reach step 7 and the
  # evaluation there; another stopped early (preempted).
  finished = out / "data.train_seed=0,data.sf_fraction=0.0"
  stopped = out / "data.train_seed=1,data.sf_fraction=0.0"
  for workdir, last in ((finished, 7), (stopped, 5)):
    workdir.mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text(
        f'{{"step": {last}, "train/loss": 1.5}}\n{{"step": {last}, "eval/qa1/babilong": 0.25}}\n')
  result = _sweep(config, out, "--slurm", "--slurm_args=--nodes=2 --time=1:00:00", "--",
                  "--config.training.num_steps=7", "--join_timeout=60")
  assert result.returncode == 0, result.stderr[-3000:]
  script = out / sweep.SLURM_SCRIPT
  assert subprocess.run(["bash", "-n", script], check=False).returncode == 0

  # Run the script with an sbatch that records its arguments, one call per line.
  bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
  (bin_dir / "sbatch").chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
  assert subprocess.run(["bash", script], env=env, check=False).returncode == 0
  lines = calls.read_text().splitlines()
  assert len(lines) == 3
  for line, (seed, sf) in zip(lines, [(0, 1.0), (1, 0.0), (1, 1.0)]):
    name = f"data.train_seed={seed},data.sf_fraction={sf}"
    assert line.startswith(f"--job-name={name} --output={out / name / sweep.LOG} "
                           "--open-mode=append --nodes=2 --time=1:00:00 launch/slurm.sbatch ")
    assert f"--config={tmp_path / 'sweep_config.py'}:qa1,tiny,runlocal" in line
    assert f"--workdir={out / name} " in line
    assert line.endswith(f"--config.data.train_seed={seed} --config.data.sf_fraction={sf} "
                         "--config.training.num_steps=7 --join_timeout=60")
  rows = _table(out)
  assert [r["status"] for r in rows] == ["finished"] + ["not finished"] * 3
  assert (rows[0]["step"], rows[0]["eval/qa1/babilong"]) == ("7", "0.25")
  assert (finished / sweep.FINAL_METRICS).is_file()
  assert not (stopped / sweep.FINAL_METRICS).exists()
