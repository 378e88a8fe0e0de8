"""Context lengths in tokens, comparable with BABILong's GPT-2 counts.

BABILong measures lengths in GPT-2 tokens: a length "Nk" is a context (facts plus filler) of
N*1000 - 300 tokens (room for the prompt; published counts: 4k = 3,700, 16k = 15,699,
128k = 127,695) and "0k" is the facts alone. No GPT-2 tokenizer is available offline, so by
default lengths are estimated as characters / CHARS_PER_TOKEN, rounded, per line; a context's
length is the sum over its lines (as BABILong sums per-sentence counts). CHARS_PER_TOKEN = 4 is
the published figure for English book text and agrees with BABILong's 0k count: on the released
qa2 test facts it gives 115 tokens per question on average, about 120 with the question, as
published. An exact count comes from any tokenizer (`tokenizer_counter`), e.g. a Hugging Face
`tokenizer.json` of GPT-2 where one is at hand.
"""

import os
from typing import Callable, Iterable

TokenCounter = Callable[[str], int]

CHARS_PER_TOKEN = 4.0
PROMPT_RESERVE = 300  # BABILong keeps L - 300 tokens for the context
LENGTHS: tuple[str, ...] = ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k")


def estimate_tokens(text: str) -> int:
  """The estimated GPT-2 token count of `text` (at least 1 for non-empty text)."""
  return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def context_tokens(lines: Iterable[str], count: TokenCounter = estimate_tokens) -> int:
  return sum(count(line) for line in lines)


def context_budget(length: str) -> int | None:
  """Tokens of context for a BABILong length name ('4k' -> 3700); None for '0k' (facts only)."""
  if length not in LENGTHS:
    raise ValueError(f"unknown length {length!r}; expected one of {', '.join(LENGTHS)}")
  thousands = int(length[:-1])
  return thousands * 1000 - PROMPT_RESERVE if thousands else None


def tokenizer_counter(tokenizer) -> TokenCounter:
  """A counter from a tokenizer object (`encode(text)` returning ids or an `.ids` encoding)
  or from the path of a Hugging Face `tokenizer.json`."""
  if isinstance(tokenizer, (str, os.PathLike)):
    import tokenizers  # pylint: disable=g-import-not-at-top (optional dependency)
    tokenizer = tokenizers.Tokenizer.from_file(os.fspath(tokenizer))

  def count(text: str) -> int:
    encoded = tokenizer.encode(text)
    return len(getattr(encoded, "ids", encoded))

  return count


def cut_to_tokens(text: str, max_tokens: int, count: TokenCounter = estimate_tokens) -> str:
  """The longest word prefix of `text` with at most `max_tokens` tokens ('' if none fits)."""
  words = text.split(" ")
  lo, hi = 0, len(words)  # invariant: words[:lo] fits
  while lo < hi:
    mid = (lo + hi + 1) // 2
    if count(" ".join(words[:mid])) <= max_tokens:
      lo = mid
    else:
      hi = mid - 1
  return " ".join(words[:lo])
