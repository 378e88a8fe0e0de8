"""bAbI file format: parse, write back byte-identical, Examples, errors."""

import dataclasses
import re

import pytest

from memreasoner_jax.tasks import babi_format
from memreasoner_jax.tasks.reference_data import shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not present")
RELEASED = sorted(
    f"{split}/qa{t}_{name}_{part}.txt"
    for split in ("en", "en-10k")
    for t, name in ((1, "single-supporting-fact"), (2, "two-supporting-facts"))
    for part in ("train", "test"))

SAMPLE = (
    "1 Mary moved to the bathroom.\n"
    "2 John got the milk there.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 John went to the hallway.\n"
    "5 Where is the milk? \thallway\t2 4\n"
    "1 Sandra dropped the apple.\n"
    "2 What is Sandra carrying?\tnothing\t\n"
    "3 Which way?\tn,w\n")


def test_sample_round_trip_and_structure():
  stories = babi_format.parse_babi(SAMPLE)
  assert babi_format.format_babi(stories) == SAMPLE
  assert len(stories) == 2
  q = stories[0][4]
  assert q == babi_format.Question(5, "Where is the milk?", "hallway", (2, 4), " ")
  assert stories[1][1].support == () and stories[1][1].pad == ""
  assert stories[1][2].support is None and stories[1][2].answer == "n,w"


def test_examples_drop_question_lines_and_keep_support_order():
  examples = babi_format.stories_to_examples(babi_format.parse_babi(SAMPLE), "qa2")
  assert [e.index for e in examples] == [0, 1, 2, 3]
  second = examples[1]
  assert second.context == ("Mary moved to the bathroom.", "John got the milk there.",
                            "John went to the hallway.")
  assert second.support == (1, 2) and second.answer == "hallway"
  assert examples[2].context == ("Sandra dropped the apple.",) and examples[2].support == ()


def test_example_to_story_round_trip():
  example = babi_format.stories_to_examples(babi_format.parse_babi(SAMPLE), "qa2")[1]
  story = babi_format.example_to_story(example)
  text = babi_format.format_babi([story])
  assert text.endswith("4 Where is the milk? \thallway\t2 3\n")
  assert babi_format.story_examples(babi_format.parse_babi(text)[0], "qa2") == [
      dataclasses.replace(example, index=0)]


@pytest.mark.parametrize("text, message", [
    ("1 Mary moved.\n3 John went.\n", "x.txt:2: line id 3"),
    ("1 Mary moved.\n2 Where?\tkitchen\t2\n", "x.txt:2: support ids [2]"),
    ("1 Mary moved.\n2 Where? \tkitchen\t1  2\n", "x.txt:2: not a bAbI line"),
    ("1 Mary moved.\nfoo\n", "x.txt:2: not a bAbI line"),
    ("2 Mary moved.\n", "x.txt:1: line id 2"),
    ("1 Mary moved.", "x.txt: file does not end"),
])
def test_malformed_lines_name_file_and_line(text, message):
  with pytest.raises(babi_format.BabiFormatError, match=re.escape(message)):
    babi_format.parse_babi(text, "x.txt")


def test_writer_rejects_text_that_cannot_round_trip():
  with pytest.raises(ValueError, match="tabs"):
    babi_format.format_babi([(babi_format.Statement(1, "a\tb"),)])


@needs_data
@pytest.mark.parametrize("name", RELEASED)
def test_released_files_round_trip_byte_identical(name):
  path = DATA / "babi" / name
  raw = path.read_bytes()
  stories = babi_format.read_babi(path)
  assert babi_format.format_babi(stories).encode("utf-8") == raw
  examples = babi_format.stories_to_examples(stories, babi_format.task_from_filename(path))
  assert len(examples) == (10000 if "10k" in name and "train" in name else 1000)
  for e in examples[:200]:
    assert e.task == name.split("/")[1][:3]
    assert len(e.support) == int(e.task[2])
    assert all(0 <= i < len(e.context) for i in e.support)
