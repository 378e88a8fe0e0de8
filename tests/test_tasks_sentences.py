"""Sentence splitting of book text, and the built-in distractor text."""

import random
import re

import pytest

from memreasoner_jax.tasks.builtin_text import BuiltinText
from memreasoner_jax.tasks.reference_data import shared_data_dir
from memreasoner_jax.tasks import sentences, vocab

DATA = shared_data_dir()

BOOK = """The Project Gutenberg eBook of A Test
Release date: 1900
*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***

[Illustration]

CONTENTS

 CHAPTER I.     The Start
 CHAPTER II.    The End

CHAPTER I.
The Start

Mr. Smith met Dr. J. Watson at St. Paul's at noon. They spoke of
nothing. "Is it late?" asked Mrs. Hudson. "It is!" said he; "quite
late." Part of her meaning was plain (she said so). Then they left!

[Illustration: A man
at a door]

“Come in,” said the Queen. ‘Why?’ asked Alice.

*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***
Licence text that is not part of the book.
"""


def test_book_sentences_handle_headers_headings_abbreviations_and_quotes():
  assert sentences.book_sentences(BOOK.replace("\n", "\r\n")) == [
      "Mr. Smith met Dr. J. Watson at St. Paul's at noon.",
      "They spoke of nothing.",
      '"Is it late?" asked Mrs. Hudson.',
      '"It is!" said he; "quite late."',
      "Part of her meaning was plain (she said so).",
      "Then they left!",
      "“Come in,” said the Queen.",
      "‘Why?’ asked Alice.",
  ]


def test_wrap_line_cuts_at_word_boundaries():
  text = "word " * 30 + "x" * 50
  lines = sentences.wrap_line(text.strip(), 40)
  assert all(len(l) <= 40 for l in lines)
  assert " ".join(lines).replace(" ", "") == text.replace(" ", "")
  assert all(l.endswith("word") for l in lines[:-2])
  assert sentences.wrap_line("short", 40) == ["short"]


@pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not present")
def test_real_books_split_into_prose_sentences():
  for path in sorted((DATA / "books").glob("*.txt")):
    found = sentences.book_sentences(path.read_text(encoding="utf-8"))
    assert len(found) > 1000, path.name
    # Almost every sentence starts like a sentence and none ends on an abbreviation.
    assert sum(s[0].islower() for s in found) < 0.002 * len(found), path.name
    assert not [s for s in found if re.search(r"\b(Mr|Mrs|Dr|St)\.$", s)]
    assert not [s for s in found if re.fullmatch(r"(?i)chapter [IVXLC\d]+\.?", s)]
    assert not [s for s in found if "[Illustration" in s or "\n" in s or "  " in s]


def test_builtin_text_avoids_babi_words_and_halves_are_disjoint():
  forbidden = {w.lower() for w in vocab.ACTORS + vocab.ROOMS + vocab.OBJECTS + vocab.RENAMED_ROOMS}
  forbidden |= {"moved", "went", "journeyed", "travelled", "got", "took", "picked", "grabbed",
                "dropped", "discarded", "left"}
  words = {}
  for half in ("test", "train"):
    rng = random.Random(0)
    text = " ".join(BuiltinText(half).sentence(rng) for _ in range(3000))
    words[half] = set(re.findall(r"[a-z]+", text.lower()))
    assert not words[half] & forbidden
    assert len(set(text.split(". "))) > 2900  # varied: hardly any sentence repeats
  shared = words["test"] & words["train"]
  assert len(shared) < 40 and "sailor" in words["test"] and "sailor" not in words["train"], shared
