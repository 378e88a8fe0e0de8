"""One entry point per task: generate a split's Examples (or bAbI stories) from a seed.

Every random choice comes from a `random.Random` seeded by a string naming the task, split,
seed (and, for filler, the length and example index), so the same arguments give the same data
on every machine, train and test never share a stream, and example i's haystack does not depend
on how many examples are generated.
"""

import random
from typing import Sequence

from memreasoner_jax.tasks import babi_format, babi_generators, distractors, haystack, rename
from memreasoner_jax.tasks.babi_format import Story
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import lengths, variable_tracking

TASKS: tuple[str, ...] = ("qa1", "qa2", "vt1", "vt2")
SPLITS: tuple[str, ...] = ("train", "test")
BABI_TASKS = ("qa1", "qa2")
DEFAULT_DISTRACTORS = {"qa1": "builtin", "qa2": "builtin", "vt1": "noise", "vt2": "noise"}


def rng_for(*parts: object) -> random.Random:
  """A generator seeded by its parts' names (string seeding is stable across platforms)."""
  return random.Random("/".join(str(p) for p in parts))


def _check(task: str, split: str, num: int, tasks: Sequence[str] = TASKS) -> None:
  if task not in tasks:
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(tasks)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
  if num < 0:
    raise ValueError(f"num must be >= 0, got {num}")


def generate_stories(task: str, split: str, num: int, seed: int = 0,
                     rename_answers: bool = False) -> list[Story]:
  """bAbI stories (five questions each, the last cut) holding `num` questions."""
  _check(task, split, num, BABI_TASKS)
  stories = babi_generators.generate_stories(task, num, rng_for(task, split, seed))
  return [rename.rename_story(s, task) for s in stories] if rename_answers else stories


def _short_examples(task: str, split: str, num: int, seed: int, vt_chains: int,
                    vt_noise: bool) -> list[Example]:
  """Examples without haystack filler (variable tracking with its own noise if `vt_noise`)."""
  if task in BABI_TASKS:
    return babi_format.stories_to_examples(generate_stories(task, split, num, seed), task)
  rng = rng_for(task, split, seed)
  make = variable_tracking.vt_example if vt_noise else variable_tracking.chains_example
  return [make(rng, int(task[2:]), vt_chains, task, i) for i in range(num)]


def generate(task: str, split: str, num: int, seed: int = 0, length: str = "0k",
             distractors_spec: str | None = None, rename_answers: bool = False,
             count: lengths.TokenCounter = lengths.estimate_tokens,
             max_line_chars: int = haystack.MAX_LINE_CHARS, vt_chains: int = 1) -> list[Example]:
  """`num` Examples of `task` ('qa1', 'qa2', 'vt1', 'vt2').

  Args:
    length: '0k' (no filler; variable tracking keeps its few noise lines) or a BABILong
      length '1k'..'128k' of facts plus filler, in tokens as `count` measures them.
    distractors_spec: the filler source (distractors.get_source); default 'builtin' for bAbI,
      'noise' (RULER's) for variable tracking.
    rename_answers: answer words replaced by words training never saw (rename.py).
    vt_chains: variable-tracking chains per example (one is asked about).
  """
  _check(task, split, num)
  budget = lengths.context_budget(length)
  spec = distractors_spec or DEFAULT_DISTRACTORS[task]
  source = distractors.get_source(spec) if budget is not None else None
  examples = _short_examples(task, split, num, seed, vt_chains, vt_noise=source is None)
  transform = rename.rename_example if rename_answers else None
  if source is None:
    return [transform(e) for e in examples] if transform else examples
  min_tokens = 0 if spec == "noise" else haystack.MIN_SENTENCE_TOKENS  # RULER's are short
  return [haystack.make_haystack(e, length, source, rng_for(task, split, seed, length, e.index),
                                 count, min_tokens, max_line_chars, transform)
          for e in examples]
