"""Batching: the batch contract's keys, shapes, token layout, masks and errors."""

import dataclasses
import re

import jax
import ml_collections
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import lines
from memreasoner_jax.data import tokenizers
from memreasoner_jax import inference
from memreasoner_jax.models import losses
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import sharding
from memreasoner_jax.tasks.example import Example
from tests import data_fixtures

BYTE = tokenizers.ByteTokenizer()
SHAPE = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40, supports=2,
                            line_buckets=(4, 8, 16))


def _text(row) -> str:
  return BYTE.decode_sequence(row)


def test_contract_shapes_dtypes_and_layout():
  examples = [data_fixtures.qa1_examples(3)[2], data_fixtures.QA2_STORY]
  batch = batching.Batcher(SHAPE, BYTE)(examples)
  expected = {
      "context_BxExT": ((2, 8, 40), np.int32), "line_mask_BxE": ((2, 8), np.bool_),
      "query_BxQ": ((2, 24), np.int32), "answer_BxA": ((2, 40), np.int32),
      "answer_mask_BxA": ((2, 40), np.bool_), "prompt_len_B": ((2,), np.int32),
      "support_BxS": ((2, 2), np.int32), "answer_lines_BxE": ((2, 8), np.bool_),
      "question_lines_BxE": ((2, 8), np.bool_), "sf_weight_B": ((2,), np.float32),
      "example_weight_B": ((2,), np.float32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  context = batch["context_BxExT"]
  assert batch["line_mask_BxE"].sum(1).tolist() == [3, 5]
  for b, ex in enumerate(examples):
    for e, line in enumerate(ex.context):
      row = context[b, e]
      assert row[0] == BYTE.bos_id and row[1 + len(BYTE.encode(line))] == BYTE.eos_id
      assert _text(row) == line
    assert (context[b, len(ex.context):] == BYTE.pad_id).all()
    assert _text(batch["query_BxQ"][b]) == ex.question
  assert batch["support_BxS"].tolist() == [[0, -1], [0, 2]]
  assert batch["example_weight_B"].tolist() == [1.0, 1.0]
  # The lines naming each answer (bathroom; hallway), found without the support labels.
  assert batch["answer_lines_BxE"].nonzero()[1].tolist() == [0, 2]
  assert batch["answer_lines_BxE"].nonzero()[0].tolist() == [0, 1]
  # And the lines naming what the question asks about (the actor; the milk).
  for b, ex in enumerate(examples):
    subject = ex.question.rstrip("?").split()[-1]
    assert batch["question_lines_BxE"][b].tolist() == [
        subject in line for line in ex.context] + [False] * (8 - len(ex.context))
  assert batch["question_lines_BxE"][1].nonzero()[0].tolist() == [0]


def test_answer_lines_match_whole_words_case_folded():
  ex = Example(context=("VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE", "ABCDEF = 1",
                        "Here we go."),
               question="Which variables hold 12345?", answer="abcde FGHIJ", support=(0, 1),
               task="vt1", index=0)
  assert batching.answer_lines([ex], 6).tolist() == [[True, True, False, False, False, False]]


def test_word_lines_are_whole_tokens_across_the_line_boundaries_of_one_scan():
  # The scan runs over the joined context: a word split by a line end, a word inside a longer
  # one, a possessive, an empty line and a character whose lower case is longer must all give
  # what comparing each line's own tokens gives.
  context = ("Mary", "went to the Kitchen's door", "", "İstanbul kitchen", "kitchenette",
             "mary-ann", "x kitchen")
  ex = Example(context=context, question="Where is Mary?", answer="kitchen", support=(1,),
               task="qa1", index=0)
  by_line = [[bool({"kitchen"} & set(re.findall(r"\w+", line.lower()))) for line in context]]
  assert batching.answer_lines([ex], 7).tolist() == by_line
  assert batching.question_lines([ex], 8)[0].nonzero()[0].tolist() == [0, 5]


def test_read_targets_are_left_out_when_no_read_loss_uses_them():
  examples = [data_fixtures.qa1_examples(3)[2], data_fixtures.QA2_STORY]
  full = batching.Batcher(SHAPE, BYTE)(examples)
  bare = batching.Batcher(SHAPE, BYTE, read_targets=False)(examples)
  targets = {"answer_lines_BxE", "question_lines_BxE"}
  assert all(full[key].any() and not bare[key].any() for key in targets)
  # One lowering of each context serves both targets: the same as each found alone.
  num_lines = full["line_mask_BxE"].shape[1]
  np.testing.assert_array_equal(full["answer_lines_BxE"],
                                batching.answer_lines(examples, num_lines))
  np.testing.assert_array_equal(full["question_lines_BxE"],
                                batching.question_lines(examples, num_lines))
  for key in set(full) - targets:
    np.testing.assert_array_equal(full[key], bare[key], err_msg=key)
  cfg = losses.loss_config()
  assert not losses.uses_read_targets(cfg)
  cfg.question_read_weight = 1.0
  assert losses.uses_read_targets(cfg)
  data = babi.get_config("qa1,tiny").data
  assert input_lib.make_batcher(data).read_targets
  assert not input_lib.make_batcher(data, read_targets=False).read_targets


def test_question_lines_hold_a_question_word_other_than_function_words():
  ex = Example(context=("Mary got the football there.", "The football is here.",
                        "Where is the kitchen?", "John went to the hallway."),
               question="Where is the football?", answer="hallway", support=(0, 3),
               task="qa2", index=0)
  assert batching.question_lines([ex], 5).tolist() == [[True, True, False, False, False]]
  # A question being answered has no answer yet and is not trained on: no scan.
  asked = dataclasses.replace(ex, answer="")
  assert not batching.question_lines([asked], 5).any()


def test_answer_sequence_prompt_and_mask():
  ex = data_fixtures.QA2_STORY
  batch = batching.Batcher(SHAPE, BYTE)([ex])
  seq, mask, prompt_len = batch["answer_BxA"][0], batch["answer_mask_BxA"][0], batch[
      "prompt_len_B"][0]
  prompt = BYTE.encode(ex.question + " ")
  assert prompt_len == 1 + len(prompt)
  assert seq[0] == BYTE.bos_id and seq[1:prompt_len].tolist() == prompt
  predicted = seq[mask]
  assert predicted.tolist() == BYTE.encode(ex.answer) + [BYTE.eos_id]
  assert not mask[:prompt_len].any() and (seq[~mask][prompt_len:] == BYTE.pad_id).all()
  assert BYTE.decode_sequence(seq) == ex.question + " " + ex.answer


def test_different_decoder_tokenizer():
  class Shifted(tokenizers.ByteTokenizer):
    pad_id, bos_id, eos_id = 7, 5, 6  # A decoder vocabulary with other special ids.
  batch = batching.Batcher(SHAPE, BYTE, Shifted())([data_fixtures.QA2_STORY])
  assert batch["answer_BxA"][0, 0] == 5 and batch["answer_BxA"][0, -1] == 7
  assert batch["context_BxExT"][0, 0, 0] == BYTE.bos_id


def test_line_buckets():
  assert batching.line_buckets(16, 100) == (16, 32, 64, 128)
  assert batching.bucket_for(16, (16, 32)) == 16 and batching.bucket_for(17, (16, 32)) == 32
  with pytest.raises(ValueError, match="exceeds the largest line bucket 32"):
    batching.bucket_for(33, (16, 32))
  batcher = batching.Batcher(SHAPE, BYTE)
  assert batcher(data_fixtures.qa1_examples(2))["context_BxExT"].shape[1] == 4
  layout = batcher.layout(batcher.sizes(data_fixtures.qa1_examples(2)), num_lines=16)
  assert batcher(data_fixtures.qa1_examples(2), layout)["line_mask_BxE"].shape == (2, 16)


def test_sf_subset_is_fixed_and_nested():
  index = np.arange(20000)
  small, large = batching.sf_selected(index, 0.01), batching.sf_selected(index, 0.1)
  assert abs(small.mean() - 0.01) < 0.003 and abs(large.mean() - 0.1) < 0.01
  assert not (small & ~large).any()
  assert batching.sf_selected(index, 0.0).sum() == 0 and batching.sf_selected(index, 1.0).all()
  examples = data_fixtures.qa1_examples(8)
  weights = batching.Batcher(SHAPE, BYTE, sf_fraction=0.5)(examples)["sf_weight_B"]
  assert weights.tolist() == batching.sf_selected(np.arange(8), 0.5).astype(float).tolist()


@pytest.mark.parametrize("field,match", [
    ("context", r"Line 1 of example qa1\[9\] has 50 tokens, more than the 38"),
    ("question", r"question of example qa1\[9\] has"),
    ("answer", r"Answer sequence of example qa1\[9\]"),
    ("support", r"qa1\[9\] has 3 supporting facts"),
])
def test_too_long_is_an_error_naming_the_example(field, match):
  ex = Example(("Short.", "x" * 50), "Where?", "here", (0,), "qa1", 9)
  changes = {"context": {}, "question": {"context": ("a.",), "question": "q" * 30},
             "answer": {"context": ("a.",), "answer": "y" * 40},
             "support": {"context": ("a.",) * 3, "support": (0, 1, 2)}}[field]
  bad = Example(**{**ex.__dict__, **changes})
  with pytest.raises(ValueError, match=match):
    batching.Batcher(SHAPE, BYTE)([bad])


def test_encoder_without_pad_is_rejected():
  class NoPad(tokenizers.ByteTokenizer):
    pad_id = 2
  with pytest.raises(ValueError, match="no PAD distinct"):
    batching.Batcher(SHAPE, NoPad())


def test_encoder_whose_pad_is_not_0_is_rejected_naming_the_file(tmp_path):
  hf = pytest.importorskip("tokenizers")
  words = ["<s>", "<pad>", "</s>", "<unk>", "mary", "went"]  # RoBERTa's order: <pad> is 1
  tok = hf.Tokenizer(hf.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
  path = str(tmp_path / "tokenizer.json")
  tok.save(path)
  roberta = tokenizers.from_spec(path)
  with pytest.raises(ValueError, match=rf"{path} pads with id 1.*id 0"):
    batching.Batcher(SHAPE, roberta)
  batching.Batcher(SHAPE, BYTE, roberta)  # as the decoder's tokenizer its padding is masked


def test_split_long_lines_moves_support_and_fits():
  ex = Example(("A fact.", "word " * 30 + "x" * 25, "Mary went to the garden.", "Ü" * 20),
               "Where is Mary?", "garden", (2, 0), "qa1", 4)
  split = lines.split_long_lines(ex, 30)
  assert all(len(line.encode()) <= 30 for line in split.context)
  assert " ".join(split.context[1:-3]) == ex.context[1].strip()
  assert split.context[split.support[0]] == ex.context[2] and split.support[1] == 0
  assert "".join(split.context[-2:]) == "Ü" * 20
  assert lines.split_long_lines(ex, 1000) is ex
  with pytest.raises(ValueError, match=r"Supporting line 2 of example qa1\[4\]"):
    lines.split_long_lines(ex, 10)


def test_training_and_inference_build_the_same_prompt_without_a_lone_space(tmp_path):
  cfg = babi.get_config("qa2,tiny")
  cfg.data.decoder_tokenizer = str(tmp_path)
  gpt2 = data_fixtures.gpt2_style_tokenizer(tmp_path)
  ex = data_fixtures.QA2_STORY
  train_batch = input_lib.make_batcher(cfg.data)([ex])
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}), jax.devices()[:1])
  reasoner = inference.Reasoner(None, cfg, mesh, step=0, directory=str(tmp_path))
  # The Reasoner's own path from a question to a batch, as answer() takes it.
  examples, _ = reasoner._examples([ex.context], [ex.question], ("c", "q"))
  infer_batch = reasoner._batcher(examples)
  prompt_len = train_batch["prompt_len_B"][0]
  assert infer_batch["prompt_len_B"][0] == prompt_len
  prompt = train_batch["answer_BxA"][0, :prompt_len].tolist()
  assert infer_batch["answer_BxA"][0, :prompt_len].tolist() == prompt
  assert prompt[1:] == gpt2.encode(ex.question) and prompt[-1] != gpt2.encode(" ")[0]
  # The answer is tokenized as GPT-2 tokenizes it in running text: " hallway".
  predicted = train_batch["answer_BxA"][0][train_batch["answer_mask_BxA"][0]].tolist()
  assert predicted == gpt2.encode(" " + ex.answer) + [gpt2.eos_id]
  assert batching.answer_text(gpt2, predicted) == ex.answer


def test_packed_bucket_sizes():
  assert [batching.packed_bucket(n) for n in (1, 8, 9, 15, 17, 33, 100, 1537)] == [
      8, 8, 9, 15, 18, 36, 104, 1664]


def test_token_widths_follow_the_batch_and_packed_rows_list_each_parts_real_lines():
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40, supports=2,
                              line_buckets=(4, 8, 16), token_multiple=8, pack_lines=True)
  batcher = batching.Batcher(shape, BYTE)
  examples = data_fixtures.qa1_examples(6, max_lines=5)  # 1, 2, 3, 4, 5, 1 lines
  sizes = batcher.sizes(examples)
  longest = max(len(line) for ex in examples for line in ex.context) + 2
  assert sizes[:, 0].tolist() == [1, 2, 3, 4, 5, 1]
  assert sizes[:, 1].max() == longest
  assert sizes[0, 2] == len(examples[0].question) + 2
  assert sizes[0, 3] == len(examples[0].question + " " + examples[0].answer) + 2
  assert (sizes[:, 4] == 0).all()  # no baseline sequence
  layout = batcher.layout(sizes, shards=3)  # parts of 2 examples: 3, 7 and 6 real lines
  up8 = lambda n: -(-int(n) // 8) * 8
  assert layout == batching.Layout(lines=8, line_tokens=up8(longest),
                                   query_tokens=up8(sizes[:, 2].max()),
                                   answer_tokens=up8(sizes[:, 3].max()), packed_lines=8)
  batch = batcher(examples, layout, shards=3)
  assert batch["context_BxExT"].shape == (6, 8, layout.line_tokens)
  rows_SxM = batch["line_rows_SxM"]
  assert rows_SxM.shape == (3, 8) and rows_SxM.dtype == np.int32
  lines_SxRxT = batch["context_BxExT"].reshape(3, 16, -1)
  for s in range(3):
    used = rows_SxM[s][rows_SxM[s] < 16]
    assert (rows_SxM[s][len(used):] == 16).all()  # unused slots point past the part
    assert used.tolist() == np.flatnonzero(batch["line_mask_BxE"].reshape(3, 16)[s]).tolist()
    texts = [_text(lines_SxRxT[s, r]) for r in used]
    assert texts == [line for ex in examples[2 * s:2 * s + 2] for line in ex.context]
  # The same batch with the configured widths differs only in padding.
  plain = batching.Batcher(SHAPE, BYTE)(examples, batching.Layout(8, 40, 24, 40))
  np.testing.assert_array_equal(plain["context_BxExT"][..., :layout.line_tokens],
                                batch["context_BxExT"])
  assert (plain["context_BxExT"][..., layout.line_tokens:] == BYTE.pad_id).all()
  np.testing.assert_array_equal(plain["answer_BxA"][:, :layout.answer_tokens], batch["answer_BxA"])


class _CountingBytes(tokenizers.ByteTokenizer):
  """Bytes, counting the tokenizer calls."""

  calls = 0

  def encode_ragged(self, texts):
    self.calls += 1
    return super().encode_ragged(texts)


def test_a_batch_without_a_given_layout_tokenizes_each_text_once():
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40, supports=2,
                              line_buckets=(4, 8, 16), token_multiple=8, pack_lines=True)
  tok = _CountingBytes()
  batcher = batching.Batcher(shape, tok)
  examples = data_fixtures.qa1_examples(6, max_lines=5)
  batch = batcher(examples, shards=3)
  assert tok.calls == 4  # lines, questions, prompts, answers
  given = batcher(examples, batcher.layout(batcher.sizes(examples), 3), shards=3)
  assert batch.keys() == given.keys()
  for key, value in given.items():
    np.testing.assert_array_equal(batch[key], value, err_msg=key)


def test_packing_errors_name_the_part_and_the_split():
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40, supports=2,
                              line_buckets=(4, 8, 16), pack_lines=True)
  batcher = batching.Batcher(shape, BYTE)
  examples = data_fixtures.qa1_examples(6, max_lines=5)
  with pytest.raises(ValueError, match="does not split into 4 equal parts"):
    batcher.layout(batcher.sizes(examples), shards=4)
  with pytest.raises(ValueError, match="Part 1 of the batch has 7 real lines, more than the "
                     "layout's 6 packed slots"):
    batcher(examples, batching.Layout(8, 40, 24, 40, packed_lines=6), shards=3)
  with pytest.raises(ValueError, match="token_multiple must be >= 0"):
    batching.BatchShape(40, 24, 40, token_multiple=-1)
  with pytest.raises(ValueError, match="sequence_multiple must be >= 0"):
    batching.BatchShape(40, 24, 40, sequence_multiple=-1)


def test_read_words_hold_each_lines_words_and_each_questions_and_answers():
  examples = [data_fixtures.qa1_examples(3)[2], data_fixtures.QA2_STORY]
  assert "line_words_BxExW" not in batching.Batcher(SHAPE, BYTE)(examples)
  batch = batching.Batcher(SHAPE, BYTE, read_words=True)(examples)
  num_lines = batch["line_mask_BxE"].shape[1]
  assert batch["line_words_BxExW"].shape == (2, num_lines, SHAPE.line_tokens - 2)
  assert batch["read_words_BxK"].shape == (2, batching.READ_WORDS)
  for b, ex in enumerate(examples):
    wanted = {w for w in re.findall(r"\w+", ex.question.lower())} - batching._FUNCTION_WORDS
    wanted |= set(ex.answer.lower().split())
    got = batch["read_words_BxK"][b]
    assert sorted(got[got != 0]) == sorted(batching.word_ids(sorted(wanted)))
    for e in range(num_lines):
      line = ex.context[e].lower() if e < len(ex.context) else ""
      ids = batch["line_words_BxExW"][b, e]
      assert sorted(ids[ids != 0]) == sorted(batching.word_ids(sorted(set(
          re.findall(r"\w+", line))))), (b, e)
  # Stable across processes (not Python's salted hash) and never the padding id.
  assert batching.word_ids(["kitchen"]).tolist() == batching.word_ids(["kitchen"]).tolist()
  assert (batching.word_ids(["a", "mary", "0"]) > 0).all()


def test_read_words_refuse_a_question_with_more_words_than_a_batch_keeps():
  letters = " ".join("bcdefghijklmnopqrstuvwxyz"[:batching.READ_WORDS + 1])
  ex = Example(context=("Mary went home.",), question="Who?", answer=letters, support=(0,),
               task="qa1", index=7)
  with pytest.raises(ValueError, match=rf"qa1\[7\].*hold {batching.READ_WORDS + 1} words, "
                     rf"more than the {batching.READ_WORDS}"):
    batching.Batcher(SHAPE, BYTE, read_words=True)([ex])
  cfg = losses.loss_config()
  cfg.foreign_negatives = True
  assert not losses.uses_read_words(cfg)  # no read loss: nothing to weigh
  cfg.answer_read_weight = 1.0
  assert losses.uses_read_words(cfg)
  assert input_lib.make_batcher(babi.get_config("qa1,tiny").data, read_words=True).read_words
