r"""Reproduces the results table: trains every row of `configs/results.py`, then evaluates each
checkpoint across context lengths and splits on held-out books.

  python -m memreasoner_jax.tools.reproduce --rows=tiny --out=/tmp/results \
      --test_books=/data/books/melville-moby_dick.txt,/data/books/austen-emma.txt

Steps, each resumable: (1) every row's training run, one after another, in OUT/runs/<row>
(a finished run is not started again; an interrupted one resumes from its checkpoint; a row
with an evaluation lever, `best_check` or `average`, shares the run of the row without it);
(2) every row's evaluation grid on each test book, in OUT/eval/<row>/<book>/ (eval_grid's cell
cache: finished cells are never recomputed); (3) the table OUT/results.md, OUT/results.json,
OUT/results.csv and the heatmap OUT/results.png. With --only, the rows left out keep their cells
from the table already in OUT, so one row can be added or redone at a time.

bAbI tasks are hidden in the test books; variable tracking in RULER's noise, as RULER does. The
test books must share no file with any row's training filler (checked before anything runs).
Each cell's accuracy comes with a 95% Wilson interval over its questions (both books pooled).
"""

from collections.abc import Sequence
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging

from memreasoner_jax import checkpointing
from memreasoner_jax import eval_grid
from memreasoner_jax import inference
from memreasoner_jax.configs import babi
from memreasoner_jax.configs import results as results_config
from memreasoner_jax.tasks import distractors
from memreasoner_jax.tasks import lengths as lengths_lib

_LONG_LENGTHS = ("64k", "128k")  # cells that may use fewer questions (--num_long)
SELECT_NUM = 500  # held-out questions a split on which `best_check` compares kept steps


@dataclasses.dataclass(frozen=True)
class Plan:
  rows: list[results_config.Row]
  lengths: list[str]
  splits: list[str]
  test_books: list[str]
  num: int
  num_long: int
  seed: int


def make_plan(rows_arg: str, lengths: Sequence[str], splits: Sequence[str],
              test_books: Sequence[str], only: Sequence[str], num: int, num_long: int,
              seed: int) -> Plan:
  """Checks every input before any run starts; errors name the flag."""
  rows = results_config.get_rows(rows_arg)
  if only:
    unknown = sorted(set(only) - {r.name for r in rows} - {r.task for r in rows})
    if unknown:
      raise ValueError(f"--only: {unknown} are neither rows ({', '.join(r.name for r in rows)}) "
                       f"nor tasks")
    rows = [r for r in rows if r.name in only or r.task in only]
  eval_grid.grid([r.task for r in rows], lengths, splits)  # unknown names are errors
  if not test_books:
    raise ValueError("--test_books: give at least one book the training filler never used")
  if num < 1 or num_long < 1:
    raise ValueError(f"--num and --num_long must be >= 1, got {num} and {num_long}")
  books = [str(distractors.text_files(b)[0].resolve()) if os.path.isfile(b) else b
           for b in test_books]
  for book in books:
    test_files = {p.resolve() for p in distractors.text_files(book)}
    for row in rows:
      filler = _config(row).data.train_filler
      if filler.startswith(("builtin", "noise", "tfds:")):
        continue  # generated or TFDS text: no file can be shared with a book
      shared = test_files & {p.resolve() for p in distractors.text_files(filler)}
      if shared:
        raise ValueError(f"--test_books: {sorted(map(str, shared))} is also row {row.name}'s "
                         f"training filler (data.train_filler={filler!r})")
  return Plan(rows, list(lengths), list(splits), books, num, num_long, seed)


def _config(row: results_config.Row):
  config = babi.get_config(row.arg)
  for key, value in row.overrides.items():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def _finished(workdir: str, num_steps: int) -> bool:
  try:
    _, steps = checkpointing.checkpoint_steps(workdir)
  except FileNotFoundError:
    return False
  return steps[0] >= num_steps


def train(row: results_config.Row, workdir: str) -> float:
  """Trains one row (or finishes an interrupted run); returns the seconds it took."""
  if _finished(workdir, _config(row).training.num_steps):
    logging.info("%s: finished run in %s, not trained again", row.name, workdir)
    return 0.0
  config_path = os.path.join(os.path.dirname(babi.__file__), "babi.py")
  command = [sys.executable, "-m", "memreasoner_jax.main", f"--config={config_path}:{row.arg}",
             f"--workdir={workdir}"]
  command += [f"--config.{k}={v}" for k, v in row.overrides.items()]
  os.makedirs(workdir, exist_ok=True)
  started = time.time()
  with open(os.path.join(workdir, "reproduce.log"), "a", encoding="utf-8") as log:
    logging.info("%s: training (%s)", row.name, " ".join(command))
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
  if code:
    raise RuntimeError(f"training row {row.name} failed (exit {code}); see {log.name}")
  return time.time() - started


def _fits(row: results_config.Row, length: str) -> bool:
  """The baseline reads the whole context: only lengths its sequence holds."""
  if row.model != "baseline":
    return True
  chars = lengths_lib.context_budget(length) * lengths_lib.CHARS_PER_TOKEN if length != "0k" else 0
  return chars <= _config(row).data.sequence_tokens  # byte tokens: one per character


def best_step(row: results_config.Row, workdir: str, out: str) -> int:
  """The kept step whose held-out check scores best, both splits averaged (ties: the later).

  The check is the run's own held-out data (generated stories at data.eval_length in the task's
  built-in filler, seed data.eval_seed; no test book), `SELECT_NUM` questions a split, each kept
  step's cells cached in OUT/eval/<row>/check-<step>. The renamed split is in it because
  training's own evaluation asks the standard one only, and a step can answer those well while
  it still misspells names it never saw.
  """
  directory, steps = checkpointing.checkpoint_steps(workdir)
  scores = {}
  for step in steps:
    reasoner = inference.load(os.path.join(directory, str(step)))
    data = reasoner.config.data
    cells = eval_grid.run(reasoner.answer_examples, os.path.join(out, "eval", row.name,
                                                                 f"check-{step}"),
                          eval_grid.grid([row.task], [data.eval_length], eval_grid.SPLITS),
                          num=SELECT_NUM, seed=data.eval_seed,
                          model_id=f"{row.run_name}/{step}", progress=False)
    scores[step] = sum(cell["accuracy"] for cell in cells) / len(cells)
  best = max(scores, key=lambda step: (scores[step], step))
  logging.info("%s: held-out check by step %s: step %d", row.name, scores, best)
  return best


def load(row: results_config.Row, workdir: str, out: str) -> tuple[inference.Reasoner, str]:
  """What the row evaluates, and its name in the cells' cache: the run's newest checkpoint;
  (`best_check`) the kept step whose held-out check is best; (`average`) the mean parameters of
  the kept steps. A step chosen or averaged is part of the name, so cells of other steps are
  refused, not reused."""
  if row.checkpoint == "last":
    return inference.load(workdir), row.name
  directory, steps = checkpointing.checkpoint_steps(workdir)
  if row.checkpoint == "best":
    step = best_step(row, workdir, out)
    return inference.load(os.path.join(directory, str(step))), f"{row.name}/{step}"
  reasoner = inference.load_average([os.path.join(directory, str(s)) for s in sorted(steps)])
  return reasoner, f"{row.name}/mean-{'-'.join(map(str, sorted(steps)))}"


def evaluate(plan: Plan, row: results_config.Row, workdir: str, out: str) -> list[dict[str, Any]]:
  """The row's cells on every test book (vt on RULER's noise), pooled over books."""
  reasoner, model_id = load(row, workdir, out)
  fitting = [l for l in plan.lengths if _fits(row, l)]
  sources = ["noise"] if row.task.startswith("vt") else plan.test_books
  cells: dict[str, list[dict[str, Any]]] = {}
  for source in sources:
    source_name = os.path.splitext(os.path.basename(source))[0]
    for group, num in (([l for l in fitting if l not in _LONG_LENGTHS], plan.num),
                       ([l for l in fitting if l in _LONG_LENGTHS], plan.num_long)):
      if not group:
        continue
      group_dir = os.path.join(out, "eval", row.name, f"{source_name}-n{num}")
      for cell in eval_grid.run(reasoner.answer_examples, group_dir,
                                eval_grid.grid([row.task], group, plan.splits), num=num,
                                seed=plan.seed, distractors=source, model_id=model_id,
                                progress=False):
        cells.setdefault(f"{cell['split']}/{cell['length']}", []).append(cell)
  pooled = []
  for key, parts in cells.items():
    split, length = key.split("/")
    n = sum(p["num"] for p in parts)
    acc = sum(p["accuracy"] * p["num"] for p in parts) / n
    low, high = wilson_interval(acc / 100.0, n)
    pooled.append({"row": row.name, "label": row.label, "step": reasoner.step, "task": row.task,
                   "model": row.model_label,
                   "supervision": row.supervision, "split": split, "length": length,
                   "accuracy": acc, "ci_low": 100 * low, "ci_high": 100 * high, "num": n,
                   "seconds": sum(p["seconds"] for p in parts),
                   "sources": [os.path.basename(s) for s in sources]})
  return pooled


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
  """95% Wilson score interval of a proportion p over n questions."""
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


def _absent(model: str) -> str:
  """What a cell the table lacks shows: only the baseline has lengths it cannot hold (`_fits`),
  so any other row's missing cell is a length added after its evaluation."""
  return "n/f" if model == "baseline" else "—"


def markdown(cells: list[dict[str, Any]], lengths: Sequence[str]) -> str:
  lines = ["| model | task | supervision | step | split | " + " | ".join(lengths) + " |",
           "|---|---|---|---:|---|" + "---:|" * len(lengths)]
  keys = dict.fromkeys((c["row"], c["split"]) for c in cells)
  for row, split in keys:
    by_length = {c["length"]: c for c in cells if (c["row"], c["split"]) == (row, split)}
    first = next(iter(by_length.values()))
    values = [f"{by_length[l]['accuracy']:.1f} ({by_length[l]['ci_low']:.0f}-"
              f"{by_length[l]['ci_high']:.0f})" if l in by_length else _absent(first["model"])
              for l in lengths]
    lines.append(f"| {first['model']} | {first['task']} | {first['supervision']} | "
                 f"{first['step']} | {split} | "
                 + " | ".join(values) + " |")
  return "\n".join(lines) + "\n"


def heatmap(cells: list[dict[str, Any]], lengths: Sequence[str], path: str) -> None:
  """BABILong-style figure: a row per model, task, supervision and split, a column per length."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  keys = list(dict.fromkeys((c["label"], c["split"]) for c in cells))
  models = {c["label"]: c["model"] for c in cells}
  grid = np.full((len(keys), len(lengths)), np.nan)
  for c in cells:
    grid[keys.index((c["label"], c["split"])), list(lengths).index(c["length"])] = c["accuracy"]
  labels = [f"{label}, {split}" for label, split in keys]
  # Wide enough for the longest row label (about 0.06 inch a character at this font size), the
  # cells and the axis label below.
  width = 1.0 + 0.06 * max(len(label) for label in labels) + 0.7 * len(lengths)
  fig, ax = plt.subplots(figsize=(width, 1.2 + 0.4 * len(keys)))
  colours = plt.get_cmap("RdYlGn").with_extremes(bad="lightgrey")  # absent: no score, not 0
  ax.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0, vmax=100, aspect="auto")
  for i, j in np.ndindex(grid.shape):
    ax.text(j, i, _absent(models[keys[i][0]]) if np.isnan(grid[i, j]) else f"{grid[i, j]:.0f}",
            ha="center", va="center", fontsize=8)
  ax.set_xticks(range(len(lengths)), lengths)
  ax.set_yticks(range(len(keys)), labels, fontsize=8)
  ax.set_xlabel("context length in tokens (n/f: does not fit the model; —: not evaluated)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _earlier_rows(out: str, plan: Plan) -> list[dict[str, Any]]:
  """The cells that an earlier reproduction in `out` wrote for rows this one leaves out, when it
  tested the same books with the same seed: `--only=ROW` updates that row of the table and
  keeps the others (whose runs may be gone)."""
  path = os.path.join(out, "results.json")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    earlier = json.load(f)
  if (earlier["test_books"], earlier["seed"]) != (plan.test_books, plan.seed):
    logging.warning("%s tested other books or another seed: its rows are left out", path)
    return []
  mine = {row.name for row in plan.rows}
  return [cell for cell in earlier["cells"] if cell["row"] not in mine]


def _table_order(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows in configs/results.py's order (a stable sort keeps each row's own cell order)."""
  order = {row.name: i for i, row in enumerate(results_config.get_rows("tiny"))}
  return sorted(cells, key=lambda cell: order.get(cell["row"], len(order)))


def reproduce(plan: Plan, out: str, train_runs: bool = True) -> list[dict[str, Any]]:
  """Trains (unless `train_runs` is False: then the checkpoints there are evaluated as they
  are, e.g. a run stopped early) and evaluates every row, and writes the table."""
  os.makedirs(out, exist_ok=True)
  timings_path = os.path.join(out, "timings.json")
  timings = {}
  if os.path.exists(timings_path):
    with open(timings_path, encoding="utf-8") as f:
      timings = json.load(f)
  cells = []
  for row in plan.rows:
    workdir = os.path.join(out, "runs", row.run_name)
    if not train_runs:
      try:
        checkpointing.checkpoint_steps(workdir)
      except FileNotFoundError:
        logging.warning("%s: no checkpoint in %s, left out of the table", row.name, workdir)
        continue
    elif seconds := train(row, workdir):
      timings[f"train/{row.run_name}"] = seconds
      # A new run under an old name (its run folder deleted to train it again): the cells
      # and evaluation time of the checkpoints it replaces do not carry over, for any row
      # evaluating this run.
      for sharing in (r for r in plan.rows if r.run_name == row.run_name):
        shutil.rmtree(os.path.join(out, "eval", sharing.name), ignore_errors=True)
        timings.pop(f"eval/{sharing.name}", None)
    started = time.time()
    cells += evaluate(plan, row, workdir, out)
    timings[f"eval/{row.name}"] = timings.get(f"eval/{row.name}", 0.0) + time.time() - started
    with open(timings_path, "w", encoding="utf-8") as f:
      json.dump(timings, f, indent=1)
  cells = _table_order(_earlier_rows(out, plan) + cells)
  if not cells:
    raise FileNotFoundError(f"no row of the table has a checkpoint in {out}/runs to evaluate")
  eval_grid.write_json(os.path.join(out, "results.json"), {
      "test_books": plan.test_books, "seed": plan.seed, "num": plan.num,
      "num_long": plan.num_long, "timings_seconds": timings, "cells": cells})
  with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
    f.write(markdown(cells, plan.lengths))
  eval_grid.write_csv(cells, os.path.join(out, "results.csv"))
  heatmap(cells, plan.lengths, os.path.join(out, "results.png"))
  return cells


def define_flags() -> None:
  global _ROWS, _OUT, _TEST_BOOKS, _LENGTHS, _SPLITS, _ONLY, _NUM, _NUM_LONG, _SEED, _TRAIN
  _ROWS = flags.DEFINE_string("rows", "tiny", "configs/results.py argument: <preset>[,smoke].")
  _OUT = flags.DEFINE_string("out", None, "Output directory: runs/, eval/ and results.*.")
  _TEST_BOOKS = flags.DEFINE_list("test_books", None, "Held-out books (files) for the "
                                  "haystacks; none may be training filler.")
  _LENGTHS = flags.DEFINE_list("lengths", list(eval_grid.LENGTHS), "Context lengths.")
  _SPLITS = flags.DEFINE_list("splits", list(eval_grid.SPLITS), "standard and/or renamed.")
  _ONLY = flags.DEFINE_list("only", [], "Rows or tasks to run (default: every row).")
  _NUM = flags.DEFINE_integer("num", 100, "Questions per cell and book.")
  _NUM_LONG = flags.DEFINE_integer("num_long", 50, "Questions per cell and book at 64k, 128k.")
  _TRAIN = flags.DEFINE_bool("train", True, "Train the rows first; --notrain evaluates the "
                              "checkpoints already in OUT/runs as they are.")
  _SEED = flags.DEFINE_integer("seed", 2, "Test generation seed (training uses 0, and the "
                               "runs' own held-out evaluation 1).")


def main(argv: Sequence[str]) -> None:
  del argv
  checkpointing.quiet_orbax_logs()
  try:
    plan = make_plan(_ROWS.value, _LENGTHS.value, _SPLITS.value, _TEST_BOOKS.value or [],
                     _ONLY.value, _NUM.value, _NUM_LONG.value, _SEED.value)
    cells = reproduce(plan, _OUT.value, train_runs=_TRAIN.value)
  except (ValueError, FileNotFoundError) as e:  # bad flags (no run has started), or no runs
    sys.exit(f"ERROR: {e}")
  print(markdown(cells, plan.lengths), end="")
  print(f"Wrote results.md, results.json, results.csv and results.png to {_OUT.value}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["out"])
  app.run(main)
