"""Variable tracking: chain format, answers, support, noise, lengths."""

import random
import re

import pytest

from memreasoner_jax.tasks.distractors import RULER_NOISE
from memreasoner_jax.tasks import registry, lengths, variable_tracking

VALUE_LINE = re.compile(r"VAR ([A-Z]{5}) = (\d{5})")
COPY_LINE = re.compile(r"VAR ([A-Z]{5}) = VAR ([A-Z]{5}) ")


def _resolve(context):
  """Follows every assignment: name -> value."""
  value = {}
  for line in context:
    if m := VALUE_LINE.fullmatch(line):
      value[m[1]] = m[2]
    elif m := COPY_LINE.fullmatch(line):
      value[m[1]] = value[m[2]]
    else:
      assert line in RULER_NOISE or not line.startswith("VAR"), line
  return value


@pytest.mark.parametrize("hops, chains", [(1, 1), (2, 1), (2, 3)])
def test_chains_answer_and_support(hops, chains):
  rng = random.Random(hops * 10 + chains)
  for i in range(50):
    e = variable_tracking.vt_example(rng, hops, chains, f"vt{hops}", i)
    asked = re.fullmatch(r"Find all variables that are assigned the value (\d{5}) in the text "
                         r"above\.", e.question)[1]
    values = _resolve(e.context)
    names = e.answer.split(" ")
    assert len(names) == hops + 1 and len(values) == chains * (hops + 1)
    assert [n for n in values if values[n] == asked] == names  # in chain order
    assert list(e.support) == sorted(e.support)
    assert VALUE_LINE.fullmatch(e.context[e.support[0]])[1] == names[0]
    for h in range(1, hops + 1):
      assert e.context[e.support[h]] == f"VAR {names[h]} = VAR {names[h - 1]} "
    noise = [l for l in e.context if not l.startswith("VAR")]
    assert noise == list(RULER_NOISE) * variable_tracking.NOISE_UNITS


def test_vt_haystack_length_and_determinism():
  a = registry.generate("vt2", "test", 3, seed=1, length="4k")
  assert a == registry.generate("vt2", "test", 3, seed=1, length="4k")
  for e in a:
    assert 3695 <= lengths.context_tokens(e.context) <= 3700
    assert [e.context[i].split()[1] for i in e.support] == e.answer.split()
    assert sum(l.startswith("VAR") for l in e.context) == 3
