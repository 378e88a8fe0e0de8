"""Metrics on realistic model outputs, right and wrong."""

import pytest

from memreasoner_jax.tasks import metrics, rename, vocab

Q = "Where is the football?"


@pytest.mark.parametrize("output, correct", [
    ("kitchen", True),
    ("Kitchen", True),
    ("The football is in the kitchen.", True),
    ("The football is in the kitchen. Before that it was in the garden.", True),
    ("kitchen<context>garden", True),
    ("The answer is: kitchen<example> office", True),
    ("kitchen or garden", False),
    ("The football is in the garden.", False),
    ("I don't know.", False),
    ("", False),
    ("The football is in the KITCHEN and the hallway", False),
])
def test_compare_answers(output, correct):
  assert metrics.compare_answers(output, "kitchen", Q, vocab.ROOMS) is correct


def test_labels_in_the_question_are_ignored():
  question = "Where was the apple before the hallway?"
  assert metrics.compare_answers("It was in the hallway, then the office.", "office", question,
                                 vocab.ROOMS)
  assert not metrics.compare_answers("hallway", "hallway", question, vocab.ROOMS)


def test_renamed_labels_are_a_parameter():
  labels = rename.answer_labels("qa1", renamed=True)
  assert metrics.compare_answers("Mary is in the cellar.", "cellar", "Where is Mary?", labels)
  assert not metrics.compare_answers("cellar or attic", "cellar", "Where is Mary?", labels)
  # With the training labels, a renamed answer is never found.
  assert not metrics.compare_answers("cellar", "cellar", "Where is Mary?", vocab.ROOMS)
  # A model that answers with a training room on a renamed split is wrong.
  assert not metrics.compare_answers("bathroom", "cellar", "Where is Mary?", labels)


def test_babilong_score():
  outputs = ["kitchen", "the garden.", "office or garden", "hallway"]
  targets = ["kitchen", "garden", "garden", "bedroom"]
  assert metrics.babilong_score(outputs, targets, [Q] * 4, vocab.ROOMS) == 50.0


def test_exact_match():
  assert metrics.exact_match(" Kitchen. ", "kitchen")
  assert not metrics.exact_match("the kitchen", "kitchen")
  assert metrics.exact_match_score(["kitchen", "garden"], ["kitchen", "office"]) == 50.0


def test_string_match_all():
  assert metrics.string_match_all("ABCDE, fghij and more", ["ABCDE", "FGHIJ"]) == 1.0
  assert metrics.string_match_all("Only ABCDE.", ["ABCDE", "FGHIJ"]) == 0.5
  assert metrics.ruler_score(["abcde fghij", "nothing"], ["ABCDE FGHIJ", "KLMNO"]) == 50.0


def test_empty_and_mismatched_inputs_raise():
  with pytest.raises(ValueError):
    metrics.exact_match_score([], [])
  with pytest.raises(ValueError):
    metrics.exact_match_score(["a"], ["a", "b"])
  with pytest.raises(ValueError, match="ruler_score"):
    rename.answer_labels("vt1")
