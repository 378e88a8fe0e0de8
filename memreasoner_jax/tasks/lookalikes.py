"""Training filler lines that open with a look-alike of a bAbI actor's name.

qa1 and qa2 stories name four actors with four different first letters, so a read trained on
them can tell the actors apart by the first letter alone; in a 128k haystack the lines it then
took for the fact were book lines opening with that letter ("Darcy and herself." for Daniel,
"Spaniard overboard." for Sandra; BUILD_NOTES.md). Filler lines that open with a made-up word
sharing an actor's first letters ("Danvek ...", "Saqrol ...") are distractors a read can only
refuse by reading the whole name.
"""

import random
import string
from collections.abc import Sequence

from memreasoner_jax.tasks import vocab


def lookalike(name: str, rng: random.Random) -> str:
  """A capitalised made-up word of 3 to 9 letters that opens with 1 to 3 of `name`'s first
  letters and is no bAbI word."""
  while True:
    keep = rng.randint(1, min(3, len(name) - 1))
    length = rng.randint(max(3, keep + 1), 9)
    word = name[:keep] + "".join(rng.choice(string.ascii_lowercase)
                                 for _ in range(length - keep))
    if word.lower() not in vocab.BABI_WORDS:
      return word


def with_lookalikes(lines: Sequence[str], fraction: float, rng: random.Random,
                    max_line_chars: int) -> list[str]:
  """`lines` with each one, at chance `fraction`, opening with the `lookalike` of a random
  actor in place of its first word (left as it was where the new line would pass
  `max_line_chars`). A fraction of 0 draws nothing from `rng`."""
  if not 0 <= fraction <= 1:
    raise ValueError(f"data.lookalike_fraction must be between 0 and 1, got {fraction}")
  if fraction == 0:
    return list(lines)
  out = []
  for line in lines:
    if rng.random() < fraction:
      _, _, rest = line.partition(" ")
      new = lookalike(rng.choice(vocab.ACTORS), rng) + (" " + rest if rest else ".")
      line = new if len(new) <= max_line_chars else line
    out.append(line)
  return out
