r"""The rows of the results table: which runs train, on what, and where each is evaluated.

The argument is "<preset>[,smoke]": every row trains that preset; `smoke` shrinks each run to
the babi config's runlocal size, so the whole reproduction runs in minutes (tests do this).

  python -m memreasoner_jax.tools.reproduce --rows=tiny --out=/tmp/results \
      --test_books=BOOK_A.txt,BOOK_B.txt

Each row is one training run of `configs/babi.py` with overrides. Headline rows keep the
paper's conditions: contexts of at most 1k tokens in training (stories plus 0..30 filler
sentences from the built-in training text) and the paper's supervision (none for 1-hop tasks,
1% for 2-hop tasks); the reference rows supervise every example. The full-attention baseline
trains on the same stories.
"""

import dataclasses

from memreasoner_jax.configs import babi
from memreasoner_jax.models import presets

# "1%": one labelled example in a hundred, the paper's 2-hop fraction, for a 1-hop task.
SUPERVISION = {"paper": {"qa1": 0.0, "qa2": 0.01, "vt1": 0.0, "vt2": 0.01}, "all": 1.0,
               "1%": 0.01}
# The read learns from the answer loss too (straight-through fact selection), which is what
# lets the paper-supervision rows learn to select lines at all; measured in BUILD_NOTES.md.
_MEMREASONER = {"model.decoder.fact_gradient": "straight_through"}
# Options measured against the rows without them. copy: answers copied from the selected lines
# (models/copying.py), for answer words training never saw (the renamed splits). content: a
# hop's query update reads what its line says, not the line's temporal neighbourhood (a
# second hop otherwise reads the first hop's neighbours; models/hops.py).
# steps2x, steps5x: two and five times the tiny long schedule (1,200 and 3,000 steps); on 2 CPU
# cores about 31 and 80 minutes.
# answer_read: a read loss toward the lines holding a word of the answer, on every example; no
# supporting-fact label is used, so a row's supervision stays what it says (models/losses.py).
# order: explicit order instead of the BiGRU: every read adds a learned bonus times the line's
# relative place (the latest line about an actor wins over any gap; models/memory.py).
# question_read: the first hop's read loss toward the lines that hold a word of the question
# (the object's lines for qa2), on every example; no label either.
# copy_written: the copy pointer's queries hold the two tokens just written (models/copying.py).
# pseudo_values: half the vt training examples get values of 3 to 8 digits (tasks/rename.py).
# pseudo_rooms: every bAbI training story's rooms are pseudo-words (copy renames half), so the
# decoder never learns to spell a room from memory and must copy every answer.
# doubled: half the pseudo-rooms repeat a letter, as four of the six bAbI rooms do (bathroom).
# skip_read: no hop reads a line an earlier hop read (models/hops.py).
# latest: of the lines within 0.1 of a read's best similarity, the latest is read, however far
# apart they stand (models/memory.py; the margin chosen on trial books, BUILD_NOTES.md).
# alike: with latest, a later line is read in the best one's place only if its latent has cosine
# 0.8 or more with the best line's: filler that comes near the query by chance in a long
# haystack is not read (chosen on trial books, BUILD_NOTES.md).
# foreign: the read losses also weigh each read against the other examples' lines that share no
# word with its question or answer: about B times the distractors of one training context
# (models/losses.py). foreign_first: the same for the first hop's read alone.
# reseed: the same run from another seed: initialisation, batch order, and the generated training
# stories and filler (the held-out and test seeds stay 1 and 2), to show how far a row moves;
# reseed2 a third seed.
# sharp: the read losses at temperature 0.05 instead of 0.1, which weighs the hardest
# distractors more: a 128k haystack's misses are the few book lines that score above the fact.
# train_bonus: with order, the learned bonus for later lines in training reads only; at
# evaluation the latest line about an actor is left to latest (+ alike), and a 128k haystack's
# late filler lines gain nothing from their place (models/hops.py; chosen on trial books).
# lookalikes: a quarter of a bAbI story's training filler sentences open with a made-up word that
# shares an actor's first letters: in 128k haystacks of trial books the read took book lines
# opening with an actor's first letter for the fact (tasks/lookalikes.py).
# dense: a checkpoint every 100 steps, all six of a 600-step run kept; with `average`, the mean
# of steps 100 to 600 instead of 200, 400 and 600 (chosen on trial books, BUILD_NOTES.md).
# small: the small preset's model (twice the width, four times the feed-forward, C = 128) on the
# tiny row's data and schedule: the capacity comparison.
# before_read: a learned gate lets a hop read only the lines up to the previous hop's line
# (qa2: where the holder was when the object was dropped; models/hops.py).
LEVERS = {"copy": {"model.decoder.copy": True, "data.rename_fraction": 0.5},
          "content": {"model.hops.update_rule": "nearest_content"},
          "steps2x": {"training.num_steps": 1200},
          "steps5x": {"training.num_steps": 3000},
          "answer_read": {"loss.answer_read_weight": 1.0},
          "order": {"model.temporal.kind": "none", "model.memory.learn_recency": True},
          "question_read": {"loss.question_read_weight": 1.0},
          "before_read": {"model.hops.before_gate": True},
          "copy_written": {"model.decoder.copy_written": True},
          "pseudo_values": {"data.value_rename_fraction": 0.5},
          "pseudo_rooms": {"data.rename_fraction": 1.0},
          "doubled": {"data.rename_doubled": 0.5},
          "skip_read": {"model.hops.skip_read": True},
          "latest": {"model.memory.latest_margin": 0.1},
          "alike": {"model.memory.latest_alike": 0.8},
          "foreign": {"loss.foreign_negatives": True},
          "foreign_first": {"loss.foreign_negatives": True, "loss.foreign_hops": "first"},
          "reseed": {"training.seed": 1, "data.train_seed": 3},
          "reseed2": {"training.seed": 2, "data.train_seed": 5},
          "sharp": {"loss.sf_temperature": 0.05},
          "train_bonus": {"model.memory.eval_recency": False},
          "lookalikes": {"data.lookalike_fraction": 0.25},
          "dense": {"training.checkpoint_every": 100, "training.keep_checkpoints": 6},
          "small": presets.shape_overrides("small")}
# Levers of evaluation alone: a row with one shares the run of the row without it (no second
# training; where no row lacks it, the row trains that run itself) and evaluates another of its
# checkpoints. best_check: the kept checkpoint with the
# best held-out check on both splits (generated stories in the built-in test text, seed 1; no
# test book), not the last; the best qa1 rows' checks peak at step 200 of 600 on some seeds
# (BUILD_NOTES.md). average: the mean of the kept checkpoints' parameters (steps 200, 400 and
# 600 of a 600-step run), which on a trial book beat the last step in every cell, on two seeds.
EVAL_LEVERS = {"best_check": "best", "average": "average"}
# The best runs the evaluation levers choose a checkpoint of, or average: qa1 (three seeds),
# qa2 (two) and vt2.
_QA1_BEST = ("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign")
_QA1_SEEDS = ((*_QA1_BEST, "train_bonus"), (*_QA1_BEST, "reseed", "train_bonus"),
              (*_QA1_BEST, "reseed2", "train_bonus"))
_QA2_BEST = ("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
             "order", "question_read", "before_read", "steps2x", "latest", "alike",
             "foreign_first")
_VT1_BEST = ("copy", "content", "answer_read", "pseudo_values")
_VT2_BEST = ("copy", "copy_written", "content", "answer_read", "pseudo_values", "skip_read")
_EVAL_LEVER_ROWS = ((("best_check",), ("qa1",)), (("average",), ("qa1",)),
                    *(((*levers, "best_check"), ("qa1",)) for levers in _QA1_SEEDS),
                    ((*_QA2_BEST, "best_check"), ("qa2",)),
                    *(((*levers, "average"), ("qa1",)) for levers in _QA1_SEEDS),
                    ((*_QA2_BEST, "average"), ("qa2",)),
                    ((*_QA2_BEST, "reseed", "average"), ("qa2",)),
                    *(((*levers, "dense", "average"), ("qa1",)) for levers in _QA1_SEEDS),
                    ((*_QA1_SEEDS[0], "small", "dense", "average"), ("qa1",)),
                    ((*_VT2_BEST, "average"), ("vt2",)))
# Lever rows: levers added together to the rows above, for the tasks where they apply.
_LEVER_ROWS = ((("copy",), ("qa1", "qa2")), (("copy", "content"), ("qa2", "vt1", "vt2")),
               (("copy", "content", "steps5x"), ("qa2", "vt1", "vt2")),
               (("copy", "answer_read"), ("qa1",)),
               (("copy", "answer_read", "order"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "steps2x"), ("qa1",)),
               (("copy", "content", "answer_read"), ("qa2", "vt1")),
               (("copy", "content", "answer_read", "order"), ("qa2",)),
               (("copy", "content", "answer_read", "order", "question_read"), ("qa2",)),
               (("copy", "content", "answer_read", "order", "question_read", "steps2x"),
                ("qa2",)),
               (("copy", "content", "answer_read", "order", "question_read", "before_read"),
                ("qa2",)),
               (("copy", "copy_written", "content", "answer_read", "order", "question_read",
                 "before_read"), ("qa2",)),
               (("copy", "copy_written", "content", "answer_read"), ("vt1", "vt2")),
               (("copy", "content", "answer_read", "steps2x"), ("qa2",)),
               (("copy", "content", "answer_read", "pseudo_values"), ("vt1", "vt2")),
               (("copy", "copy_written", "content", "answer_read", "pseudo_values"), ("vt2",)),
               (("copy", "pseudo_rooms", "copy_written", "content", "answer_read", "order",
                 "question_read", "before_read"), ("qa2",)),
               (("copy", "pseudo_rooms", "copy_written", "content", "answer_read", "order",
                 "question_read", "before_read", "steps2x"), ("qa2",)),
               (("copy", "copy_written", "content", "answer_read", "pseudo_values", "steps2x"),
                ("vt2",)),
               (_VT2_BEST, ("vt2",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x"), ("qa2",)),
               (("copy", "copy_written", "answer_read", "order", "latest"), ("qa1",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x", "latest"), ("qa2",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike"), ("qa1",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x", "latest", "alike"),
                ("qa2",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign"),
                ("qa1",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x", "latest", "alike",
                 "foreign"), ("qa2",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x", "latest", "alike",
                 "foreign_first"), ("qa2",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "reseed"), ("qa1",)),
               (("copy", "pseudo_rooms", "doubled", "copy_written", "content", "answer_read",
                 "order", "question_read", "before_read", "steps2x", "latest", "alike",
                 "foreign_first", "reseed"), ("qa2",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "sharp"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "reseed", "sharp"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "train_bonus"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "reseed", "train_bonus"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "reseed", "train_bonus", "lookalikes"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "train_bonus", "lookalikes"), ("qa1",)),
               (("copy", "copy_written", "answer_read", "order", "latest", "alike", "foreign",
                 "reseed2", "train_bonus"), ("qa1",)),
               *(((*_VT2_BEST, seed), ("vt2",)) for seed in ("reseed", "reseed2")),
               ((*_VT1_BEST, "reseed"), ("vt1",)),
               ((*_VT2_BEST, "small"), ("vt2",)),
               ((*_VT2_BEST, "small", "reseed"), ("vt2",)),
               ((*_QA2_BEST, "reseed2"), ("qa2",)),
               *_EVAL_LEVER_ROWS)


@dataclasses.dataclass(frozen=True)
class Row:
  name: str  # run folder and table label
  task: str
  model: str  # memreasoner or baseline
  supervision: str  # "paper", "all", "1%" (a labelled example in a hundred) or "none"
  arg: str  # configs/babi.py argument
  overrides: dict[str, object]  # --config.KEY=VALUE of the run
  lever: str = ""  # the LEVERS options the row adds, " + "-joined ("" for none)
  run: str = ""  # run folder, when the row shares another row's run ("": its own, `name`)
  checkpoint: str = "last"  # what is evaluated: "last", "best" or "average" (EVAL_LEVERS)

  @property
  def run_name(self) -> str:
    return self.run or self.name

  @property
  def model_label(self) -> str:
    return f"{self.model} + {self.lever}" if self.lever else self.model

  @property
  def label(self) -> str:
    return f"{self.model_label} {self.task} ({self.supervision} supervision)"


def get_rows(arg: str = "tiny") -> list[Row]:
  parts = arg.split(",")
  preset, options = parts[0], set(parts[1:])
  if not options <= {"smoke"}:
    raise ValueError(f"results argument {arg!r} must be '<preset>[,smoke]'")
  smoke = ",runlocal" if "smoke" in options else ""
  rows = []
  for task in babi.TASKS:
    for supervision in ("paper", "all"):
      sf = SUPERVISION["paper"][task] if supervision == "paper" else SUPERVISION["all"]
      rows.append(Row(f"{task}-memreasoner-{supervision}", task, "memreasoner", supervision,
                      f"{task},{preset},long{smoke}",
                      {**_MEMREASONER, "data.sf_fraction": sf}))
  for levers, tasks in _LEVER_ROWS:
    trained = [lever for lever in levers if lever not in EVAL_LEVERS]
    options = {key: value for lever in trained for key, value in LEVERS[lever].items()}
    checkpoint = next((EVAL_LEVERS[lever] for lever in levers if lever in EVAL_LEVERS), "last")
    for task in tasks:
      for supervision in ("paper", "all"):
        sf = SUPERVISION["paper"][task] if supervision == "paper" else SUPERVISION["all"]
        run = "-".join([f"{task}-memreasoner-{supervision}", *trained])
        name = "-".join([f"{task}-memreasoner-{supervision}", *levers])
        rows.append(Row(name, task, "memreasoner", supervision, f"{task},{preset},long{smoke}",
                        {**_MEMREASONER, "data.sf_fraction": sf, **options}, " + ".join(levers),
                        run="" if run == name else run, checkpoint=checkpoint))
  # vt1 with one labelled example in a hundred (the paper's 2-hop fraction): its paper setting,
  # none, collapses once every context over one chunk has two full chunks (BUILD_NOTES.md).
  copy_content = {**LEVERS["copy"], **LEVERS["content"]}
  rows.append(Row("vt1-memreasoner-1pct-copy-content", "vt1", "memreasoner", "1%",
                  f"vt1,{preset},long{smoke}",
                  {**_MEMREASONER, "data.sf_fraction": SUPERVISION["1%"], **copy_content},
                  "copy + content"))
  for task in ("qa1", "qa2"):
    rows.append(Row(f"{task}-baseline", task, "baseline", "none",
                    f"{task},{preset},baseline{smoke}", {}))
  check_runs(rows)
  return rows


def check_runs(rows: list[Row]) -> None:
  """Every row's config argument builds, and rows sharing a run train it alike: checked before
  any run starts."""
  trainers = {}
  for row in rows:
    babi.get_config(row.arg)
    first = trainers.setdefault(row.run_name, row)
    if (first.arg, first.overrides) != (row.arg, row.overrides):
      raise ValueError(f"rows {first.name} and {row.name} share run {row.run_name} but train "
                       "it differently")
