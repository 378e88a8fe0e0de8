"""The evaluation command writes JSON, CSV, markdown and PNG; an interrupted grid resumes."""

import csv
import json
import os
import subprocess
import sys

import jax
import pytest

from memreasoner_jax import eval_grid
from memreasoner_jax import inference
from memreasoner_jax.tasks import metrics as task_metrics
from memreasoner_jax.tasks import registry
from memreasoner_jax.tasks import vocab


@pytest.fixture(scope="module")
def reasoner(qa1_checkpoint):
  return inference.load(qa1_checkpoint.workdir, devices=jax.devices()[:1])


def test_command_writes_all_four_outputs(qa1_checkpoint, reasoner, tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  result = subprocess.run(
      [sys.executable, "-m", "memreasoner_jax.eval_grid", f"--checkpoint={qa1_checkpoint.workdir}",
       f"--out={tmp_path}", "--lengths=0k,1k", "--num=4", "--distractors=builtin"],
      capture_output=True, text=True, env=env, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| qa1 | standard | babilong |" in result.stdout
  assert sorted(os.listdir(tmp_path)) == sorted(eval_grid.OUTPUTS + (eval_grid.CACHE,))
  rows = json.loads((tmp_path / "results.json").read_text())
  assert [(r["length"], r["split"]) for r in rows] == [
      ("0k", "standard"), ("1k", "standard"), ("0k", "renamed"), ("1k", "renamed")]
  assert all(r["num"] == 4 and r["metric"] == "babilong" for r in rows)
  # Each cell's scores, counted here: the same questions (the checkpoint's eval seed) answered in
  # this process and checked one by one.
  seed = reasoner.config.data.eval_seed
  for row in rows:
    renamed = row["split"] == "renamed"
    examples = registry.generate("qa1", "test", 4, seed, length=row["length"],
                                 distractors_spec="builtin", rename_answers=renamed)
    outputs = reasoner.answer_examples(examples)
    labels = vocab.RENAMED_ROOMS if renamed else vocab.ROOMS
    exact = sum(task_metrics.exact_match(o, e.answer) for o, e in zip(outputs, examples))
    label = sum(task_metrics.compare_answers(o, e.answer, e.question, labels)
                for o, e in zip(outputs, examples))
    assert (row["exact_match"], row["accuracy"]) == (25.0 * exact, 25.0 * label), (row, outputs)
  # The clean cell's questions are the first four the training process itself decoded.
  trained = qa1_checkpoint.answers[:4]
  assert rows[0]["exact_match"] == 25.0 * sum(
      task_metrics.exact_match(a["output"], a["target"]) for a in trained)
  with open(tmp_path / "results.csv", encoding="utf-8") as f:
    assert [r["split"] for r in csv.DictReader(f)] == [r["split"] for r in rows]
  table = (tmp_path / "results.md").read_text().splitlines()
  assert table[0] == "| task | split | metric | 0k | 1k |" and table[3].startswith("| qa1 | renamed")
  assert all(line.startswith("Note: ") for line in table[4:] if line), table
  assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_grid_resumes_without_recomputing_finished_cells(reasoner, tmp_path):
  cells = eval_grid.grid(["qa1"], ["0k", "1k"], ["standard", "renamed"])
  asked = []

  def answer(examples):
    if len(asked) == 2:
      raise KeyboardInterrupt
    asked.append(examples[0].context)
    return reasoner.answer_examples(examples)

  with pytest.raises(KeyboardInterrupt):
    eval_grid.run(answer, str(tmp_path), cells, num=3, seed=1, progress=False)
  cached = json.loads((tmp_path / eval_grid.CACHE).read_text())["cells"]
  assert list(cached) == ["qa1/0k/standard", "qa1/1k/standard"]

  asked.clear()
  rows = eval_grid.run(lambda e: asked.append(e) or reasoner.answer_examples(e), str(tmp_path),
                       cells, num=3, seed=1, progress=False)
  assert len(asked) == 2  # only the two renamed cells
  assert [r["sample"] for r in rows[:2]] == [cached[c.key]["sample"] for c in cells[:2]]
  with pytest.raises(ValueError, match="holds cells of another evaluation"):
    eval_grid.run(answer, str(tmp_path), cells, num=5, seed=1, progress=False)


def test_unknown_grid_names_are_named():
  with pytest.raises(ValueError, match=r"--lengths: \['3k'\]"):
    eval_grid.grid(["qa1"], ["3k"], ["standard"])
  with pytest.raises(ValueError, match=r"--splits"):
    eval_grid.grid(["qa1"], ["0k"], ["shuffled"])


def _row(length, split, accuracy, num=4, trained_answers=None):
  row = {"task": "qa1", "length": length, "split": split, "metric": "babilong",
         "accuracy": accuracy, "num": num}
  return row if trained_answers is None else {**row, "trained_answers": trained_answers}


def test_table_notes_say_why_a_renamed_split_scores_zero():
  rows = [_row("0k", "standard", 50.0), _row("1k", "standard", 25.0),
          _row("0k", "renamed", 0.0, trained_answers=100.0),
          _row("1k", "renamed", 0.0, num=12, trained_answers=75.0)]
  table = eval_grid.markdown_table(rows)
  assert table.endswith("\nNote: qa1 renamed scores 0 at 0k, 1k: its answers are words training "
                        "never had, and 81% of the model's answers there are answers from "
                        "training instead.\n")
  rows[3] = _row("1k", "renamed", 25.0, trained_answers=50.0)
  assert "at 0k:" in eval_grid.markdown_table(rows)
  assert "Note" not in eval_grid.markdown_table(rows[:2])


def test_figure_has_the_run_name_a_chance_line_and_question_counts():
  assert eval_grid.run_name("/abs/runs/qa1_tiny/checkpoints/400") == "qa1_tiny step 400"
  assert eval_grid.run_name("/abs/exports/qa1_model/") == "qa1_model"
  rows = [_row("0k", "standard", 50.0), _row("128k", "standard", 25.0, num=2)]
  fig = eval_grid.figure(rows, eval_grid.run_name("/abs/runs/qa1_tiny/checkpoints/400"))
  (ax,) = fig.axes
  assert ax.get_title() == "qa1_tiny step 400"
  assert [t.get_text() for t in ax.get_xticklabels()] == ["0k\nn=4", "128k\nn=2"]
  chance = [l for l in ax.get_lines() if l.get_linestyle() == ":"]
  assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(100 / 6)
  assert "chance (16.7%)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_cells_read_from_tfds_datasets_built_once(tmp_path, monkeypatch):
  from memreasoner_jax.data import tfds_builder  # pylint: disable=import-outside-toplevel

  builds = []
  original = tfds_builder.MemreasonerTasks.generate_split

  def counted(self, split, num):
    builds.append(self.builder_config.name)
    return original(self, split, num)

  monkeypatch.setattr(tfds_builder.MemreasonerTasks, "generate_split", counted)
  cells = eval_grid.grid(["qa1"], ["1k"], ["standard", "renamed"])
  tfds_dir = str(tmp_path / "tfds")
  seen = []

  def oracle(examples):  # answers every question right; keeps what it was asked
    seen.extend(examples)
    return [e.answer for e in examples]

  rows = eval_grid.run(oracle, str(tmp_path / "first"), cells, num=5, seed=0, tfds_dir=tfds_dir,
                       progress=False)
  assert sorted(builds) == ["qa1_1k", "qa1_1k_renamed"]
  assert [r["accuracy"] for r in rows] == [100.0, 100.0]
  assert seen[5].answer in vocab.RENAMED_ROOMS and len(seen[0].context) > 20
  builds.clear()
  again = []
  eval_grid.run(lambda exs: again.extend(exs) or [e.answer for e in exs],
                str(tmp_path / "second"), cells, num=5, seed=0, tfds_dir=tfds_dir,
                progress=False)
  assert builds == [] and again == seen  # read back, not generated again
  with pytest.raises(ValueError, match="holds 1000 test questions"):
    eval_grid.cell_examples(cells[0], 1001, 0, None, tfds_dir)
