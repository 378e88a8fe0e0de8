"""Answer-renamed test splits: answer words replaced by words training never used.

bAbI rooms map one to one onto vocab.RENAMED_ROOMS (bathroom -> cellar, ...), in statements,
questions and answers alike, so every story stays consistent. Variable-tracking values (five
digits, 10000..99999 in training) become six-digit values v + 900000 (910000..999999), a range
training never produces, in the value line and the question; the answer (the names) is unchanged.
"""

import dataclasses
import random
import re
import string

from memreasoner_jax.tasks.babi_format import Question, Story
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import vocab

ROOM_RENAMES: dict[str, str] = dict(zip(vocab.ROOMS, vocab.RENAMED_ROOMS))
VALUE_OFFSET = 900000
_ROOM_RE = re.compile(r"\b(%s)\b" % "|".join(vocab.ROOMS))
_VALUE_RE = re.compile(r"(?<![\d])\d{5}(?![\d])")


def rename_rooms_in(text: str) -> str:
  return _ROOM_RE.sub(lambda m: ROOM_RENAMES[m[0]], text)


def rename_values_in(text: str) -> str:
  return _VALUE_RE.sub(lambda m: str(int(m[0]) + VALUE_OFFSET), text)


def renamer(task: str):
  """The text rewrite for a task's renamed split."""
  return rename_values_in if task.startswith("vt") else rename_rooms_in


def _rewritten(example: Example, rewrite) -> Example:
  """The example with `rewrite` applied to its lines, question and answer."""
  return dataclasses.replace(
      example, context=tuple(rewrite(line) for line in example.context),
      question=rewrite(example.question), answer=rewrite(example.answer))


def rename_example(example: Example) -> Example:
  return _rewritten(example, renamer(example.task))


def pseudo_rooms(rng: random.Random, doubled: float = 0.0) -> dict[str, str]:
  """Each room -> a distinct random lower-case pseudo-word of 4 to 8 letters, never a bAbI word
  nor a renamed-split room, so training on them leaves the renamed splits unseen. A `doubled`
  share of the words repeat one of their letters in place ("kelmo" -> "kellmo", one letter
  longer): uniform letters double one only about once in 26 places, and a copy trained on those
  alone wrote doubled letters once (BUILD_NOTES.md)."""
  taken = set(vocab.BABI_WORDS) | set(vocab.RENAMED_ROOMS)
  words: list[str] = []
  while len(words) < len(vocab.ROOMS):
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 8)))
    if doubled > 0 and rng.random() < doubled:
      at = rng.randrange(len(word))
      word = word[:at + 1] + word[at:]
    if word not in taken:
      taken.add(word)
      words.append(word)
  return dict(zip(vocab.ROOMS, words))


def rename_rooms_randomly(example: Example, rng: random.Random, doubled: float = 0.0) -> Example:
  """The example with every room replaced by a pseudo-word of its own (`pseudo_rooms`):
  answers training cannot learn to spell, only to copy."""
  renames = pseudo_rooms(rng, doubled)
  return _rewritten(example, lambda text: _ROOM_RE.sub(lambda m: renames[m[0]], text))


def pseudo_value(rng: random.Random) -> str:
  """A value of 3 to 8 digits, never one of the renamed splits' (six digits from 900000): its
  length varies, so a copy learned on it cannot lean on where a five-digit value ends."""
  while True:
    digits = rng.randint(3, 8)
    value = rng.randrange(10 ** (digits - 1), 10 ** digits)
    if digits != 6 or value < VALUE_OFFSET:
      return str(value)


def rename_values_randomly(example: Example, rng: random.Random) -> Example:
  """The variable-tracking example with each five-digit value replaced by a `pseudo_value` of
  its own, in the value lines and the question alike."""
  renames: dict[str, str] = {}

  def rewrite(text: str) -> str:
    for value in _VALUE_RE.findall(text):
      while value not in renames:
        fresh = pseudo_value(rng)
        if fresh not in renames.values():  # two chains never share a value
          renames[value] = fresh
    return _VALUE_RE.sub(lambda m: renames[m[0]], text)

  return _rewritten(example, rewrite)


def rename_story(story: Story, task: str) -> Story:
  rewrite = renamer(task)
  return tuple(
      dataclasses.replace(line, text=rewrite(line.text),
                          **({"answer": rewrite(line.answer)} if isinstance(line, Question) else {}))
      for line in story)


def answer_labels(task: str, renamed: bool = False) -> tuple[str, ...]:
  """The candidate answer labels BABILong's metric looks for (bAbI tasks only)."""
  if task.startswith("vt"):
    raise ValueError("variable tracking has no label set; score it with metrics.ruler_score")
  return vocab.RENAMED_ROOMS if renamed else vocab.ROOMS
