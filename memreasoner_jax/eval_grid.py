r"""Accuracy over tasks x context lengths x splits, written as JSON, CSV, markdown and a figure.

  python -m memreasoner_jax.eval_grid --checkpoint=/tmp/qa1_tiny --out=/tmp/qa1_grid \
      --tasks=qa1 --lengths=0k,1k,4k,16k,64k,128k --splits=standard,renamed --num=100

A cell is one (task, length, split): `--num` held-out examples generated with `--seed` (default:
the checkpoint's data.eval_seed), hidden in `--distractors` filler at that length (default: the
task's own, built-in book text for bAbI and RULER's noise for variable tracking); the renamed
split is the same haystack with answer words training never saw. With `--tfds_dir` the
examples are instead the first `--num` of the project's TFDS dataset for the cell, built once in
that directory and read back by every later evaluation. Scores (in %): BABILong's label
match for bAbI tasks (the renamed split's labels for it), RULER's string_match_all for variable
tracking, exact match for all; `accuracy` is the first of these. On a renamed bAbI split,
`trained_answers` is the share of answers that are training's answer words instead of the new
ones: the table's notes quote it where a split scores 0.

Every finished cell is written to OUT/cells.json at once, so a run that stops (interrupted,
preempted) and is started again with the same flags computes only the cells still missing.
Outputs in OUT: results.json, results.csv, results.md (accuracy, a row per task and split, a
column per length) and results.png (accuracy by length, a line per task and split, chance
dotted, questions per cell under each length, the run's name as its title).

The model is reached only through an `AnswerFn` (a batch of Examples -> answer strings), so any
model that can answer examples is evaluated by `run` the same way.
"""

from collections.abc import Callable, Sequence
import csv
import dataclasses
import json
import os
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import tqdm

from memreasoner_jax import checkpointing
from memreasoner_jax.data import sources
from memreasoner_jax import evaluate
from memreasoner_jax import inference
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import registry
from memreasoner_jax.tasks import rename

AnswerFn = Callable[[Sequence[Example]], list[str]]
SPLITS = ("standard", "renamed")
LENGTHS = ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k")
CACHE = "cells.json"
OUTPUTS = ("results.json", "results.csv", "results.md", "results.png")


@dataclasses.dataclass(frozen=True)
class Cell:
  task: str
  length: str
  split: str

  @property
  def key(self) -> str:
    return f"{self.task}/{self.length}/{self.split}"


def grid(tasks: Sequence[str], lengths: Sequence[str], splits: Sequence[str]) -> list[Cell]:
  """Every cell, tasks outermost; unknown names are errors naming the flag."""
  for name, values, allowed in (("tasks", tasks, registry.TASKS), ("lengths", lengths, LENGTHS),
                                ("splits", splits, SPLITS)):
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
      raise ValueError(f"--{name}: {unknown or 'nothing given'} not in {', '.join(allowed)}")
  return [Cell(t, l, s) for t in tasks for s in splits for l in lengths]


def cell_examples(cell: Cell, num: int, seed: int, distractors: str | None,
                  tfds_dir: str | None = None) -> list[Example]:
  """The cell's first `num` questions: generated, or with `tfds_dir` read from the project's
  TFDS dataset `{task}_{length}[_renamed]` there (built on first use, then read again)."""
  renamed = cell.split == "renamed"
  if tfds_dir is None:
    return registry.generate(cell.task, "test", num, seed, length=cell.length,
                             distractors_spec=distractors, rename_answers=renamed)
  name = f"memreasoner_tasks/{cell.task}_{cell.length}{'_renamed' if renamed else ''}"
  examples = sources.read(f"tfds:{name}", "test", tfds_dir)
  if len(examples) < num:
    raise ValueError(f"--num={num}: tfds:{name} in {tfds_dir} holds {len(examples)} test "
                     "questions")
  return examples[:num]


def evaluate_cell(answer_fn: AnswerFn, cell: Cell, num: int, seed: int,
                  distractors: str | None, tfds_dir: str | None = None) -> dict[str, Any]:
  """Scores (in %) and timing of one cell."""
  renamed = cell.split == "renamed"
  examples = cell_examples(cell, num, seed, distractors, tfds_dir)
  started = time.time()
  outputs = answer_fn(examples)
  seconds = time.time() - started
  totals: dict[str, float] = {}
  for example, output in zip(examples, outputs, strict=True):
    for name, value in evaluate.score(cell.task, output, example.answer, example.question,
                                      renamed).items():
      totals[name] = totals.get(name, 0.0) + value
  scores = {name: 100.0 * total / num for name, total in totals.items()}
  if renamed and cell.task in registry.BABI_TASKS:  # why a renamed split scores what it does
    trained = set(rename.answer_labels(cell.task))
    scores["trained_answers"] = 100.0 * sum(o.strip() in trained for o in outputs) / num
  metric = evaluate.metric_names(cell.task)[1]  # the task's own: RULER's or BABILong's
  return {**dataclasses.asdict(cell), "num": num, "metric": metric, "accuracy": scores[metric],
          **scores, "seconds": seconds, "seconds_per_question": seconds / num,
          "sample": {"question": examples[0].question, "target": examples[0].answer,
                     "output": outputs[0]}}


def _read_cache(path: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    cache = json.load(f)
  if cache.get("settings") != settings:
    raise ValueError(f"{path} holds cells of another evaluation (settings {cache.get('settings')}"
                     f", now {settings}); use another --out, or delete it to start over")
  return cache["cells"]


def write_json(path: str, value: Any) -> None:
  """Written to a temporary file and renamed, so an interruption never leaves half a file."""
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


def run(answer_fn: AnswerFn, out_dir: str, cells: Sequence[Cell], *, num: int, seed: int,
        distractors: str | None = None, model_id: str = "", progress: bool = True,
        tfds_dir: str | None = None) -> list[dict[str, Any]]:
  """Evaluates every cell not already in OUT/cells.json, then writes the four outputs.

  `model_id` names what is evaluated (e.g. the checkpoint directory); a cache written for
  another model or other settings is refused rather than mixed in. With `tfds_dir` the cells'
  questions come from TFDS datasets built there once (`cell_examples`).
  """
  if num < 1:
    raise ValueError(f"--num must be >= 1, got {num}")
  os.makedirs(out_dir, exist_ok=True)
  cache_path = os.path.join(out_dir, CACHE)
  settings = {"model": model_id, "num": num, "seed": seed, "distractors": distractors}
  if tfds_dir is not None:  # (a cache written before this setting existed still fits)
    settings["tfds_dir"] = tfds_dir
  done = _read_cache(cache_path, settings)
  todo = [c for c in cells if c.key not in done]
  if len(todo) < len(cells):
    logging.info("Resuming: %d of %d cells already in %s", len(cells) - len(todo), len(cells),
                 cache_path)
  with tqdm.tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell",
                 desc="eval grid", disable=not progress) as bar:
    for cell in todo:
      bar.set_postfix_str(cell.key)
      done[cell.key] = evaluate_cell(answer_fn, cell, num, seed, distractors, tfds_dir)
      write_json(cache_path, {"settings": settings, "cells": done})
      bar.update()
  rows = [done[c.key] for c in cells]
  write_outputs(rows, out_dir, title=run_name(model_id) if model_id else "")
  return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """Accuracy with a row per task and split and a column per length, then notes on splits
  that score 0 for a reason the rows show."""
  lengths = list(dict.fromkeys(r["length"] for r in rows))
  lines = ["| task | split | metric | " + " | ".join(lengths) + " |",
           "|---|---|---|" + "---:|" * len(lengths)]
  notes = []
  for task, split in dict.fromkeys((r["task"], r["split"]) for r in rows):
    by_length = {r["length"]: r for r in rows if (r["task"], r["split"]) == (task, split)}
    metric = next(iter(by_length.values()))["metric"]
    values = [f"{by_length[l]['accuracy']:.1f}" if l in by_length else "" for l in lengths]
    lines.append(f"| {task} | {split} | {metric} | " + " | ".join(values) + " |")
    zero = [r for r in by_length.values() if r["accuracy"] == 0 and "trained_answers" in r]
    if zero:
      share = sum(r["trained_answers"] * r["num"] for r in zero) / sum(r["num"] for r in zero)
      notes.append(f"{task} {split} scores 0 at {', '.join(r['length'] for r in zero)}: its "
                   f"answers are words training never had, and {share:.0f}% of the model's "
                   "answers there are answers from training instead.")
  table = "\n".join(lines) + "\n"
  return table + "".join(f"\nNote: {note}\n" for note in notes)


def chance(task: str) -> float | None:
  """Accuracy (%) of a blind guess: one room in six for bAbI; variable tracking has none worth
  drawing (names are free text)."""
  return 100.0 / len(rename.answer_labels(task)) if task in registry.BABI_TASKS else None


def run_name(directory: str) -> str:
  """`run step N` for a `run/checkpoints/N` step directory, else the directory's last part."""
  directory = os.path.normpath(directory)
  parent, step = os.path.split(directory)
  if os.path.basename(parent) == "checkpoints" and step.isdigit():
    return f"{os.path.basename(os.path.dirname(parent))} step {step}"
  return os.path.basename(directory)


def plot(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
  """`figure(rows, title)` saved as a PNG."""
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  fig = figure(rows, title)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def figure(rows: Sequence[dict[str, Any]], title: str = "") -> Any:
  """Accuracy by length (evenly spaced, as the lengths double), a line per task and split, each
  task's chance level dotted, and the questions per cell under each length."""
  import matplotlib  # pylint: disable=import-outside-toplevel  (only the figure needs it)
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  lengths = list(dict.fromkeys(r["length"] for r in rows))
  fig, ax = plt.subplots(figsize=(7, 4))
  for task, split in dict.fromkeys((r["task"], r["split"]) for r in rows):
    points = [(lengths.index(r["length"]), r["accuracy"]) for r in rows
              if (r["task"], r["split"]) == (task, split)]
    ax.plot(*zip(*points), marker="o", linestyle="--" if split == "renamed" else "-",
            label=f"{task} {split}")
  levels = {chance(t) for t in dict.fromkeys(r["task"] for r in rows)} - {None}
  for level in sorted(levels):
    ax.axhline(level, color="gray", linestyle=":", linewidth=1,
               label=f"chance ({level:.1f}%)" if len(levels) == 1 else None)
  counts = ["/".join(str(n) for n in dict.fromkeys(r["num"] for r in rows if r["length"] == l))
            for l in lengths]
  ax.set_xticks(range(len(lengths)), [f"{l}\nn={n}" for l, n in zip(lengths, counts)])
  ax.set_xlabel("context length (tokens); n = questions per cell")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
  """One line per row; nested values (samples, lists) are left out."""
  columns = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: str, title: str = "") -> None:
  """results.json, results.csv, results.md and results.png in `out_dir`."""
  json_path, csv_path, md_path, png_path = (os.path.join(out_dir, n) for n in OUTPUTS)
  write_json(json_path, list(rows))
  write_csv(rows, csv_path)
  with open(md_path, "w", encoding="utf-8") as f:
    f.write(markdown_table(rows))
  plot(rows, png_path, title)


def define_flags() -> None:
  """Defines the command's flags; only run as a command, so importing this module next
  to other commands (tests, notebooks) never defines a flag twice."""
  global _CHECKPOINT, _OUT, _TASKS, _LENGTHS, _SPLITS, _NUM, _SEED, _DISTRACTORS, _TFDS_DIR
  _CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A training workdir (its newest step) or "
                                    "one checkpoints/<step> directory.")
  _OUT = flags.DEFINE_string("out", None, "Output directory (results.* and the cells.json cache).")
  _TASKS = flags.DEFINE_list("tasks", None, "Tasks to evaluate (default: the checkpoint's).")
  _LENGTHS = flags.DEFINE_list("lengths", list(LENGTHS), "Context lengths in tokens.")
  _SPLITS = flags.DEFINE_list("splits", list(SPLITS), "standard and/or renamed.")
  _NUM = flags.DEFINE_integer("num", 100, "Examples per cell.")
  _SEED = flags.DEFINE_integer("seed", None, "Generation seed (default: the checkpoint's "
                               "data.eval_seed).")
  _DISTRACTORS = flags.DEFINE_string("distractors", None, "Filler source: builtin, noise, a text "
                                     "file or directory of books, or tfds:pg19 (default: the "
                                     "task's own).")
  _TFDS_DIR = flags.DEFINE_string("tfds_dir", None, "Read each cell's questions from the "
                                  "project's TFDS dataset <task>_<length>[_renamed] in this "
                                  "directory, built there on first use, instead of generating "
                                  "them (--seed and --distractors then do not apply).")


def main(argv: Sequence[str]) -> None:
  del argv
  checkpointing.quiet_orbax_logs()
  try:
    reasoner = inference.load(_CHECKPOINT.value)
    tasks = _TASKS.value or reasoner.config.data.tasks.split("+")
    seed = reasoner.config.data.eval_seed if _SEED.value is None else _SEED.value
    rows = run(reasoner.answer_examples, _OUT.value, grid(tasks, _LENGTHS.value, _SPLITS.value),
               num=_NUM.value, seed=seed, distractors=_DISTRACTORS.value,
               model_id=reasoner.directory, tfds_dir=_TFDS_DIR.value)
  except (ValueError, FileNotFoundError) as e:  # bad flags, checkpoint or cache: no traceback
    sys.exit(f"ERROR: {e}")
  print(markdown_table(rows), end="")
  print(f"Wrote {', '.join(OUTPUTS)} to {_OUT.value}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["checkpoint", "out"])
  app.run(main)
