"""Look-alikes of the actors' names opening training filler lines (results lever lookalikes)."""

import random

import pytest

from memreasoner_jax import input_pipeline
from memreasoner_jax.configs import babi
from memreasoner_jax.tasks import lookalikes
from memreasoner_jax.tasks import vocab


def test_a_lookalike_shares_the_first_letters_and_is_no_babi_word():
  rng = random.Random(0)
  for name in vocab.ACTORS:
    words = [lookalikes.lookalike(name, rng) for _ in range(200)]
    assert all(w[0] == name[0] and w[1:].islower() and 3 <= len(w) <= 9 for w in words)
    assert not {w.lower() for w in words} & vocab.BABI_WORDS
    assert len(set(words)) > 150  # made up afresh, not drawn from a short list


def test_none_at_fraction_zero_and_every_line_at_one():
  lines = ["It was a dark night.", "Maria.", "x" * 40]
  rng = random.Random(1)
  assert lookalikes.with_lookalikes(lines, 0.0, rng, 48) == lines
  assert rng.random() == random.Random(1).random()  # nothing drawn: other runs unchanged
  out = lookalikes.with_lookalikes(lines, 1.0, random.Random(2), 48)
  assert out[0].endswith(" was a dark night.") and out[0].split()[0] not in vocab.ACTORS
  assert out[0][0] in {a[0] for a in vocab.ACTORS} and out[1].endswith(".")
  assert out[2].endswith(".") and len(out[2]) <= 10  # a line of one word: the look-alike alone
  # Where the look-alike is longer than the word it replaces, the line may pass the limit:
  # it is then left as it was.
  long = ["ab " + "y" * 44] * 50
  out = lookalikes.with_lookalikes(long, 1.0, random.Random(3), 48)
  assert all(len(line) <= 48 for line in out) and long[0] in out and len(set(out)) > 1
  with pytest.raises(ValueError, match="lookalike_fraction must be between 0 and 1, got 1.5"):
    lookalikes.with_lookalikes(lines, 1.5, rng, 48)


def test_training_stories_get_lookalike_filler_and_keep_their_facts():
  config = babi.get_config("qa1,tiny,long").data
  config.train_examples = 40
  plain = input_pipeline.train_examples(config)
  config.lookalike_fraction = 0.5
  mixed = input_pipeline.train_examples(config)
  opening = lambda ex: {line.split()[0].strip(".") for i, line in enumerate(ex.context)
                        if i not in ex.support}
  made_up = set().union(*map(opening, mixed)) - set().union(*map(opening, plain))
  assert len(made_up) > 40
  assert all(w[0] in "JMSD" for w in made_up)
  for a, b in zip(plain, mixed):  # the same stories, questions and supporting facts
    assert (a.question, a.answer) == (b.question, b.answer)
    assert [a.context[i] for i in a.support] == [b.context[i] for i in b.support]
