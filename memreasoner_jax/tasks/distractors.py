"""Where haystack filler comes from: the built-in generator, local books, or TFDS pg19.

Every source streams sentences from a random place (`sentences(rng)`), following BABILong: start
at a random place in a random book, drop the first sentence (it may be partial) and the book's
last, and continue into another random book when one runs out. Sources are named by a spec:

  builtin, builtin:test   the built-in generator, test vocabulary half (the default)
  builtin:train           the built-in generator, training half (filler for training stories)
  noise                   RULER's noise unit repeated (variable tracking's own filler)
  tfds:pg19[:SPLIT]       TFDS pg19 if built locally (default split test; never downloads)
  PATH                    a text file, a folder of *.txt files (recursively) or a glob
"""

import glob
import os
import pathlib
import random
from typing import Callable, Iterator, Protocol, Sequence

from memreasoner_jax.tasks.builtin_text import BuiltinText
from memreasoner_jax.tasks import sentences as sentences_lib

RULER_NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
               "There and back again.")


class SentenceSource(Protocol):

  def sentences(self, rng: random.Random) -> Iterator[str]:
    """An endless stream of sentences, starting at a place drawn from `rng`."""


class RepeatedText:
  """A fixed unit of sentences repeated forever (RULER's noise)."""

  def __init__(self, unit: Sequence[str] = RULER_NOISE):
    self.unit = tuple(unit)

  def sentences(self, rng: random.Random) -> Iterator[str]:
    del rng  # the unit always starts at its beginning, as in RULER
    while True:
      yield from self.unit


class Books:
  """Books read on demand (one text per index) and split into sentences once each."""

  def __init__(self, num_books: int, read: Callable[[int], str], name: str):
    if num_books == 0:
      raise FileNotFoundError(f"no books in {name}")
    self.num_books, self._read, self.name = num_books, read, name
    self._cache: dict[int, list[str]] = {}

  def book(self, i: int) -> list[str]:
    if i not in self._cache:
      if len(self._cache) >= 64:  # bounded: pg19 has thousands of books
        self._cache.pop(next(iter(self._cache)))
      self._cache[i] = sentences_lib.book_sentences(self._read(i))
    return self._cache[i]

  def sentences(self, rng: random.Random) -> Iterator[str]:
    misses = 0  # draws in a row of books too short to sample from
    while misses < 100 * self.num_books:
      book = self.book(rng.randrange(self.num_books))
      misses = 0 if len(book) >= 3 else misses + 1
      if not misses:
        yield from book[rng.randrange(len(book) - 2) + 1:-1]
    raise ValueError(f"{self.name}: too little prose to sample sentences from")


def text_files(spec: str) -> list[pathlib.Path]:
  """The text files a PATH spec names: a file, a folder (all *.txt below it) or a glob."""
  path = pathlib.Path(spec).expanduser()
  if path.is_dir():
    files = sorted(path.rglob("*.txt"))
  elif path.is_file():
    files = [path]
  else:
    files = sorted(pathlib.Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
  files = [f for f in files if f.is_file()]
  if not files:
    raise FileNotFoundError(f"distractor source {spec!r}: no text files found there")
  return files


def book_files(spec: str) -> Books:
  files = text_files(spec)
  return Books(len(files), lambda i: files[i].read_text(encoding="utf-8", errors="replace"), spec)


def tfds_pg19(split: str = "test", data_dir: str | None = None) -> Books:
  """PG19 books from a local TFDS build, read by random access; never downloads.

  The build must be in a random-access format (array_record); TFDS raises NotImplementedError
  with instructions otherwise.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top (heavy, optional)
  builder = tfds.builder("pg19", data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS pg19 is not built under {builder.data_dir_root}; build it once with "
        "`tfds build pg19 --file_format=array_record` (about 11 GB download), set TFDS_DATA_DIR, "
        "or pass a folder of books as the distractor source")
  source = builder.as_data_source(split=split)
  return Books(len(source), lambda i: _text(source[i]["book_text"]), f"tfds:pg19:{split}")


def _text(value: str | bytes) -> str:
  return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def get_source(spec: str) -> SentenceSource:
  """The sentence source a spec names (see the module docstring)."""
  if spec in ("builtin", "builtin:test", "builtin:train"):
    return BuiltinText(spec.partition(":")[2] or "test")
  if spec == "noise":
    return RepeatedText()
  if spec.startswith("tfds:"):
    name, _, split = spec[len("tfds:"):].partition(":")
    if name != "pg19":
      raise ValueError(f"unknown TFDS distractor dataset {name!r}; only pg19 is supported")
    return tfds_pg19(split or "test")
  return book_files(spec)
