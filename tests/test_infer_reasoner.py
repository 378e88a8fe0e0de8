"""Reasoner: answer, answer_batch and explain agree; explain finds the supporting facts; line
splitting; one compilation per shape bucket; bad input named; input unlike the training data
warned about."""

import warnings

import jax
import pytest

from memreasoner_jax import inference
from memreasoner_jax import input_pipeline as input_lib

STORY = ("Mary went to the kitchen. John moved to the garden.\n"
         "Daniel journeyed to the office.\nMary travelled to the hallway.")


@pytest.fixture(scope="module")
def reasoner(qa1_checkpoint):
  return inference.load(qa1_checkpoint.workdir, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def held_out(reasoner):
  return input_lib.eval_examples(reasoner.config.data)["qa1"]


def test_answer_answer_batch_and_explain_agree(reasoner, held_out):
  examples = held_out[:12]
  batch = reasoner.answer_batch([e.context for e in examples], [e.question for e in examples])
  for example, batched in zip(examples[:4], batch):
    assert reasoner.answer(list(example.context), example.question) == batched
    assert reasoner.explain(example.context, example.question).answer == batched
  assert reasoner.answer_examples(examples) == batch


def test_explain_names_the_supporting_fact_when_the_answer_is_right(reasoner, held_out,
                                                                   qa1_checkpoint):
  # The checkpoint's own held-out evaluation: the read has learned (100% measured). Answers here
  # are exactly those the training process decoded for the same 48 questions (25% right
  # measured; chance is 16.7%).
  assert qa1_checkpoint.scores["sf_accuracy"] >= 90, qa1_checkpoint.scores
  answers = reasoner.answer_examples(held_out)
  assert answers == [a["output"] for a in qa1_checkpoint.answers]
  right = [e for e, a in zip(held_out, answers) if a == e.answer]
  trained_right = [a["question"] for a in qa1_checkpoint.answers if a["output"] == a["target"]]
  assert [e.question for e in right] == trained_right
  assert 100.0 * len(right) / len(held_out) == pytest.approx(qa1_checkpoint.scores["exact_match"])
  assert right, "no held-out answer is right: nothing to explain"
  found = 0
  for example in right:
    explanation = reasoner.explain(example.context, example.question, top_k=2)
    (hop,) = explanation.hops
    assert len(hop) == min(2, len(example.context)) and hop[0].weight >= hop[-1].weight
    found += hop[0].index == example.support[0] and hop[0].text == example.context[hop[0].index]
  assert found >= 0.9 * len(right), f"top line is the supporting fact for {found} of {len(right)}"
  text = str(reasoner.explain(right[0].context, right[0].question))
  assert text.startswith(f"Question: {right[0].question}\nHop 1:")
  assert right[0].context[right[0].support[0]] in text
  assert text.endswith(f"Answer: {right[0].answer}")


def test_a_text_is_split_into_sentence_lines():
  assert inference.context_lines(STORY, 46) == (
      "Mary went to the kitchen.", "John moved to the garden.",
      "Daniel journeyed to the office.", "Mary travelled to the hallway.")
  assert inference.context_lines(["VAR ABCDE = 12345", "", "x " * 29 + "x"], 20) == (
      "VAR ABCDE = 12345", "x x x x x x x x x x", "x x x x x x x x x x", "x x x x x x x x x x")


def test_text_and_list_contexts_answer_alike_and_calls_reuse_compilations(reasoner):
  lines = list(inference.context_lines(STORY, reasoner.config.data.line_tokens - 2))
  assert reasoner.answer(STORY, "Where is Mary?") == reasoner.answer(lines, "Where is Mary?")
  compiled = reasoner._infer._cache_size()  # pylint: disable=protected-access
  for extra in range(5):  # same line bucket (16) and batch rows (1)
    reasoner.answer(lines + ["Sandra went to the bedroom."] * extra, "Where is Sandra?")
  assert reasoner._infer._cache_size() == compiled  # pylint: disable=protected-access


def test_batches_are_bounded_in_lines(reasoner, held_out):
  default, reasoner.max_batch_lines = reasoner.max_batch_lines, 32  # two 16-line examples
  try:
    assert [len(g) for g in reasoner._groups(held_out[:5])] == [2, 2, 1]  # pylint: disable=protected-access
  finally:
    reasoner.max_batch_lines = default


@pytest.mark.parametrize("context, question, error, message", [
    ("", "Where is Mary?", ValueError, "context is empty"),
    ([" ", ""], "Where is Mary?", ValueError, "context is empty"),
    (STORY, 3, TypeError, "question must be a string, got int"),
    (STORY, "  ", ValueError, "question is empty"),
    (["Mary went home.", 7], "Where is Mary?", TypeError, r"context\[1\] must be a string"),
    (42, "Where is Mary?", TypeError, "context must be a string or a list of lines"),
    (STORY, "Where " * 20, ValueError, "question has 120 tokens, more than the 30"),
])
def test_bad_input_is_named(reasoner, context, question, error, message):
  with pytest.raises(error, match=message):
    reasoner.answer(context, question)


def test_bad_batch_input_is_named(reasoner):
  with pytest.raises(TypeError, match=r"questions\[1\] must be a string, got NoneType"):
    reasoner.answer_batch([STORY, STORY], ["Where is Mary?", None])
  with pytest.raises(ValueError, match=r"contexts\[0\] is empty"):
    reasoner.answer_batch([""], ["Where is Mary?"])
  with pytest.raises(ValueError, match="2 contexts but 1 questions"):
    reasoner.answer_batch([STORY, STORY], ["Where is Mary?"])
  with pytest.raises(TypeError, match="use answer"):
    reasoner.answer_batch(STORY, "Where is Mary?")


def test_unseen_characters_and_words_warn_once_per_call_and_explain_says_so(reasoner):
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # normal input: no warning at all
    reasoner.answer(STORY, "Where is Mary?")
    assert not reasoner.explain(STORY, "Where is Mary?").notes
  with pytest.warns(inference.InputWarning) as caught:
    reasoner.answer(STORY, "Where is Mary? 🤔")
  assert len(caught) == 1 and "question has characters '🤔'" in str(caught[0].message)
  with pytest.warns(inference.InputWarning) as caught:
    explanation = reasoner.explain(STORY.replace("John", "Jöhn"), "Where is Jöhn?")
  (message,) = [str(w.message) for w in caught]
  assert "question has characters 'ö' and words 'jöhn'" in message
  assert "context has characters 'ö' and words 'jöhn'" in message
  assert explanation.notes and all(note in message for note in explanation.notes)
  assert "Note: question has characters 'ö'" in str(explanation)


def test_a_line_longer_than_the_line_width_warns_and_explain_says_so(reasoner):
  width = reasoner.config.data.line_tokens - 2
  long_line = " ".join(["Mary went to the kitchen"] * 400)  # 9,999 characters, known words
  with pytest.warns(inference.InputWarning, match="cut at spaces into") as caught:
    explanation = reasoner.explain([long_line, "John moved to the garden."], "Where is Mary?")
  pieces = len(inference.context_lines([long_line], width))
  assert pieces > 200
  assert (f"context: 1 line(s) longer than the {width} bytes a line holds were cut at spaces into "
          f"{pieces} lines (the longest, line 0, {len(long_line):,} characters, into {pieces})"
          in str(caught[0].message))
  assert any("cut at spaces" in note for note in explanation.notes)


def test_evaluation_examples_do_not_warn(reasoner, held_out):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    reasoner.answer_examples(held_out[:2])
