"""Haystacks: facts kept verbatim and in order, lengths on target, support follows the facts."""

import random
import time

import pytest

from memreasoner_jax.tasks import distractors, haystack, lengths
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks.reference_data import shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not present")

EXAMPLE = Example(
    context=("Mary moved to the bathroom.", "John got the milk there.", "Mary went to the office.",
             "John went back to the garden.", "Sandra travelled to the kitchen."),
    question="Where is the milk?", answer="garden", support=(1, 3), task="qa2", index=0)


def _check(example: Example, hay: Example, length: str):
  # Every fact, verbatim and in order, at the support positions.
  facts = [i for i, line in enumerate(hay.context) if line in example.context]
  assert [hay.context[i] for i in facts] == list(example.context)
  assert [hay.context[i] for i in hay.support] == [example.context[i] for i in example.support]
  assert hay.support == tuple(facts[i] for i in example.support)
  assert (hay.question, hay.answer) == (example.question, example.answer)
  # Tolerance: the cut last filler line may leave at most 5 tokens of the budget unused.
  budget = lengths.context_budget(length)
  total = lengths.context_tokens(hay.context)
  assert budget - 5 <= total <= budget, (total, budget)
  assert all(len(line) <= haystack.MAX_LINE_CHARS for line in hay.context)


@pytest.mark.parametrize("length", ["1k", "4k", "16k"])
def test_builtin_haystack(length):
  hay = haystack.make_haystack(EXAMPLE, length, distractors.get_source("builtin"),
                               random.Random(length))
  _check(EXAMPLE, hay, length)


def test_zero_k_is_facts_only_and_same_seed_same_bytes():
  source = distractors.get_source("builtin")
  assert haystack.make_haystack(EXAMPLE, "0k", source, random.Random(0)) == EXAMPLE
  a = haystack.make_haystack(EXAMPLE, "2k", source, random.Random(7))
  assert a == haystack.make_haystack(EXAMPLE, "2k", source, random.Random(7))
  assert a != haystack.make_haystack(EXAMPLE, "2k", source, random.Random(8))


def test_facts_sharing_a_gap_keep_their_order():
  hay = haystack.insert_facts(EXAMPLE, ["f1.", "f2."], random.Random(3))
  assert len(hay.context) == 7
  assert [l for l in hay.context if not l.startswith("f")] == list(EXAMPLE.context)


def test_exact_tokenizer_count():
  count = lengths.tokenizer_counter(_WordTokenizer())
  hay = haystack.make_haystack(EXAMPLE, "1k", distractors.get_source("builtin"),
                               random.Random(0), count=count)
  assert 690 <= lengths.context_tokens(hay.context, count) <= 700


class _WordTokenizer:
  def encode(self, text):
    return text.split()


def test_hugging_face_tokenizer_file(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "the": 1}, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(tmp_path / "tokenizer.json"))
  count = lengths.tokenizer_counter(tmp_path / "tokenizer.json")
  assert count("Mary moved to the bathroom.") == 6


def test_training_filler_uses_another_source():
  train_source = distractors.get_source("builtin:train")
  out = haystack.add_filler(EXAMPLE, 12, train_source, random.Random(0))
  assert len(out.context) >= len(EXAMPLE.context) + 12
  assert [out.context[i] for i in out.support] == ["John got the milk there.",
                                                   "John went back to the garden."]
  assert not any("sailor" in line for line in out.context)  # a test-half word


def test_128k_is_affordable():
  start = time.perf_counter()
  hay = haystack.make_haystack(EXAMPLE, "128k", distractors.get_source("builtin"),
                               random.Random(0))
  _check(EXAMPLE, hay, "128k")
  assert time.perf_counter() - start < 5


def test_length_and_source_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown length '3x'"):
    lengths.context_budget("3x")
  with pytest.raises(FileNotFoundError, match="no text files"):
    distractors.get_source(str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match="pg19 is not built"):
    distractors.tfds_pg19(data_dir=str(tmp_path))


@needs_data
@pytest.mark.parametrize("length", ["4k", "128k"])
def test_book_haystack(length):
  source = distractors.get_source(str(DATA / "books"))
  hay = haystack.make_haystack(EXAMPLE, length, source, random.Random(1))
  _check(EXAMPLE, hay, length)
  filler = [l for l in hay.context if l not in EXAMPLE.context]
  assert all(lengths.estimate_tokens(l) >= 1 for l in filler)
  # Unwrapped filler sentences meet BABILong's minimum length (10 tokens).
  assert sum(lengths.estimate_tokens(l) < haystack.MIN_SENTENCE_TOKENS for l in filler) < 0.05 * len(filler)


@needs_data
def test_book_glob_and_single_file():
  one = distractors.get_source(str(DATA / "books" / "carroll-alice.txt"))
  hay = haystack.make_haystack(EXAMPLE, "2k", one, random.Random(0))
  _check(EXAMPLE, hay, "2k")
  assert len(distractors.text_files(str(DATA / "books" / "austen-*.txt"))) == 2
