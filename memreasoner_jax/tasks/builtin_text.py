"""Offline distractor text: varied English-like sentences from a small grammar.

The default haystack filler when no books are at hand. Its vocabulary has no bAbI actor, room,
object or movement/handling verb and none of the renamed room words, so filler can never state or
contradict a fact. The content words are split into two disjoint halves: "test" fills evaluation
haystacks and "train" fills training stories, so evaluation text is text training never saw.
"""

import random
from typing import Iterator

_NOUNS = """sailor merchant farmer weaver lantern river mountain village harbour carriage letter
stranger shepherd cottage forest bridge meadow tower violin painter soldier candle mirror compass
orchard valley blanket clock ship crowd widow priest fisherman wagon storm island castle poet
judge baker blacksmith horse dog cat owl raven lamp bell kettle ribbon basket ladder fountain
chimney piano statue map coin feather hat cloak""".split()
_ADJECTIVES = """old quiet tired young bright dusty gentle proud silent ancient narrow cheerful grey
careful curious distant heavy honest lonely patient restless shabby solemn sturdy weary clever
crooked eager faded golden hollow humble merry polished rusty scarlet stubborn timid wooden
wild""".split()
_TRANSITIVE = """admired carried noticed painted repaired borrowed described followed praised
watched guarded mended polished sold studied visited counted examined greeted measured ignored
remembered questioned opened closed washed sketched weighed wrapped buried built burned climbed
crossed feared loved found lost offered signed""".split()
_INTRANSITIVE = """laughed waited slept sang wept shivered whistled hesitated smiled frowned paused
trembled listened prayed sighed wandered rested nodded yawned knelt shouted stumbled hurried
grumbled""".split()
_ADVERBS = """slowly quietly suddenly gladly patiently softly bitterly loudly carefully calmly
gravely eagerly nervously warmly briefly happily sadly boldly gently proudly wearily politely
silently anxiously""".split()
_PLACES = [
    "near the river", "beyond the hills", "under the old bridge", "by the harbour wall",
    "at the edge of the forest", "on the windy cliff", "behind the chapel", "across the meadow",
    "inside the lighthouse", "along the canal", "at the market square", "below the castle",
    "beside the mill", "upon the frozen lake", "among the vineyards", "outside the tavern",
    "at the crossroads", "in the orchard", "near the quarry", "on the village green",
    "under the elms", "by the fountain", "past the churchyard", "at the old inn"]
_TIMES = [
    "that evening", "the next morning", "long ago", "in the spring", "after the storm",
    "before dawn", "at midnight", "later that week", "during the winter", "on market day",
    "at dusk", "one summer", "every autumn", "before supper", "by noon", "in those days"]
_TEMPLATES = [
    "{NP} {tv} {np} {place}.",
    "{NP} {iv} {adv} {place}.",
    "{Time}, {np} {tv} {np}.",
    "{NP} {tv} {np}, and {np} {iv} {adv}.",
    "When {np} {iv}, {np} {tv} {np} {place}.",
    "{NP} seemed {adj} and {adj} {time}.",
    "Nobody could say why {np} {tv} {np} {time}.",
    "{NP} was {adj}, but {np} {iv} {place}.",
    "It was {time} that {np} first {tv} {np}.",
    "{NP} {iv} {adv}, for {np} had {tv} {np} {place}.",
]
HALVES = ("test", "train")


class BuiltinText:
  """An endless stream of generated sentences from one vocabulary half."""

  def __init__(self, half: str = "test"):
    if half not in HALVES:
      raise ValueError(f"unknown builtin half {half!r}; expected one of {HALVES}")
    part = HALVES.index(half)
    self.words = {key: words[part::2] for key, words in (
        ("noun", _NOUNS), ("adj", _ADJECTIVES), ("tv", _TRANSITIVE), ("iv", _INTRANSITIVE),
        ("adv", _ADVERBS), ("place", _PLACES), ("time", _TIMES))}

  def _noun_phrase(self, rng: random.Random) -> str:
    noun = rng.choice(self.words["noun"])
    form = rng.randrange(4)
    if form == 0:
      return f"the {rng.choice(self.words['adj'])} {noun}"
    if form == 1:
      return f"the {noun} of the {rng.choice(self.words['noun'])}"
    return f"{'a' if form == 2 and noun[0] not in 'aeiou' else 'the'} {noun}"

  def sentence(self, rng: random.Random) -> str:
    template = rng.choice(_TEMPLATES)
    fill = {
        "np": lambda: self._noun_phrase(rng),
        "tv": lambda: rng.choice(self.words["tv"]),
        "iv": lambda: rng.choice(self.words["iv"]),
        "adv": lambda: rng.choice(self.words["adv"]),
        "adj": lambda: rng.choice(self.words["adj"]),
        "place": lambda: rng.choice(self.words["place"]),
        "time": lambda: rng.choice(self.words["time"]),
    }
    parts = template.split("{")
    out = [parts[0]]
    for part in parts[1:]:
      key, rest = part.split("}", 1)
      text = fill[key.lower()]()
      out.append((text[0].upper() + text[1:] if key[0].isupper() else text) + rest)
    return "".join(out)

  def sentences(self, rng: random.Random) -> Iterator[str]:
    while True:
      yield self.sentence(rng)
