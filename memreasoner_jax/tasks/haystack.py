"""Hiding a question's facts in distractor text (BABILong haystacks, and filler for training).

BABILong's rules: filler sentences are drawn from a source until the token budget is reached
(sentences under `min_sentence_tokens` skipped, the last one cut to fit), then the facts go into
gaps between filler sentences, gap indices drawn with replacement and sorted, so the facts keep
their order and several may share a gap. The budget for a length "Nk" is N*1000 - 300 tokens for
facts and filler together (see lengths.py). Every line stays at most `max_line_chars` long.
"""

import dataclasses
import itertools
import random
from typing import Callable, Sequence

from memreasoner_jax.tasks.distractors import SentenceSource
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import lengths
from memreasoner_jax.tasks import lookalikes
from memreasoner_jax.tasks.sentences import wrap_line

MAX_LINE_CHARS = 256
MIN_SENTENCE_TOKENS = 10  # BABILong skips shorter filler sentences


def sample_filler(source: SentenceSource, budget: int, rng: random.Random,
                  count: lengths.TokenCounter = lengths.estimate_tokens,
                  min_sentence_tokens: int = MIN_SENTENCE_TOKENS,
                  max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
  """Filler lines totalling exactly `budget` tokens (less by at most one word's tokens)."""
  lines: list[str] = []
  total = 0
  if budget <= 0:
    return lines
  for sentence in source.sentences(rng):
    if count(sentence) < min_sentence_tokens:
      continue
    for piece in wrap_line(sentence, max_line_chars):
      n = count(piece)
      if total + n >= budget:
        piece = piece if total + n == budget else lengths.cut_to_tokens(piece, budget - total, count)
        return lines + [piece] if piece else lines
      lines.append(piece)
      total += n
  raise AssertionError("sentence sources are endless")


def draw_sentences(source: SentenceSource, num: int, rng: random.Random,
                   count: lengths.TokenCounter = lengths.estimate_tokens,
                   min_sentence_tokens: int = MIN_SENTENCE_TOKENS,
                   max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
  """`num` filler sentences (as lines of at most `max_line_chars`), short ones skipped."""
  kept = (s for s in source.sentences(rng) if count(s) >= min_sentence_tokens)
  return [line for s in itertools.islice(kept, num) for line in wrap_line(s, max_line_chars)]


def insert_facts(example: Example, filler: Sequence[str], rng: random.Random) -> Example:
  """`example` with `filler` around its context lines; support follows the facts."""
  gaps = sorted(rng.choices(range(len(filler) + 1), k=len(example.context)))
  context: list[str] = []
  new_index: list[int] = []
  facts = iter(example.context)
  start = 0
  for gap in gaps:
    context += filler[start:gap]
    start = gap
    new_index.append(len(context))
    context.append(next(facts))
  context += filler[start:]
  return dataclasses.replace(example, context=tuple(context),
                             support=tuple(new_index[i] for i in example.support))


def make_haystack(example: Example, length: str, source: SentenceSource, rng: random.Random,
                  count: lengths.TokenCounter = lengths.estimate_tokens,
                  min_sentence_tokens: int = MIN_SENTENCE_TOKENS,
                  max_line_chars: int = MAX_LINE_CHARS,
                  transform: Callable[[Example], Example] | None = None) -> Example:
  """`example` padded with filler to a BABILong length ('0k' returns it unchanged).

  `transform` rewrites the example after the filler is sized and drawn, so that e.g. a renamed
  split has exactly the plain split's haystack with only the story's words changed.
  """
  budget = lengths.context_budget(length)
  if budget is not None:
    filler = sample_filler(source, budget - lengths.context_tokens(example.context, count), rng,
                           count, min_sentence_tokens, max_line_chars)
  example = transform(example) if transform else example
  return example if budget is None else insert_facts(example, filler, rng)


def add_filler(example: Example, num_sentences: int, source: SentenceSource,
               rng: random.Random, max_line_chars: int = MAX_LINE_CHARS,
               lookalike_fraction: float = 0.0) -> Example:
  """`example` with `num_sentences` filler sentences at sorted random gaps (for training), a
  `lookalike_fraction` of them opening with a look-alike of an actor's name (lookalikes.py).

  Use a source other than the test filler's, e.g. get_source('builtin:train') or a book kept
  out of evaluation, so evaluation text stays unseen.
  """
  filler = draw_sentences(source, num_sentences, rng, max_line_chars=max_line_chars)
  filler = lookalikes.with_lookalikes(filler, lookalike_fraction, rng, max_line_chars)
  return insert_facts(example, filler, rng)
