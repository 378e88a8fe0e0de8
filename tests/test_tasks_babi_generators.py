"""The qa1/qa2 generators against the released en-10k train files.

Tolerances (10,000 generated questions vs 10,000 released): facts per question min equal, median,
p90, p95 and p99 within 1 (facts come in pairs, so that means equal), max within 15%; each
room's answer share within 0.03 of 1/6 (released: 0.155 to 0.177); the set of sentence templates
equal; qa2's share of questions that list the larger support id first within 0.06 (released
0.688); the qa2 action mix within 0.04 per action type (released 65/20/15 %).
"""

import collections
import random
import re

import numpy as np
import pytest

from memreasoner_jax.tasks import babi_format, babi_generators, vocab
from memreasoner_jax.tasks.reference_data import shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not present")
FILES = {"qa1": "qa1_single-supporting-fact_train.txt", "qa2": "qa2_two-supporting-facts_train.txt"}
NUM = 10000

_NAMES = re.compile(r"\b(%s)\b" % "|".join(vocab.ACTORS + vocab.ROOMS + vocab.OBJECTS))


def _template(text: str) -> str:
  def slot(m):
    w = m[0]
    return "{P}" if w in vocab.ACTORS else "{L}" if w in vocab.ROOMS else "{O}"
  return _NAMES.sub(slot, text)


def _stats(stories):
  """Facts per question, answers, templates, larger-id-first share, action mix."""
  facts, answers, templates, larger, kinds = [], [], set(), 0, collections.Counter()
  for story in stories:
    n = 0
    for line in story:
      templates.add(_template(line.text))
      if isinstance(line, babi_format.Question):
        facts.append(n)
        answers.append(line.answer)
        larger += len(line.support) == 2 and line.support[0] > line.support[1]
      else:
        n += 1
        kinds[_action(line.text)] += 1
  return facts, collections.Counter(answers), templates, larger / len(facts), kinds


def _action(text):
  if " to the " in text:
    return "move"
  return "get" if any(f" {v} the " in text for v in vocab.GET_VERBS) else "drop"


def _check_answers(story):
  """An independent reader: replays the story and checks every answer and support line."""
  room, holder, lying = {}, {}, {}
  lines = {l.id: l.text for l in story}
  for line in story:
    words = line.text.rstrip(".?").split()
    if isinstance(line, babi_format.Statement):
      actor, obj = words[0], words[-1] if words[-1] != "there" else words[-2]
      kind = _action(line.text)
      if kind == "move":
        room[actor] = words[-1]
      elif kind == "get":
        holder[obj] = actor
      else:
        lying[obj] = room.get(actor)
        holder.pop(obj)
      continue
    asked = words[-1]
    if asked in vocab.ACTORS:
      assert line.answer == room[asked]
      assert re.fullmatch(rf"{asked} .* to the {line.answer}\.", lines[line.support[0]])
      continue
    where = room.get(holder[asked]) if asked in holder else lying[asked]
    assert line.answer == where
    first, second = (lines[i] for i in line.support)
    assert f" the {asked}" in first and _action(first) != "move"
    assert _action(second) == "move" and second.startswith(first.split()[0])
    assert second.endswith(f" {line.answer}.")


@pytest.fixture(scope="module", params=["qa1", "qa2"])
def generated(request):
  task = request.param
  return task, babi_generators.generate_stories(task, NUM, random.Random(f"{task}-test"))


def test_story_shape_and_answers(generated):
  task, stories = generated
  assert sum(isinstance(l, babi_format.Question) for s in stories for l in s) == NUM
  for story in stories:
    assert [l.id for l in story] == list(range(1, len(story) + 1))
    assert sum(isinstance(l, babi_format.Question) for l in story) == 5
    assert isinstance(story[-1], babi_format.Question)
    if task == "qa1":
      assert [isinstance(l, babi_format.Question) for l in story] == [False, False, True] * 5
    _check_answers(story)
  # Written files parse back to the same stories.
  assert babi_format.parse_babi(babi_format.format_babi(stories)) == stories


def test_qa1_nobody_moves_to_their_own_room():
  stories = babi_generators.generate_stories("qa1", 500, random.Random(1))
  for story in stories:
    room = {}
    for line in story:
      if isinstance(line, babi_format.Statement):
        actor, new = line.text.split()[0], line.text.split()[-1][:-1]
        assert room.get(actor) != new
        room[actor] = new


def test_same_seed_same_stories_and_partial_story():
  a = babi_generators.generate_stories("qa2", 7, random.Random(5))
  assert a == babi_generators.generate_stories("qa2", 7, random.Random(5))
  assert a != babi_generators.generate_stories("qa2", 7, random.Random(6))
  assert [sum(isinstance(l, babi_format.Question) for l in s) for s in a] == [5, 2]


@needs_data
def test_matches_released_statistics(generated):
  task, stories = generated
  released = babi_format.read_babi(DATA / "babi" / "en-10k" / FILES[task])
  g_facts, g_labels, g_templates, g_larger, g_kinds = _stats(stories)
  r_facts, r_labels, r_templates, r_larger, r_kinds = _stats(released)
  assert min(g_facts) == min(r_facts)
  spread = lambda facts: [float(np.percentile(facts, p)) for p in (50, 90, 95, 99)]
  g_spread, r_spread = spread(g_facts), spread(r_facts)
  assert all(abs(g - r) <= 1 for g, r in zip(g_spread, r_spread)), (g_spread, r_spread)
  assert abs(max(g_facts) - max(r_facts)) <= 0.15 * max(r_facts), (max(g_facts), max(r_facts))
  assert set(g_labels) == set(r_labels) == set(vocab.ROOMS)
  assert all(abs(c / NUM - 1 / 6) < 0.03 for c in g_labels.values()), g_labels
  assert g_templates == r_templates
  assert abs(g_larger - r_larger) < 0.06
  total_g, total_r = sum(g_kinds.values()), sum(r_kinds.values())
  for kind in r_kinds:
    assert abs(g_kinds[kind] / total_g - r_kinds[kind] / total_r) < 0.04, (g_kinds, r_kinds)
