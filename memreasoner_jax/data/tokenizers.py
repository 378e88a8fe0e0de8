"""Tokenizers behind one interface: bytes by default, Hugging Face files for pretrained models.

Every tokenizer plays the same four roles (PAD, BOS, EOS, UNK) so batching never needs to know
which one it holds. `encode` returns the text's tokens without special tokens; the batcher adds
BOS/EOS itself. `spec` is the string `from_spec` rebuilds the tokenizer from, stored in
checkpoints so a restored model reads text exactly as it was trained to; `digest` names what the
tokenizer is wherever its files lie, so a moved run is still recognised.
"""

import abc
import hashlib
import json
import os

import numpy as np

from memreasoner_jax.data import special_tokens


class Tokenizer(abc.ABC):
  """Text <-> token ids, with PAD/BOS/EOS roles the batch contract relies on."""

  pad_id: int
  bos_id: int
  eos_id: int
  unk_id: int
  # Whether a space is part of the next word's token (GPT-2's " hallway"), not a token of its own.
  space_joins_next_word: bool = False

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Size of the embedding table this tokenizer needs (every id is below it)."""

  @property
  @abc.abstractmethod
  def spec(self) -> str:
    """The string `from_spec` rebuilds this tokenizer from; recorded in checkpoints."""

  @property
  @abc.abstractmethod
  def digest(self) -> str:
    """What this tokenizer is, independent of where its files are (checkpoints compare it)."""

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS."""

  @abc.abstractmethod
  def _decode_ids(self, ids: list[int]) -> str:
    """Text of ids that are all non-special."""

  def encode_ragged(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Encodes many texts at once as (ids_N int32 concatenated, lengths int64 per text).

    The flat form lets batching scatter all tokens of a batch with one numpy assignment.
    """
    encoded = [self.encode(text) for text in texts]
    lengths = np.fromiter((len(ids) for ids in encoded), np.int64, len(encoded))
    flat = np.fromiter((i for ids in encoded for i in ids), np.int32, int(lengths.sum()))
    return flat, lengths

  def decode(self, ids) -> str:
    """Text of generated ids (or an answer's) up to their first EOS, special tokens skipped.

    Nothing is dropped before looking for EOS: with GPT-2 BOS is the same token, and a
    generated answer that starts with it is the empty answer.
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    special = {self.pad_id, self.bos_id, self.eos_id}
    return self._decode_ids([i for i in ids if i not in special])

  def decode_sequence(self, ids) -> str:
    """Text of a batch row that starts with BOS ([BOS] + text + [EOS] + PAD)."""
    ids = np.asarray(ids).reshape(-1)
    return self.decode(ids[1:] if ids.size and ids[0] == self.bos_id else ids)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.spec!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
  """UTF-8 bytes shifted past four special ids: needs no files and spells any word.

  Byte b is token b + 4, so PAD=0, BOS=1, EOS=2, UNK=3 and the vocabulary has 260 entries.
  Words never seen in training (the answer-renamed tests) are still spelled exactly.
  """

  pad_id, bos_id, eos_id, unk_id = special_tokens.PAD_ID, special_tokens.BOS_ID, special_tokens.EOS_ID, special_tokens.UNK_ID
  _OFFSET = 4

  @property
  def vocab_size(self) -> int:
    return 256 + self._OFFSET

  @property
  def spec(self) -> str:
    return "byte"

  @property
  def digest(self) -> str:
    return "byte"

  def encode(self, text: str) -> list[int]:
    return [b + self._OFFSET for b in text.encode("utf-8")]

  def encode_ragged(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [text.encode("utf-8") for text in texts]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    flat = np.frombuffer(b"".join(encoded), np.uint8).astype(np.int32) + self._OFFSET
    return flat, lengths

  def _decode_ids(self, ids: list[int]) -> str:
    data = bytes(i - self._OFFSET for i in ids if self._OFFSET <= i < self.vocab_size)
    return data.decode("utf-8", errors="replace")


# Special-token names per role, in order of preference; BERT's first, then GPT-2/RoBERTa/T5-style.
_ROLE_NAMES = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "bos": ("[CLS]", "<s>", "<|startoftext|>", "<|endoftext|>", "<bos>"),
    "eos": ("[SEP]", "</s>", "<|endoftext|>", "<eos>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
}


class HFTokenizer(Tokenizer):
  """A Hugging Face `tokenizers` tokenizer with its special tokens mapped onto our roles.

  BERT: [CLS] is BOS, [SEP] EOS, [PAD] PAD. GPT-2 has only <|endoftext|>, which then plays BOS,
  EOS and PAD (as GPT-2 itself does); such a tokenizer can serve the decoder, whose padding is
  given by masks, but not the encoder, whose padding is found by id (batching checks this).
  Padding and truncation stored in tokenizer.json are switched off: nothing is cut silently.
  """

  def __init__(self, path: str):
    import tokenizers  # pylint: disable=g-import-not-at-top  (optional dependency)
    self._path = os.path.abspath(path)
    self._tok = _load_hf(self._path, tokenizers)
    self._tok.no_padding()
    self._tok.no_truncation()
    # vocab.txt / vocab.json carry special tokens as plain entries: mark them special so text
    # never splits them and decoding skips them (tokenizer.json already does this).
    vocab = self._tok.get_vocab(with_added_tokens=True)
    self._tok.add_special_tokens(
        sorted({n for names in _ROLE_NAMES.values() for n in names if n in vocab}))
    roles = {role: _find_role(self._tok, names) for role, names in _ROLE_NAMES.items()}
    missing = [role for role in ("bos", "eos") if roles[role] is None]
    if missing:
      raise ValueError(
          f"Tokenizer {self._path}: no special token for role(s) {missing}; looked for "
          + ", ".join(f"{r}: {_ROLE_NAMES[r]}" for r in missing))
    self.bos_id, self.eos_id = roles["bos"], roles["eos"]
    self.pad_id = roles["pad"] if roles["pad"] is not None else self.eos_id
    self.unk_id = roles["unk"] if roles["unk"] is not None else self.eos_id
    self.space_joins_next_word = _space_joins_next_word(self._tok.pre_tokenizer)

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def spec(self) -> str:
    return self._path

  @property
  def digest(self) -> str:
    # The serialised tokenizer (vocabulary, merges, normalizer, special tokens) holds no path.
    return "sha256:" + hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_ragged(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    # encode_batch runs in Rust threads; the Python loop only gathers id lists.
    encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter((i for seq in ids for i in seq), np.int32, int(lengths.sum()))
    return flat, lengths

  def _decode_ids(self, ids: list[int]) -> str:
    return self._tok.decode(ids, skip_special_tokens=True)


def _load_hf(path: str, tokenizers):
  """Loads tokenizer.json, or BERT vocab.txt, or GPT-2 vocab.json + merges.txt, from a path."""
  if os.path.isfile(path):
    if path.endswith(".json"):
      return tokenizers.Tokenizer.from_file(path)
    if path.endswith(".txt"):
      return _bert_from_vocab(path, tokenizers)
    raise ValueError(f"Tokenizer file {path}: expected tokenizer.json or vocab.txt")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"Tokenizer path {path} does not exist")
  files = set(os.listdir(path))
  if "tokenizer.json" in files:
    return tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
  if "vocab.txt" in files:
    return _bert_from_vocab(os.path.join(path, "vocab.txt"), tokenizers)
  if {"vocab.json", "merges.txt"} <= files:
    return _gpt2_from_files(
        os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"), tokenizers)
  raise FileNotFoundError(
      f"Tokenizer directory {path} holds none of tokenizer.json, vocab.txt, "
      "vocab.json + merges.txt")


def _bert_from_vocab(vocab_path: str, tokenizers):
  """A BERT WordPiece tokenizer from vocab.txt, lower-casing as tokenizer_config.json says."""
  config_path = os.path.join(os.path.dirname(vocab_path), "tokenizer_config.json")
  lowercase = True
  if os.path.exists(config_path):
    with open(config_path, encoding="utf-8") as f:
      lowercase = json.load(f).get("do_lower_case", True)
  tok = tokenizers.Tokenizer(tokenizers.models.WordPiece.from_file(vocab_path, unk_token="[UNK]"))
  tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lowercase)
  tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
  tok.decoder = tokenizers.decoders.WordPiece()
  return tok


def _gpt2_from_files(vocab_path: str, merges_path: str, tokenizers):
  """A GPT-2 byte-level BPE tokenizer from vocab.json + merges.txt."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(vocab_path, merges_path))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  return tok


def _space_joins_next_word(pre_tokenizer) -> bool:
  """Whether pre-tokenization keeps a space with the word after it (byte-level BPE's "Ġb",
  SentencePiece's "▁b"), rather than dropping it (BERT) or leaving it alone."""
  if pre_tokenizer is None:
    return False
  pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str("a b")]
  return len(pieces) == 2 and pieces[1] != "b"


def _find_role(tok, names: tuple[str, ...]) -> int | None:
  for name in names:
    token_id = tok.token_to_id(name)
    if token_id is not None:
      return token_id
  return None


def from_spec(spec: str) -> Tokenizer:
  """Builds a tokenizer from "byte", or a path to tokenizer.json / vocab.txt / a directory."""
  if spec == "byte":
    return ByteTokenizer()
  if spec.startswith("hf:"):
    spec = spec[len("hf:"):]
  if not os.path.exists(spec):
    raise ValueError(
        f"Unknown tokenizer spec {spec!r}: use 'byte' or a path to a tokenizer.json, a BERT "
        "vocab.txt, or a directory holding one of them (or GPT-2 vocab.json + merges.txt)")
  return HFTokenizer(spec)
