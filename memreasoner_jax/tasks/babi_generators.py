"""bAbI qa1 and qa2 story generators, faithful to the released data (tasks_1-20_v1-2).

qa1: fifteen lines, (two moves, one question) five times; a move sends a random actor to a room
other than its own; the question asks about a uniformly drawn actor already mentioned.

qa2: a hidden world in which every actor and object has a true room the reader is not told.
Statements come in pairs (every gap between questions in the released files is even); each is
a move, get or drop valid in the hidden world. Each story draws a question rate uniformly from
QUESTION_RATE; after each pair, if the reader can know where some object is, a question about
one such object (drawn uniformly) follows with that probability. A constant rate gives the
released stories' steady gaps between questions (about 3 facts after the first); drawing it
per story gives their long tail of facts per question. Support lists the object's latest
get/drop first, then the move that placed its holder (the released, unsorted order). The
released files do not pin down how actions and questions are drawn; ACTION_WEIGHTS and
QUESTION_RATE are fitted so that the action mix (65% move, 20% get, 15% drop), the facts per
question (en-10k train: median 14, p90 26, p95 30, p99 40, max 68) and the share of drops said
with "there" (20%) match en-10k train.
"""

import dataclasses
import random

from memreasoner_jax.tasks.babi_format import Line, Question, Statement, Story
from memreasoner_jax.tasks import vocab

QUESTIONS_PER_STORY = 5
ACTION_WEIGHTS = {"move": 2.0, "get": 1.0, "drop": 0.8}  # among the action types valid now
QUESTION_RATE = (0.4, 0.85)  # per story, drawn uniformly: the chance of a question after a pair
DROP_THERE_PROB = 0.2


def qa1_story(rng: random.Random) -> Story:
  """One qa1 story: 15 lines, support = the asked actor's latest move."""
  known: dict[str, tuple[str, int]] = {}  # actor -> (room, id of the line that put it there)
  lines: list[Line] = []
  for _ in range(QUESTIONS_PER_STORY):
    for _ in range(2):
      actor = rng.choice(vocab.ACTORS)
      here = known.get(actor, ("", 0))[0]
      room = rng.choice([r for r in vocab.ROOMS if r != here])
      lines.append(Statement(len(lines) + 1,
                             vocab.move_sentence(actor, rng.choice(vocab.MOVE_VERBS), room)))
      known[actor] = (room, len(lines))
    actor = rng.choice([a for a in vocab.ACTORS if a in known])
    room, line_id = known[actor]
    lines.append(Question(len(lines) + 1, vocab.actor_question(actor), room, (line_id,)))
  return tuple(lines)


@dataclasses.dataclass
class _Qa2World:
  """The hidden world (true rooms) and what the reader has been told (with line ids)."""

  true_room: dict[str, str]  # actors and lying objects -> room
  holder: dict[str, str] = dataclasses.field(default_factory=dict)  # object -> actor
  told_room: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)  # actor -> (room, move id)
  # object -> ("held", actor, get id) or ("lying", room | None, drop id, move id)
  told_object: dict[str, tuple] = dataclasses.field(default_factory=dict)

  def actions(self) -> dict[str, list[tuple[str, str]]]:
    """Valid (actor, argument) pairs per action type in the hidden world."""
    out: dict[str, list[tuple[str, str]]] = {"move": [], "get": [], "drop": []}
    for a in vocab.ACTORS:
      out["move"] += [(a, r) for r in vocab.ROOMS if r != self.true_room[a]]
      out["get"] += [(a, o) for o in vocab.OBJECTS
                     if o not in self.holder and self.true_room[o] == self.true_room[a]]
      out["drop"] += [(a, o) for o in vocab.OBJECTS if self.holder.get(o) == a]
    return {k: v for k, v in out.items() if v}

  def apply(self, kind: str, actor: str, arg: str, line_id: int) -> None:
    if kind == "move":
      self.true_room[actor] = arg
      self.told_room[actor] = (arg, line_id)
    elif kind == "get":
      self.holder[arg] = actor
      self.told_object[arg] = ("held", actor, line_id)
    else:
      del self.holder[arg]
      self.true_room[arg] = self.true_room[actor]
      room, move_id = self.told_room.get(actor, (None, 0))
      self.told_object[arg] = ("lying", room, line_id, move_id)

  def known(self) -> dict[str, tuple[str, tuple[int, int]]]:
    """Objects whose room the reader can know -> (room, support ids in the released order)."""
    out = {}
    for obj, told in sorted(self.told_object.items()):
      if told[0] == "held" and told[1] in self.told_room:
        room, move_id = self.told_room[told[1]]
        out[obj] = (room, (told[2], move_id))
      elif told[0] == "lying" and told[1] is not None:
        out[obj] = (told[1], (told[2], told[3]))
    return out


def _qa2_sentence(rng: random.Random, kind: str, actor: str, arg: str) -> str:
  if kind == "move":
    return vocab.move_sentence(actor, rng.choice(vocab.MOVE_VERBS), arg)
  if kind == "get":
    return vocab.get_sentence(actor, rng.choice(vocab.GET_VERBS), arg)
  return vocab.drop_sentence(actor, rng.choice(vocab.DROP_VERBS), arg,
                             there=rng.random() < DROP_THERE_PROB)


def qa2_story(rng: random.Random) -> Story:
  """One qa2 story with five questions; support = (latest get/drop, holder's move)."""
  world = _Qa2World({name: rng.choice(vocab.ROOMS) for name in vocab.ACTORS + vocab.OBJECTS})
  rate = rng.uniform(*QUESTION_RATE)
  lines: list[Line] = []
  asked = 0
  while asked < QUESTIONS_PER_STORY:
    for _ in range(2):
      valid = world.actions()
      kinds = sorted(valid)
      kind = rng.choices(kinds, [ACTION_WEIGHTS[k] for k in kinds])[0]
      actor, arg = rng.choice(valid[kind])
      lines.append(Statement(len(lines) + 1, _qa2_sentence(rng, kind, actor, arg)))
      world.apply(kind, actor, arg, len(lines))
    known = world.known()
    if known and rng.random() < rate:
      obj = rng.choice(sorted(known))
      room, support = known[obj]
      lines.append(Question(len(lines) + 1, vocab.object_question(obj), room, support))
      asked += 1
  return tuple(lines)


STORY_MAKERS = {"qa1": qa1_story, "qa2": qa2_story}


def generate_stories(task: str, num_questions: int, rng: random.Random) -> list[Story]:
  """Stories holding exactly `num_questions` questions (the last one cut after its last question)."""
  stories: list[Story] = []
  remaining = num_questions
  while remaining > 0:
    story = STORY_MAKERS[task](rng)
    if remaining < QUESTIONS_PER_STORY:
      question_ids = [l.id for l in story if isinstance(l, Question)]
      story = story[:question_ids[remaining - 1]]
    stories.append(story)
    remaining -= QUESTIONS_PER_STORY
  return stories
