"""What text a model saw in training, and what in new input it never saw.

A model answers input made of characters or words its training data never had with confident
nonsense ("Where is Jöhn?" -> 'kedalway'). Training records the characters and words of its
examples (contexts, questions and answers) in the checkpoint; `unseen` finds what in new input
falls outside that record, so that inference can say so instead of answering silently.
Words are runs of letters, lowercased: "Mary's" holds the words "mary" and "s".
"""

from collections.abc import Iterable, Sequence
import re

from memreasoner_jax.tasks.example import Example

_WORD = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
  return _WORD.findall(text.lower())


def record(examples: Sequence[Example]) -> dict[str, str | list[str]]:
  """{"chars": every character, sorted, "words": every word, sorted} of `examples` (JSON-able)."""
  chars: set[str] = set()
  seen_words: set[str] = set()
  for example in examples:
    text = "\n".join((example.question, example.answer, *example.context))
    chars.update(text)
    seen_words.update(words(text))
  return {"chars": "".join(sorted(chars)), "words": sorted(seen_words)}


def known(seen: dict[str, str | list[str]]) -> tuple[frozenset[str], frozenset[str]]:
  """(characters, words) of a `record`, as sets to look up in (built once per model)."""
  return frozenset(seen["chars"]), frozenset(seen["words"])


def unseen(known_chars: frozenset[str], known_words: frozenset[str],
           texts: Iterable[str]) -> tuple[str, list[str]]:
  """(characters, words) of `texts` outside `known(record)`, in first-seen order; whitespace is
  never counted."""
  chars: dict[str, None] = {}
  new_words: dict[str, None] = {}
  for text in texts:
    chars.update(dict.fromkeys(c for c in text if c not in known_chars and not c.isspace()))
    new_words.update(dict.fromkeys(w for w in words(text) if w not in known_words))
  return "".join(chars), list(new_words)
