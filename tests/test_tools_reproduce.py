"""The results reproduction: plan checks, then train, evaluate and tabulate at smoke size."""

import dataclasses
import glob
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
from ml_collections import config_dict

from memreasoner_jax.configs import results as results_config
from memreasoner_jax.tasks import builtin_text
from memreasoner_jax.tasks import rename
from memreasoner_jax.tools import reproduce
from tests import train_testing

_ROWS = ["qa1-memreasoner-paper", "qa1-memreasoner-paper-best_check",
         "qa1-memreasoner-paper-average", "qa1-baseline"]


def _book(path) -> str:
  """A small stand-in for a held-out book: built-in test-half sentences, one paragraph each."""
  stream = builtin_text.BuiltinText("test").sentences(random.Random(0))
  path.write_text("\n\n".join(next(stream) for _ in range(400)), encoding="utf-8")
  return str(path)


def _plan(book, **changes):
  args = dict(rows_arg="tiny,smoke", lengths=["0k", "1k"], splits=["standard", "renamed"],
              test_books=[book], only=_ROWS, num=4, num_long=2, seed=2)
  return reproduce.make_plan(**{**args, **changes})


def _reproduce(book, out, only=tuple(_ROWS)):
  """The command, in a process of its own with one CPU device (an in-process evaluation on the
  test worker's eight fake devices would share that process with every other test's JAX)."""
  command = [sys.executable, "-m", "memreasoner_jax.tools.reproduce", "--rows=tiny,smoke",
             f"--out={out}", f"--test_books={book}", f"--only={','.join(only)}",
             "--lengths=0k,1k", "--splits=standard,renamed", "--num=4", "--num_long=2",
             "--seed=2"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False,
                          env=train_testing.one_device_env())
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  return result


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_reproduce_writes_table_figure_and_json_and_resumes(tmp_path):
  book = _book(tmp_path / "held_out.txt")
  plan = _plan(book)
  out = str(tmp_path / "results")
  printed = _reproduce(book, out).stdout
  for name in ("results.md", "results.json", "results.csv", "results.png", "timings.json"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    cells = json.load(f)["cells"]
  by_row = {}
  for c in cells:
    by_row.setdefault(c["row"], set()).add((c["split"], c["length"]))
    assert c["ci_low"] <= c["accuracy"] <= c["ci_high"] and c["num"] == 4
  # The memory model is evaluated everywhere; the baseline only where its context fits.
  assert by_row["qa1-memreasoner-paper"] == {(s, l) for s in plan.splits for l in plan.lengths}
  assert by_row["qa1-baseline"] == {(s, "0k") for s in plan.splits}
  # The best_check row trains nothing of its own: it evaluates the paper row's run at the kept
  # step whose held-out check was best.
  assert sorted(os.listdir(os.path.join(out, "runs"))) == ["qa1-baseline",
                                                           "qa1-memreasoner-paper"]
  checks = {}
  for path in glob.glob(os.path.join(out, "eval", "qa1-memreasoner-paper-best_check", "check-*",
                                     "cells.json")):
    with open(path, encoding="utf-8") as f:
      scores = [c["accuracy"] for c in json.load(f)["cells"].values()]
    checks[int(path.split(os.sep)[-2].removeprefix("check-"))] = sum(scores) / len(scores)
  assert sorted(checks) == [10, 20]  # every kept step of the smoke run
  best = max(checks, key=lambda step: (checks[step], step))
  assert {c["step"] for c in cells if c["row"] == "qa1-memreasoner-paper-best_check"} == {best}
  assert by_row["qa1-memreasoner-paper-best_check"] == by_row["qa1-memreasoner-paper"]
  # The average row evaluates the mean of both kept steps, under the newest step's number.
  with open(os.path.join(out, "eval", "qa1-memreasoner-paper-average", "held_out-n4",
                         "cells.json"), encoding="utf-8") as f:
    assert json.load(f)["settings"]["model"] == "qa1-memreasoner-paper-average/mean-10-20"
  assert {c["step"] for c in cells if c["row"] == "qa1-memreasoner-paper-average"} == {20}
  table = open(os.path.join(out, "results.md"), encoding="utf-8").read()
  assert "n/f" in table and "| memreasoner | qa1 | paper | 20 | renamed |" in table
  assert table in printed

  # Started again: no run trains again and no cell is evaluated again (each evaluated cell
  # rewrites its grid's cells.json).
  saved = glob.glob(os.path.join(out, "runs", "*", "checkpoints")) + glob.glob(
      os.path.join(out, "eval", "*", "*", "cells.json"))
  assert len(saved) == 8, saved  # 2 runs, 4 rows' cells, 2 held-out checks
  stamps = {path: os.path.getmtime(path) for path in saved}
  _reproduce(book, out)
  assert stamps == {path: os.path.getmtime(path) for path in saved}
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    assert json.load(f)["cells"] == cells

  # One row again (its run gone): the table keeps the other row's cells from the last table.
  shutil.rmtree(os.path.join(out, "runs", "qa1-baseline"))
  _reproduce(book, out, only=["qa1-memreasoner-paper"])
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    assert json.load(f)["cells"] == cells
  assert open(os.path.join(out, "results.md"), encoding="utf-8").read() == table

  # A row trained again (its run deleted): its cells are evaluated anew, not read from the
  # cells of the checkpoint it replaced.
  cells_path = os.path.join(out, "eval", "qa1-memreasoner-paper", "held_out-n4", "cells.json")
  before = os.path.getmtime(cells_path)
  shutil.rmtree(os.path.join(out, "runs", "qa1-memreasoner-paper"))
  _reproduce(book, out, only=["qa1-memreasoner-paper"])
  assert os.path.getmtime(cells_path) > before


def test_table_tells_a_length_not_evaluated_from_one_that_does_not_fit(tmp_path):
  # A row evaluated before a length joined the table shows a dash there; the baseline shows
  # n/f where its context cannot hold the length.
  cell = lambda row, model: {"row": row, "label": row, "model": model, "task": "qa1",
                             "supervision": "paper", "step": 10, "split": "standard",
                             "length": "0k", "accuracy": 50.0, "ci_low": 40.0, "ci_high": 60.0}
  cells = [cell("qa1-memreasoner-paper", "memreasoner"), cell("qa1-baseline", "baseline")]
  table = reproduce.markdown(cells, ["0k", "2k"]).splitlines()
  assert table[2].endswith("| standard | 50.0 (40-60) | — |"), table
  assert table[3].endswith("| standard | 50.0 (40-60) | n/f |"), table
  reproduce.heatmap(cells, ["0k", "2k"], str(tmp_path / "results.png"))
  assert os.path.getsize(tmp_path / "results.png") > 0


def test_bad_plans_fail_before_any_run(tmp_path, monkeypatch):
  book = _book(tmp_path / "held_out.txt")
  with pytest.raises(ValueError, match="--lengths"):
    _plan(book, lengths=["0k", "3k"])
  with pytest.raises(ValueError, match="--only"):
    _plan(book, only=["qa7"])
  with pytest.raises(ValueError, match="--test_books"):
    _plan(book, test_books=[])
  with pytest.raises(FileNotFoundError):
    _plan(str(tmp_path / "missing.txt"))
  with pytest.raises(FileNotFoundError, match="no row of the table has a checkpoint"):
    reproduce.reproduce(_plan(book), str(tmp_path / "empty"), train_runs=False)
  with pytest.raises(ValueError, match="results argument"):
    results_config.get_rows("tiny,fast")
  # A row trained on filler from the same book: the test book would not be held out.
  rows = results_config.get_rows("tiny,smoke")
  leaky = [results_config.Row(r.name, r.task, r.model, r.supervision, r.arg,
                              {**r.overrides, "data.train_filler": book}) for r in rows]
  monkeypatch.setattr(results_config, "get_rows", lambda arg: leaky)
  with pytest.raises(ValueError, match="training filler"):
    _plan(book)


def test_lever_rows_add_their_option_to_the_row_without_it():
  rows = {r.name: r for r in results_config.get_rows("tiny")}
  for task in ("qa1", "qa2"):
    for supervision in ("paper", "all"):
      base, lever = rows[f"{task}-memreasoner-{supervision}"], rows[
          f"{task}-memreasoner-{supervision}-copy"]
      assert lever.arg == base.arg and lever.supervision == base.supervision
      assert lever.overrides == {**base.overrides, **results_config.LEVERS["copy"]}
  both = rows["qa2-memreasoner-paper-copy-content"]
  assert both.overrides == {**rows["qa2-memreasoner-paper-copy"].overrides,
                            **results_config.LEVERS["content"]}
  assert "qa1-memreasoner-all-copy-content" not in rows  # one hop: no query update to change
  assert rows["qa1-memreasoner-all-copy"].label == "memreasoner + copy qa1 (all supervision)"
  assert both.label == "memreasoner + copy + content qa2 (paper supervision)"
  # The 1% vt1 row differs from the paper row only in its supervised fraction.
  one, paper = rows["vt1-memreasoner-1pct-copy-content"], rows["vt1-memreasoner-paper-copy-content"]
  assert one.overrides == {**paper.overrides, "data.sf_fraction": 0.01} and one.arg == paper.arg
  assert one.label == "memreasoner + copy + content vt1 (1% supervision)"


class _FakeReasoner:
  """Answers a split right, or not, as told: stands in for one kept step."""

  def __init__(self, right: set[str]):
    self.config = config_dict.ConfigDict({"data": {"eval_length": "1k", "eval_seed": 1}})
    self.right = right

  def answer_examples(self, examples):
    renamed = {e.answer for e in examples} - set(rename.answer_labels("qa1"))
    split = "renamed" if renamed else "standard"
    return [e.answer if split in self.right else "nowhere" for e in examples]


def test_best_check_takes_the_kept_step_best_on_both_splits(tmp_path, monkeypatch):
  workdir = tmp_path / "runs" / "qa1-memreasoner-paper"
  steps = {200: {"standard"}, 400: {"standard", "renamed"}, 600: {"renamed"}}
  for step in steps:
    os.makedirs(workdir / "checkpoints" / str(step))
  monkeypatch.setattr(reproduce, "SELECT_NUM", 20)
  monkeypatch.setattr(reproduce.inference, "load",
                      lambda path: _FakeReasoner(steps[int(os.path.basename(path))]))
  rows = {r.name: r for r in results_config.get_rows("tiny")}
  row = rows["qa1-memreasoner-paper-best_check"]
  assert reproduce.best_step(row, str(workdir), str(tmp_path)) == 400
  steps[600] = {"standard", "renamed"}  # as good as step 400: the later step
  shutil.rmtree(tmp_path / "eval")
  assert reproduce.best_step(row, str(workdir), str(tmp_path)) == 600


def test_an_evaluation_lever_shares_the_run_of_the_row_without_it():
  rows = {r.name: r for r in results_config.get_rows("tiny")}
  for lever, checkpoint in results_config.EVAL_LEVERS.items():
    sharing = [r for r in rows.values() if r.checkpoint == checkpoint]
    assert sharing and all(r.name.endswith(f"-{lever}") for r in sharing)
    for row in sharing:
      assert row.run_name == row.name.removesuffix(f"-{lever}")
      owner = rows.get(row.run_name)
      if owner is None:  # no row evaluates the run's last step: this row trains it
        continue
      assert owner.checkpoint == "last"
      assert (row.arg, row.overrides, row.task) == (owner.arg, owner.overrides, owner.task)
      assert row.lever == " + ".join(filter(None, [owner.lever, lever]))
  assert rows["qa1-memreasoner-paper"].run_name == "qa1-memreasoner-paper"


def test_a_run_without_a_row_of_its_own_is_trained_by_the_row_sharing_it(
    tmp_path, monkeypatch):
  name = "qa1-memreasoner-paper-copy-copy_written-answer_read-order-latest-alike-foreign-" \
         "train_bonus-dense"
  rows = {r.name: r for r in results_config.get_rows("tiny")}
  row = rows[f"{name}-average"]
  assert name not in rows and row.run_name == name and row.checkpoint == "average"
  # dense: a checkpoint every 100 steps, all six kept, for the mean of six steps.
  config = reproduce._config(row)
  assert (config.training.checkpoint_every, config.training.keep_checkpoints,
          config.training.num_steps) == (100, 6, 600)
  trained, evaluated = [], []
  monkeypatch.setattr(reproduce, "train", lambda r, workdir: trained.append(workdir) or 1.0)
  monkeypatch.setattr(reproduce, "evaluate",
                      lambda plan, r, workdir, out: evaluated.append((r.name, workdir)) or [])
  monkeypatch.setattr(reproduce, "heatmap", lambda *args: None)
  with pytest.raises(FileNotFoundError, match="no row of the table"):  # no cells: no table
    reproduce.reproduce(_plan(_book(tmp_path / "book.txt"), only=[row.name]), str(tmp_path))
  assert trained == [str(tmp_path / "runs" / name)]
  assert evaluated == [(row.name, str(tmp_path / "runs" / name))]


def test_rows_sharing_a_run_must_train_it_alike():
  rows = results_config.get_rows("tiny")
  owner = rows[0]
  alike = dataclasses.replace(owner, name=f"{owner.name}-average", run=owner.name,
                              checkpoint="average")
  results_config.check_runs([owner, alike])
  unlike = dataclasses.replace(alike, overrides={**owner.overrides, "training.seed": 7})
  with pytest.raises(ValueError, match=f"share run {owner.name} but train it differently"):
    results_config.check_runs([owner, unlike])
