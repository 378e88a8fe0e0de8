r"""Sweeps: a config file's `get_sweep(arg)` expanded into runs, run here or on SLURM, gathered.

A config file may define `get_sweep(arg)` beside `get_config(arg)`. It returns a list of dicts,
one per run, each mapping config keys to values: `{"data.sf_fraction": 0.1}` becomes
`--config.data.sf_fraction=0.1`. The key "arg" is special: it replaces the config argument (the
part after ':'), for sweeps over what the argument selects, such as the task of configs/babi.py.

  python launch/sweep.py --config=configs/babi.py:qa1,tiny --dry_run
  python launch/sweep.py --config=configs/babi.py:qa1,tiny --workdir=/tmp/sweep --parallel=2 \
      -- --config.training.num_steps=200
  python launch/sweep.py --config=configs/babi.py:qa1,base --workdir=/shared/sweep --slurm \
      --slurm_args="--nodes=1 --time=4:00:00"

Flags after `--` go to every run; `--config.*` ones join each run's overrides. Every override is
checked against the locked config before any run starts. Each run gets a workdir under
--workdir named after its overrides, with its log (train.log). A run whose metrics reach the
last step (and the last evaluation, when it evaluates) is finished: its final metrics go to
final_metrics.json there, and a later sweep skips it. The sweep ends with results.csv,
results.md and results.png in --workdir, failed runs included with their log paths.
"""

from collections.abc import Sequence
import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python launch/sweep.py` from a checkout that is not installed
  sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from launch import results
from memreasoner_jax import metric_writers

ARG_KEY = "arg"  # a sweep entry's key that replaces the config argument
FINAL_METRICS = "final_metrics.json"  # in a run's workdir once the run is finished
LOG = "train.log"  # a local run's output, in its workdir
SLURM_SCRIPT = "submit_slurm.sh"  # in the sweep's workdir, with --slurm
_MAX_NAME = 200  # a workdir name's length; longer ones are cut and end in a hash

class SweepError(ValueError):
  """A sweep that cannot start: a bad config file, argument or override."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: its config flag, its overrides, and the resolved config."""
  name: str
  config: str  # the --config value: absolute file path and argument
  sweep_values: dict[str, Any]  # the sweep entry as given, "arg" included (table columns)
  overrides: tuple[str, ...]  # --config.k=v flags: the entry's, then the common ones
  workdir: str
  resolved: ml_collections.ConfigDict

  def main_flags(self, passthrough: Sequence[str]) -> list[str]:
    """Flags of memreasoner_jax.main; `passthrough` holds the common non-config flags."""
    return [f"--config={self.config}", f"--workdir={self.workdir}", *self.overrides,
            *passthrough]

  @property
  def log(self) -> str:
    return os.path.join(self.workdir, LOG)

  @property
  def final_metrics_path(self) -> str:
    return os.path.join(self.workdir, FINAL_METRICS)


def split_config_flag(value: str) -> tuple[str, str | None]:
  """'path/file.py:arg' -> (absolute path, arg); the argument is optional."""
  path, sep, arg = value.partition(":")
  if not os.path.isfile(path):
    raise SweepError(f"--config: no config file {path!r}")
  return os.path.abspath(path), (arg if sep else None)


def load_sweep(path: str, arg: str | None) -> list[dict[str, Any]]:
  """Calls the config file's get_sweep(arg)."""
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path} defines no get_sweep(arg)")
  try:
    entries = module.get_sweep() if arg is None else module.get_sweep(arg)
  except (TypeError, ValueError) as e:
    raise SweepError(f"{path}: get_sweep({'' if arg is None else repr(arg)}): {e}") from None
  if not entries or not all(isinstance(e, dict) for e in entries):
    raise SweepError(f"{path}: get_sweep must return a non-empty list of dicts")
  return entries


def format_value(key: str, value: Any) -> str:
  """A sweep value as command-line text (what config_flags parses back)."""
  if not isinstance(value, (bool, int, float, str)):
    raise SweepError(f"override {key}={value!r}: sweep values must be bool, int, float or str")
  return str(value)


def run_name(entry: dict[str, Any]) -> str:
  """A workdir name from the entry's key=value pairs, safe in paths and shells."""
  if not entry:
    return "default"
  name = ",".join(f"{k}={re.sub(r'[^A-Za-z0-9._+-]+', '-', format_value(k, v))}"
                  for k, v in entry.items())
  if len(name) > _MAX_NAME:
    name = name[:_MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
  return name


def resolve_config(config: str, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """The locked config that memreasoner_jax.main would build from these flags (same parser)."""
  argv = ["sweep", f"--config={config}", *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  try:
    flag_values(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    raise SweepError(f"{config} {' '.join(overrides)}: {e}") from None
  return flag_values.config


def expand(config_flag: str, workdir: str, common_overrides: Sequence[str]) -> list[Run]:
  """Every run of the sweep, each validated against its locked config (nothing runs yet)."""
  path, arg = split_config_flag(config_flag)
  runs = []
  for entry in load_sweep(path, arg):
    overrides = {k: v for k, v in entry.items() if k != ARG_KEY}
    run_arg = entry.get(ARG_KEY, arg)
    config = path if run_arg is None else f"{path}:{run_arg}"
    flag_list = tuple(f"--config.{k}={format_value(k, v)}" for k, v in overrides.items())
    flag_list += tuple(common_overrides)
    name = run_name(entry)
    try:
      resolved = resolve_config(config, flag_list)
    except SweepError as e:
      raise SweepError(f"run {name}: {e}") from None
    runs.append(Run(name, config, dict(entry), flag_list, os.path.join(workdir, name), resolved))
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise SweepError(f"get_sweep returned the same run twice: {sorted(names)}")
  return runs


def final_metrics(run: Run) -> dict[str, float] | None:
  """The metrics at the run's last step if it got there, the last evaluation included."""
  path = os.path.join(run.workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  last = run.resolved.training.num_steps
  merged = {}
  for record in metric_writers.read_jsonl(path):
    if record["step"] == last:
      merged.update(record)
  evaluated = any(k.startswith("eval/") for k in merged)
  if "train/loss" not in merged or (run.resolved.data.eval_examples > 0 and not evaluated):
    return None
  return merged


def is_finished(run: Run) -> bool:
  return os.path.exists(run.final_metrics_path) or final_metrics(run) is not None


def record_if_finished(run: Run) -> bool:
  """Writes final_metrics.json when the run is finished (whoever ran it: here, SLURM, ...)."""
  if os.path.exists(run.final_metrics_path):
    return True
  metrics = final_metrics(run)
  if metrics is None:
    return False
  with open(run.final_metrics_path, "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=1)
  return True


def run_one(run: Run, passthrough: Sequence[str]) -> str:
  """Trains one run in a child process (log appended to its train.log); returns its status."""
  os.makedirs(run.workdir, exist_ok=True)
  command = [sys.executable, "-m", "memreasoner_jax.main", *run.main_flags(passthrough)]
  with open(run.log, "a", encoding="utf-8") as log:
    log.write(f"$ {shlex.join(command)}\n")
    log.flush()
    code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                          check=False).returncode
  if code:
    return f"failed (exit {code})"
  return "finished" if record_if_finished(run) else "incomplete"


def run_local(runs: list[Run], passthrough: Sequence[str], parallel: int) -> dict[str, str]:
  """Runs `runs` here, `parallel` at a time; a failure does not stop the others."""
  statuses = {}
  with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
    futures = {pool.submit(run_one, run, passthrough): run for run in runs}
    for future in concurrent.futures.as_completed(futures):
      run = futures[future]
      statuses[run.name] = future.result()
      print(f"{statuses[run.name]}: {run.name} (log {run.log})", flush=True)
  return statuses


def write_slurm_script(runs: list[Run], passthrough: Sequence[str], sbatch_args: str,
                       path: str) -> None:
  """One `sbatch launch/slurm.sbatch` command per run, from the repository root; each job's
  output goes to the run's train.log, as a local run's does."""
  lines = ["#!/usr/bin/env bash",
           "# Submits the unfinished runs of a sweep, one SLURM job each (written by "
           "launch/sweep.py).", "set -euo pipefail", f"cd {shlex.quote(REPO)}"]
  for run in runs:
    sbatch = ["sbatch", f"--job-name={run.name}", f"--output={run.log}", "--open-mode=append",
              *shlex.split(sbatch_args), "launch/slurm.sbatch", *run.main_flags(passthrough)]
    lines.append(shlex.join(sbatch))
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  os.chmod(path, 0o755)


def gather(runs: list[Run], statuses: dict[str, str], workdir: str, metric: str) -> list[dict]:
  """results.csv, results.md and results.png in `workdir`: one row per run, in sweep order."""
  rows, metric_names = [], set()
  for run in runs:
    status = "finished" if record_if_finished(run) else statuses.get(run.name, "not finished")
    row = {"run": run.name, **run.sweep_values, "status": status}
    if status == "finished":
      with open(run.final_metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
      kept = {k: v for k, v in metrics.items() if k == "train/loss" or k.startswith("eval/")}
      row.update(step=metrics["step"], **kept)
      metric_names.update(kept)
    rows.append({**row, "workdir": run.workdir, "log": run.log})
  keys = list(dict.fromkeys(k for run in runs for k in run.sweep_values))
  columns = ["run", *keys, "status", "step", *sorted(metric_names), "workdir", "log"]
  results.write_csv(rows, columns, os.path.join(workdir, "results.csv"))
  results.write_markdown(rows, columns, os.path.join(workdir, "results.md"))
  if not any(results.metric_value(row, metric) is not None for row in rows):
    metric = "train/loss"
  results.plot(rows, metric, os.path.join(workdir, "results.png"))
  return rows


def default_workdir(config_flag: str) -> str:
  path, _, arg = config_flag.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("sweeps", re.sub(r"[^A-Za-z0-9._+-]+", "-", f"{stem}-{arg}".strip("-")))


def define_flags() -> None:
  """The command's flags, defined only when it runs (importing it defines none)."""
  flags.DEFINE_string("config", None, "Config file and argument, e.g. "
      "configs/babi.py:qa1,tiny; the file defines get_sweep(arg).")
  flags.DEFINE_string("workdir", None, "Directory of the sweep: one workdir per run and "
      "the results table (default: sweeps/<config name>-<argument>).")
  flags.DEFINE_bool("dry_run", False, "List the runs and their commands; run nothing.")
  flags.DEFINE_integer("parallel", 1, "Local runs at once; they share this host's "
      "devices, so more than 1 is meant for CPU runs.")
  flags.DEFINE_bool("slurm", False, "Write one sbatch command per unfinished run to "
      f"<workdir>/{SLURM_SCRIPT} (using launch/slurm.sbatch) instead of "
      "running locally.")
  flags.DEFINE_string("slurm_args", "", "Options for every sbatch command, e.g. "
      "'--nodes=2 --time=4:00:00'.")
  flags.DEFINE_string("metric", "eval/*/babilong", "Metric of the figure (a pattern: "
      "the mean of matching metrics); train/loss when no run has it.")


def main(argv: Sequence[str]) -> None:
  extra = argv[1:]
  common_overrides = [a for a in extra if a.startswith("--config.")]
  passthrough = [a for a in extra if not a.startswith("--config.")]
  workdir = os.path.abspath(flags.FLAGS.workdir or default_workdir(flags.FLAGS.config))
  try:
    runs = expand(flags.FLAGS.config, workdir, common_overrides)
  except SweepError as e:
    sys.exit(f"ERROR: {e}\nNo run was started.")
  finished = {r.name for r in runs if is_finished(r)}
  todo = [r for r in runs if r.name not in finished]
  print(f"{len(runs)} runs in {workdir}: {len(finished)} finished, {len(todo)} to run", flush=True)
  if flags.FLAGS.dry_run:
    for run in runs:
      status = "finished" if run.name in finished else "to run"
      print(f"\n[{status}] {run.name}\n  python -m memreasoner_jax.main "
            f"{shlex.join(run.main_flags(passthrough))}")
    return
  for name in sorted(finished):
    print(f"skipped (finished): {name}")
  os.makedirs(workdir, exist_ok=True)
  statuses = {}
  if flags.FLAGS.slurm:
    script = os.path.join(workdir, SLURM_SCRIPT)
    write_slurm_script(todo, passthrough, flags.FLAGS.slurm_args, script)
    print(f"Wrote {len(todo)} sbatch commands to {script}; submit them with: bash {script}")
  else:
    statuses = run_local(todo, passthrough, flags.FLAGS.parallel)
  rows = gather(runs, statuses, workdir, flags.FLAGS.metric)
  failed = [row for row in rows if row["status"].startswith("failed")]
  print(f"Results: {os.path.join(workdir, 'results.md')} ({len(failed)} failed)")
  for row in failed:
    print(f"  failed: {row['run']} (log {row['log']})")
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("config")
  app.run(main)
