"""The bAbI qa1/qa2 vocabulary and sentence templates of the released data (tasks_1-20_v1-2).

Kept in one place so the generators, the renamer and the metrics agree on what the answer
labels are and which words training has seen.
"""

ACTORS: tuple[str, ...] = ("John", "Mary", "Sandra", "Daniel")
ROOMS: tuple[str, ...] = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS: tuple[str, ...] = ("apple", "football", "milk")

# Verb phrases exactly as they occur in the released files.
MOVE_VERBS: tuple[str, ...] = ("moved", "went", "went back", "journeyed", "travelled")
GET_VERBS: tuple[str, ...] = ("got", "took", "picked up", "grabbed")
DROP_VERBS: tuple[str, ...] = ("dropped", "put down", "discarded", "left")

# Room words never used in training, for the answer-renamed test splits: one per room, in the
# order of ROOMS. None of them is a substring of another label or of the training vocabulary.
RENAMED_ROOMS: tuple[str, ...] = ("cellar", "attic", "balcony", "pantry", "garage", "library")

# Every word the bAbI training stories of qa1/qa2 can contain, lower-cased.
BABI_WORDS: frozenset[str] = frozenset(
    w.lower()
    for phrase in ACTORS + ROOMS + OBJECTS + MOVE_VERBS + GET_VERBS + DROP_VERBS
    + ("to", "the", "there", "where", "is")
    for w in phrase.split()
)


def move_sentence(actor: str, verb: str, room: str) -> str:
  return f"{actor} {verb} to the {room}."


def get_sentence(actor: str, verb: str, obj: str) -> str:
  return f"{actor} {verb} the {obj} there."


def drop_sentence(actor: str, verb: str, obj: str, there: bool) -> str:
  return f"{actor} {verb} the {obj}{' there' if there else ''}."


def actor_question(actor: str) -> str:
  return f"Where is {actor}?"


def object_question(obj: str) -> str:
  return f"Where is the {obj}?"
