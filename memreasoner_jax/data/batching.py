"""Examples -> the batch dict the model consumes (numpy arrays, fixed shapes, a few E buckets).

Keys and shapes (B batch, E lines, T tokens per line, Q query tokens, A answer tokens, S supports):
  context_BxExT    int32  each line as [BOS] + tokens + [EOS], PAD-padded; padding lines all PAD
  recon_BxExT      int32  only when the decoder's tokenizer differs: the lines in its ids
  recon_mask_BxExT bool   with recon_BxExT: True at its tokens after BOS, EOS included
  line_mask_BxE    bool   True for real lines
  query_BxQ        int32  [BOS] + question + [EOS], PAD-padded
  answer_BxA       int32  [BOS] + prompt + answer + [EOS] + PAD, the question and answer split
                          at their separating space as `split_at_space` says
  answer_mask_BxA  bool   True at answer tokens and the final EOS (the positions to predict)
  prompt_len_B     int32  BOS + prompt tokens (generation starts after them)
  line_rows_SxM    int32  only with `BatchShape.pack_lines`: the batch split into S equal parts
                          (one per device), each part's real lines as row indices of its
                          (B/S)*E lines, in order, padded with (B/S)*E (no line); the encoder
                          reads only these M lines per part
  support_BxS      int32  supporting line indices in hop order, -1 padded
  answer_lines_BxE bool   True for lines that hold a word of the answer (no label needed)
  question_lines_BxE bool True for lines that hold a word of the question, function words aside
  line_words_BxExW int32  only with `Batcher(read_words=True)`: each line's distinct words as
                          `word_ids` (W = T - 2, the most words a line of T tokens holds), 0 padded
  read_words_BxK   int32  with line_words_BxExW: the words of each example's question (function
                          words aside) and answer as `word_ids` (K = READ_WORDS), 0 padded
  sf_weight_B      float32 1 for examples in the supporting-fact supervised subset
  example_weight_B float32 1 for real examples, 0 for batch padding
Training batches of `Batcher.pack_lines` (`data.device_padding`) hold instead of context_BxExT
(and recon_*) what the train step pads on the device (data/device_padding.py):
  context_ids_BxN     uint16 each example's lines back to back, [BOS] + tokens + [EOS] each,
                      PAD after (int32 for a vocabulary over 65,536 ids); N holds the global
                      batch's longest context and one padding column more
  context_lengths_BxE int32  each line's tokens, BOS and EOS included; 0 for padding lines
  recon_ids_BxN, recon_lengths_BxE  the same in the decoder's ids, when it has its own
  line_tokens         int32 scalar, T: a static argument of the jitted step
With `BatchShape.sequence_tokens` > 0 (the full-attention baseline's input, L tokens) also:
  sequence_BxL            int32  [BOS] + lines joined by newlines + newline + question + " " +
                                 answer + [EOS] + PAD: the whole context as one decoder
                                 sequence, split before the answer like answer_BxA
  sequence_mask_BxL       bool   True at the answer tokens and the final EOS
  sequence_prompt_len_B   int32  BOS + context + prompt tokens (generation starts after them)
Lines and query use the encoder tokenizer, the answer sequence the decoder tokenizer (they may
differ, e.g. BERT WordPiece and GPT-2 BPE as in Larimar). Nothing is truncated: a text that does
not fit its slot is an error naming the example and the line.

A `Layout` fixes one batch's E, T, Q, A, M and L. By default T, Q, A and L are the configured
widths; with `BatchShape.token_multiple` each batch takes the smallest multiple of it that holds
its longest line, question and answer sequence, and with `BatchShape.sequence_multiple` the same
for L and its longest sequence. Hosts of one global step agree on the layout by
computing it from the whole global batch's `sizes` (known without reading the other hosts'
records).
"""

from collections.abc import Callable, Sequence
import dataclasses
import re
import zlib

import numpy as np

from memreasoner_jax.data import special_tokens
from memreasoner_jax.data import tokenizers as tokenizers_lib
from memreasoner_jax.tasks.example import Example

Batch = dict[str, np.ndarray]
# The one scalar of a batch whose lines are padded on the device: T, which the jitted train step
# takes as a static argument (every other array is split over the devices by its first axis).
LINE_TOKENS = "line_tokens"
# What `Batcher.ragged` holds in place of the padded line tokens (X: all tokens of the batch's
# real lines, R: its real lines): `Batcher.pad_lines` turns them into context_BxExT and, when
# there, recon_BxExT and recon_mask_BxExT; `Batcher.pack_lines` into the per-example rows that
# the train step pads on the device (`device_padding.pad_lines`).
RAGGED_KEYS = ("context_ids_X", "context_lengths_R", "recon_ids_X", "recon_lengths_R",
               LINE_TOKENS, "context_tokens")


_WORD = re.compile(r"\w+")


# Words a question shares with lines that say nothing about what it asks.
_FUNCTION_WORDS = frozenset(
    "a above all an and are at be before by did do does find for how in is it many of on or "
    "text that the there this to was were what where which who with".split())


def _words(text: str) -> set[str]:
  return set(_WORD.findall(text.lower()))


def _is_word_char(char: str) -> bool:
  """What `\\w` matches in a str pattern: a letter, digit or numeral, or the underscore."""
  return char.isalnum() or char == "_"


def _lines_with_words(examples: Sequence[Example], num_lines: int,
                      *words_of: Callable[[Example], set[str]]) -> list[np.ndarray]:
  """For each of `words_of`, whether each line (B x E) holds one of `words_of(example)`
  (whole words, case folded).

  Each word is found by `str.find` in the example's whole lowered context and kept where no
  word character touches it, so the result is that of comparing each line's `_WORD` tokens
  with the words, at a fraction of the cost of scanning thousands of haystack lines one by one
  in Python (measured in BUILD_NOTES.md). The context is lowered once for all of `words_of`.
  """
  outs_BxE = [np.zeros((len(examples), num_lines), bool) for _ in words_of]
  for b, ex in enumerate(examples):
    # A question being answered (no answer yet) is not trained on: its lines need no scan.
    word_sets = [words(ex) if ex.answer else set() for words in words_of]
    if not any(word_sets):
      continue
    # Lowered line by line: lower() may change a line's length, and the starts must be those
    # of the lowered text.
    lowered = [line.lower() for line in ex.context]
    starts = np.cumsum([0] + [len(line) + 1 for line in lowered[:-1]])
    text = "\n".join(lowered)
    for out_BxE, words in zip(outs_BxE, word_sets):
      hits = []
      for word in words:
        at = text.find(word)
        while at >= 0:
          end = at + len(word)
          if ((at == 0 or not _is_word_char(text[at - 1]))
              and (end == len(text) or not _is_word_char(text[end]))):
            hits.append(at)
          at = text.find(word, at + 1)
      out_BxE[b, np.searchsorted(starts, hits, side="right") - 1] = True
  return outs_BxE


def _answer_words(example: Example) -> set[str]:
  return _words(example.answer)


def _question_words(example: Example) -> set[str]:
  return _words(example.question) - _FUNCTION_WORDS


# K of read_words_BxK: a question's words other than function words and its answer's words.
READ_WORDS = 16


def word_ids(words: Sequence[str]) -> np.ndarray:
  """A stable positive int32 per (lowered) word; 0 is left for padding. Words are compared by
  these ids inside the loss, across every example of a global batch, which no host holds whole."""
  return np.array([zlib.crc32(w.encode()) % 0x7FFFFFFF + 1 for w in words], np.int32)


def read_words(examples: Sequence[Example], num_lines: int,
               width: int) -> tuple[np.ndarray, np.ndarray]:
  """(line_words_BxExW, read_words_BxK) of `examples`: what tells a line of one example that
  holds a word of another example's question or answer (losses: `foreign_negatives`)."""
  line_words_BxExW = np.zeros((len(examples), num_lines, width), np.int32)
  read_words_BxK = np.zeros((len(examples), READ_WORDS), np.int32)
  for b, ex in enumerate(examples):
    words = sorted(_question_words(ex) | _answer_words(ex))
    if len(words) > READ_WORDS:
      raise ValueError(f"Example {example_name(ex)}: its question and answer hold "
                       f"{len(words)} words, more than the {READ_WORDS} a batch keeps: {words}")
    read_words_BxK[b, :len(words)] = word_ids(words)
    for e, line in enumerate(ex.context):
      ids = word_ids(sorted(_words(line)))
      if len(ids) > width:
        raise ValueError(f"Example {example_name(ex)} line {e} holds {len(ids)} words, more "
                         f"than the {width} a line of its tokens can: {line[:80]!r}")
      line_words_BxExW[b, e, :len(ids)] = ids
  return line_words_BxExW, read_words_BxK


def answer_lines(examples: Sequence[Example], num_lines: int) -> np.ndarray:
  """answer_lines_BxE: whether each line holds a word of its example's answer (case folded).

  Derived from the answer alone, so it is known for every example; the lines that state the
  answer are among them, with any other line that mentions the same word.
  """
  return _lines_with_words(examples, num_lines, _answer_words)[0]


def question_lines(examples: Sequence[Example], num_lines: int) -> np.ndarray:
  """question_lines_BxE: whether each line holds a word of its example's question other than
  a function word ("Where is the football?": the lines that name the football; "Where is
  Mary?": Mary's). Derived from the question alone, like `answer_lines`."""
  return _lines_with_words(examples, num_lines, _question_words)[0]


def line_buckets(base: int, max_lines: int) -> tuple[int, ...]:
  """Powers of two times `base`, up to the first that holds `max_lines`: few shapes to compile."""
  if base < 1 or max_lines < 1:
    raise ValueError(f"line_buckets needs base >= 1 and max_lines >= 1, got {base}, {max_lines}")
  buckets = [base]
  while buckets[-1] < max_lines:
    buckets.append(buckets[-1] * 2)
  return tuple(buckets)


def bucket_for(num_lines: int, buckets: Sequence[int]) -> int:
  """The smallest bucket holding `num_lines` lines; an error past the largest."""
  for bucket in buckets:
    if num_lines <= bucket:
      return bucket
  raise ValueError(
      f"A context of {num_lines} lines exceeds the largest line bucket {max(buckets)}; raise "
      "max_lines (or split the context) rather than truncate it")


def sf_selected(index_B: np.ndarray, sf_fraction: float) -> np.ndarray:
  """Whether each example index is in the supporting-fact supervised subset.

  A fixed hash of the index (splitmix64) mapped to [0, 1) is compared with `sf_fraction`, so the
  subset is the same every epoch and nested: the 1% subset lies inside the 10% subset.
  """
  if not 0.0 <= sf_fraction <= 1.0:
    raise ValueError(f"sf_fraction must be in [0, 1], got {sf_fraction}")
  z = np.asarray(index_B, np.int64).astype(np.uint64)
  with np.errstate(over="ignore"):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
  u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
  return u < sf_fraction


def packed_bucket(count: int) -> int:
  """Slots for `count` packed lines: 8, 9, ..., 16, 18, ..., 32, 36, ... (eight sizes per
  doubling: at most an eighth padding, and few shapes to compile)."""
  size = 8
  while True:
    for eighth in range(8, 16):
      if size * eighth // 8 >= count:
        return size * eighth // 8
    size *= 2


def _round_up(count: int, multiple: int) -> int:
  return -(-count // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Layout:
  """The shapes of one batch; every host of a global step builds the same."""

  lines: int  # E
  line_tokens: int  # T
  query_tokens: int  # Q
  answer_tokens: int  # A
  packed_lines: int = 0  # M: real-line slots per part (0: the encoder reads all B x E lines)
  sequence_tokens: int = 0  # L (0: no sequence_BxL)
  # N of context_ids_BxN, the lines padded on the device (0: padded here, context_BxExT).
  context_tokens: int = 0


# Columns of `Batcher.sizes`: what each example needs of the layout. context_tokens (every line
# with its BOS and EOS, back to back) is counted only by tokenizing (0 where it was not).
SIZE_COLUMNS = ("lines", "line_tokens", "query_tokens", "answer_tokens", "sequence_tokens",
                "context_tokens")


@dataclasses.dataclass(frozen=True)
class BatchShape:
  """Token and support slot sizes fixed by the config; E comes from `line_buckets`."""

  line_tokens: int  # T: BOS + line + EOS must fit.
  query_tokens: int  # Q: BOS + question + EOS must fit.
  answer_tokens: int  # A: BOS + question + " " + answer + EOS must fit.
  supports: int = 2  # S: supporting facts per example (hops supervised).
  line_buckets: tuple[int, ...] = line_buckets(16, 1024)  # allowed E values, ascending.
  sequence_tokens: int = 0  # L of `sequence_BxL` (the baseline's input); 0 builds none.
  # 0: T, Q and A are the widths above; k: each batch's are the smallest multiples of k that
  # hold its longest line, question and answer sequence (at most the widths above).
  token_multiple: int = 0
  # The same for L alone (0: L is sequence_tokens): the baseline's sequence is its largest
  # array, and a batch's longest story is often half the longest of all.
  sequence_multiple: int = 0
  pack_lines: bool = False  # line_rows_SxM: the encoder reads real lines only

  def __post_init__(self):
    for name in ("line_tokens", "query_tokens", "answer_tokens"):
      if getattr(self, name) < 3:
        raise ValueError(f"BatchShape.{name} must be >= 3 (BOS, a token, EOS)")
    if self.supports < 1:
      raise ValueError("BatchShape.supports must be >= 1")
    if list(self.line_buckets) != sorted(set(self.line_buckets)) or self.line_buckets[0] < 1:
      raise ValueError(f"BatchShape.line_buckets must be ascending positive: {self.line_buckets}")
    for name in ("token_multiple", "sequence_multiple"):
      if getattr(self, name) < 0:
        raise ValueError(f"BatchShape.{name} must be >= 0, got {getattr(self, name)}")

  @property
  def widths(self) -> tuple[int, int, int]:
    """The configured (T, Q, A)."""
    return self.line_tokens, self.query_tokens, self.answer_tokens


class Batcher:
  """Turns a list of Examples into one batch dict; holds the tokenizers and shapes."""

  def __init__(self, shape: BatchShape, encoder_tokenizer: tokenizers_lib.Tokenizer,
               decoder_tokenizer: tokenizers_lib.Tokenizer | None = None,
               sf_fraction: float = 0.0, read_targets: bool = True, read_words: bool = False):
    """`read_targets`: fill answer_lines_BxE and question_lines_BxE (all False otherwise). They
    are the read losses' only input, and finding the words in every line is most of a batch's
    cost (BUILD_NOTES.md), so training without those losses skips it. `read_words`: add
    line_words_BxExW and read_words_BxK (the read losses' `foreign_negatives`)."""
    enc = encoder_tokenizer
    if enc.pad_id in (enc.bos_id, enc.eos_id):
      raise ValueError(
          f"Encoder tokenizer {enc.spec} has no PAD distinct from BOS/EOS; the encoder finds "
          "padding by id, so use a tokenizer with its own pad token (e.g. BERT's [PAD])")
    if enc.pad_id != special_tokens.PAD_ID:
      # The encoder and the autoencoding loss find padding lines and tokens by this one id.
      raise ValueError(
          f"Encoder tokenizer {enc.spec} pads with id {enc.pad_id}, but the encoder finds padding "
          f"by id {special_tokens.PAD_ID}; use a tokenizer whose pad token has id "
          f"{special_tokens.PAD_ID} (e.g. BERT's [PAD])")
    sf_selected(np.zeros(1), sf_fraction)  # Validates the fraction now, not at the first batch.
    self.shape = shape
    self.encoder_tokenizer = enc
    self.decoder_tokenizer = decoder_tokenizer or enc
    self.sf_fraction = sf_fraction
    self.read_targets = read_targets
    self.read_words = read_words

  @property
  def fixed_widths(self) -> bool:
    """Whether every batch has the configured token widths (its sizes need no tokenizing)."""
    return not (self.shape.token_multiple or self.shape.sequence_multiple)

  def sizes(self, examples: Sequence[Example], tokenize: bool = False) -> np.ndarray:
    """Per example (rows) the layout it needs (SIZE_COLUMNS): its lines, and the tokens of its
    longest line, its question, its answer sequence, its baseline sequence (0 without one) and
    all its lines, BOS and EOS included. Without `token_multiple`, `sequence_multiple` or
    `tokenize` the token columns are the configured widths and context_tokens 0 (nothing is
    tokenized)."""
    if self.fixed_widths and not tokenize:
      return self.fixed_sizes([len(ex.context) for ex in examples])
    return self._encode(examples).sizes()

  def _encode(self, examples: Sequence[Example]) -> "_Encoded":
    """Every text of `examples` tokenized once (ragged), for `sizes` and the batch alike."""
    enc, dec = self.encoder_tokenizer, self.decoder_tokenizer
    all_lines = [line for ex in examples for line in ex.context]
    prompts, answers = zip(*(split_at_space(dec, ex.question, ex.answer) for ex in examples))
    sequence = None
    if self.shape.sequence_tokens:
      contexts, endings = zip(*(split_at_space(dec, context_prompt(ex), ex.answer)
                                for ex in examples))
      sequence = (dec.encode_ragged(list(contexts)), dec.encode_ragged(list(endings)))
    return _Encoded(
        lines_N=np.array([len(ex.context) for ex in examples], np.int64),
        context=enc.encode_ragged(all_lines),
        recon=dec.encode_ragged(all_lines) if dec.spec != enc.spec else None,
        query=enc.encode_ragged([ex.question for ex in examples]),
        prompt=dec.encode_ragged(list(prompts)), answer=dec.encode_ragged(list(answers)),
        sequence=sequence)

  def fixed_sizes(self, lines_N: np.ndarray) -> np.ndarray:
    """`sizes` with fixed widths: the line counts and the configured widths."""
    lines_N = np.asarray(lines_N, np.int64)
    widths = (*self.shape.widths, self.shape.sequence_tokens, 0)
    return np.column_stack([lines_N] + [np.full_like(lines_N, w) for w in widths])

  def layout(self, sizes_NxC: np.ndarray, shards: int = 1, num_lines: int | None = None,
             device_padding: bool = False) -> Layout:
    """The layout of a batch of examples with these `sizes` (C: SIZE_COLUMNS) split into
    `shards` equal parts (one per device); `num_lines` forces E; `device_padding` sizes N for
    `pack_lines` (the sizes must come from `sizes(..., tokenize=True)`)."""
    if num_lines is None:
      num_lines = bucket_for(int(sizes_NxC[:, 0].max()), self.shape.line_buckets)
    # Past a configured width the batch itself reports the text that does not fit.
    shrink = lambda width, need, multiple: min(width, _round_up(int(need), multiple))
    need_C = sizes_NxC.max(axis=0)
    widths = self.shape.widths
    if self.shape.token_multiple:
      widths = tuple(shrink(width, need, self.shape.token_multiple)
                     for width, need in zip(widths, need_C[1:4]))
    sequence = self.shape.sequence_tokens
    if sequence and self.shape.sequence_multiple:
      sequence = shrink(sequence, need_C[4], self.shape.sequence_multiple)
    packed = 0
    if self.shape.pack_lines:
      if len(sizes_NxC) % shards:
        raise ValueError(f"A batch of {len(sizes_NxC)} examples does not split into {shards} "
                         "equal parts for packing; make the batch a multiple of the devices")
      packed = packed_bucket(int(sizes_NxC[:, 0].reshape(shards, -1).sum(axis=1).max()))
    context = 0
    if device_padding:
      if not need_C[5]:
        raise ValueError("Padding lines on the device needs each example's context tokens: "
                         "sizes from Batcher.sizes(examples, tokenize=True)")
      # One column more than the longest context: the device reads padding from the last.
      context = packed_bucket(int(need_C[5]) + 1)
    return Layout(num_lines, *widths, packed, sequence, context)

  def __call__(self, examples: Sequence[Example], layout: Layout | None = None,
               example_weight_B: np.ndarray | None = None, shards: int = 1) -> Batch:
    """Builds the batch in `layout` (all hosts of a global batch must agree on it; default:
    this batch's own), packed lines in `shards` parts (this host's devices)."""
    return self.pad_lines(self.ragged(examples, layout, example_weight_B, shards))

  def ragged(self, examples: Sequence[Example], layout: Layout | None = None,
             example_weight_B: np.ndarray | None = None, shards: int = 1) -> Batch:
    """The batch with its line tokens, a batch's largest arrays, still ragged (RAGGED_KEYS):
    what a worker process hands the training process, which pads them (`pad_lines`). Every
    check runs here, where the texts are."""
    if not examples:
      raise ValueError("Cannot build a batch from no examples")
    encoded = self._encode(examples)
    if layout is None:
      layout = self.layout(self.fixed_sizes(encoded.lines_N) if self.fixed_widths else
                           encoded.sizes(), shards)
    batch_size = len(examples)
    num_lines = layout.lines
    lines_per_example = encoded.lines_N
    if lines_per_example.max() > num_lines:
      worst = examples[int(lines_per_example.argmax())]
      raise ValueError(f"Example {example_name(worst)} has {len(worst.context)} lines, over "
                       f"E={num_lines}")

    enc, dec = self.encoder_tokenizer, self.decoder_tokenizer
    all_lines = [line for ex in examples for line in ex.context]
    _check_fits(encoded.context[1], layout.line_tokens - 2, all_lines,
                lambda j: _line_name(examples, j))
    line_mask_BxE = np.arange(num_lines)[None, :] < lines_per_example[:, None]

    query_BxQ = self._pack(enc, encoded.query, [ex.question for ex in examples],
                           (batch_size, layout.query_tokens), np.arange(batch_size),
                           lambda b: f"question of example {example_name(examples[b])}")
    answer_BxA, answer_mask_BxA, prompt_len_B = self._answers(
        dec, examples, encoded.prompt, encoded.answer, layout.answer_tokens, "answer_tokens")

    if example_weight_B is None:
      example_weight_B = np.ones(batch_size, np.float32)
    index_B = np.array([ex.index for ex in examples], np.int64)
    if self.read_targets:
      answer_lines_BxE, question_lines_BxE = _lines_with_words(
          examples, num_lines, _answer_words, _question_words)
    else:
      answer_lines_BxE, question_lines_BxE = np.zeros((2, batch_size, num_lines), bool)
    batch = {
        "context_ids_X": encoded.context[0].astype(np.int32, copy=False),
        "context_lengths_R": encoded.context[1].astype(np.int32, copy=False),
        LINE_TOKENS: np.array(layout.line_tokens, np.int32),
        "context_tokens": np.array(layout.context_tokens, np.int32),
        "line_mask_BxE": line_mask_BxE,
        "query_BxQ": query_BxQ,
        "answer_BxA": answer_BxA,
        "answer_mask_BxA": answer_mask_BxA,
        "prompt_len_B": prompt_len_B,
        "support_BxS": self._supports(examples),
        "answer_lines_BxE": answer_lines_BxE,
        "question_lines_BxE": question_lines_BxE,
        "sf_weight_B": sf_selected(index_B, self.sf_fraction).astype(np.float32),
        "example_weight_B": np.asarray(example_weight_B, np.float32),
    }
    if self.read_words:
      batch["line_words_BxExW"], batch["read_words_BxK"] = read_words(
          examples, num_lines, max(1, layout.line_tokens - 2))
    if encoded.recon is not None:
      # The autoencoding loss decodes lines, so it needs them in the decoder's ids too.
      _check_fits(encoded.recon[1], layout.line_tokens - 2, all_lines,
                  lambda j: _line_name(examples, j))
      batch["recon_ids_X"] = encoded.recon[0].astype(np.int32, copy=False)
      batch["recon_lengths_R"] = encoded.recon[1].astype(np.int32, copy=False)
    if layout.packed_lines:
      batch["line_rows_SxM"] = _packed_rows(np.flatnonzero(line_mask_BxE.reshape(-1)),
                                            batch_size * num_lines, shards, layout.packed_lines)
    if layout.sequence_tokens:
      batch["sequence_BxL"], batch["sequence_mask_BxL"], batch["sequence_prompt_len_B"] = (
          self._answers(dec, examples, *encoded.sequence, layout.sequence_tokens,
                        "sequence_tokens"))
    return batch

  def pad_lines(self, ragged: Batch) -> Batch:
    """The batch of `ragged` with its line tokens padded into context_BxExT (and recon_BxExT,
    recon_mask_BxExT): a few scatters, where tokenizing stays with whoever built `ragged`."""
    batch = {k: v for k, v in ragged.items() if k not in RAGGED_KEYS}
    line_mask_BxE = batch["line_mask_BxE"]
    shape_BxExT = (*line_mask_BxE.shape, int(ragged[LINE_TOKENS]))
    rows = np.flatnonzero(line_mask_BxE.reshape(-1))  # real lines, in example then line order
    batch["context_BxExT"] = _padded(self.encoder_tokenizer, ragged["context_ids_X"],
                                     ragged["context_lengths_R"], rows, shape_BxExT)
    if "recon_ids_X" in ragged:
      lengths_R = ragged["recon_lengths_R"]
      batch["recon_BxExT"] = _padded(self.decoder_tokenizer, ragged["recon_ids_X"], lengths_R,
                                     rows, shape_BxExT)
      lengths_N = np.zeros(line_mask_BxE.size, np.int64)
      lengths_N[rows] = lengths_R
      width = np.arange(shape_BxExT[-1])
      batch["recon_mask_BxExT"] = ((width >= 1) & (width <= 1 + lengths_N[:, None])
                                   & line_mask_BxE.reshape(-1)[:, None]).reshape(shape_BxExT)
    return batch

  def pack_lines(self, ragged: Batch) -> Batch:
    """The batch of `ragged` (built with a `layout(..., device_padding=True)`) with its line
    tokens as each example's lines back to back, [BOS] + tokens + [EOS] each, in one row of N
    (context_ids_BxN) and their lengths (context_lengths_BxE, 0 for padding lines); the same
    for recon_* when there. The train step pads them on the device into exactly the arrays of
    `pad_lines` (`device_padding.pad_lines`): rows of N instead of B x E x T move to it."""
    width = int(ragged["context_tokens"])
    if not width:
      raise ValueError("Batcher.pack_lines needs a batch built with a layout(..., "
                       "device_padding=True)")
    batch = {k: v for k, v in ragged.items() if k not in RAGGED_KEYS}
    batch[LINE_TOKENS] = ragged[LINE_TOKENS]
    line_mask_BxE = batch["line_mask_BxE"]
    for prefix, tok in (("context", self.encoder_tokenizer), ("recon", self.decoder_tokenizer)):
      if f"{prefix}_ids_X" in ragged:
        batch[f"{prefix}_ids_BxN"], batch[f"{prefix}_lengths_BxE"] = _packed_lines(
            tok, ragged[f"{prefix}_ids_X"], ragged[f"{prefix}_lengths_R"], line_mask_BxE, width)
    return batch

  def _pack(self, tok, ragged: tuple[np.ndarray, np.ndarray], texts: list[str],
            out_shape: tuple[int, int], rows: np.ndarray, name_of) -> np.ndarray:
    """[BOS] + tokens + [EOS] of text j (`ragged`: `texts` tokenized) in row rows[j] of a PAD
    array: one scatter for all."""
    _check_fits(ragged[1], out_shape[1] - 2, texts, name_of)
    return _padded(tok, *ragged, rows, out_shape)

  def _answers(self, tok, examples: Sequence[Example], prompt: tuple[np.ndarray, np.ndarray],
               answer: tuple[np.ndarray, np.ndarray], width: int, width_name: str):
    """[BOS] + prompt + answer + [EOS], the mask of positions to predict, and prompt lengths.

    `prompt` and `answer` are the `split_at_space` halves tokenized apart (ragged), exactly as
    generation will see the prompt (where the answer is "").
    """
    prompt_flat, prompt_len = prompt
    answer_flat, answer_len = answer
    total = 2 + prompt_len + answer_len
    too_long = np.flatnonzero(total > width)
    if too_long.size:
      b = int(too_long[0])
      raise ValueError(
          f"Answer sequence of example {example_name(examples[b])} has {total[b]} tokens (BOS, "
          f"prompt, answer, EOS), more than {width_name}={width}: {examples[b].answer[:80]!r}")
    batch_size = len(examples)
    out = np.full((batch_size, width), tok.pad_id, np.int32)
    out[:, 0] = tok.bos_id
    rows = np.arange(batch_size)
    _scatter(out, prompt_flat, prompt_len, rows, np.ones_like(prompt_len))
    _scatter(out, answer_flat, answer_len, rows, 1 + prompt_len)
    out[np.arange(batch_size), total - 1] = tok.eos_id
    positions = np.arange(width)[None, :]
    answer_mask = (positions >= (1 + prompt_len)[:, None]) & (positions < total[:, None])
    return out, answer_mask, (1 + prompt_len).astype(np.int32)

  def _supports(self, examples: Sequence[Example]) -> np.ndarray:
    support_BxS = np.full((len(examples), self.shape.supports), -1, np.int32)
    for b, ex in enumerate(examples):
      if len(ex.support) > self.shape.supports:
        raise ValueError(f"Example {example_name(ex)} has {len(ex.support)} supporting facts, "
                         f"more than supports={self.shape.supports}")
      bad = [i for i in ex.support if not 0 <= i < len(ex.context)]
      if bad:
        raise ValueError(f"Example {example_name(ex)}: support {bad} outside its "
                         f"{len(ex.context)} lines")
      support_BxS[b, :len(ex.support)] = ex.support
    return support_BxS


@dataclasses.dataclass(frozen=True)
class _Encoded:
  """A list of examples tokenized: (flat ids, lengths) per kind of text, in example order."""

  lines_N: np.ndarray  # lines per example
  context: tuple[np.ndarray, np.ndarray]  # every line, encoder ids
  recon: tuple[np.ndarray, np.ndarray] | None  # every line, decoder ids (None: the same ids)
  query: tuple[np.ndarray, np.ndarray]  # questions, encoder ids
  prompt: tuple[np.ndarray, np.ndarray]  # answer-sequence prompts, decoder ids
  answer: tuple[np.ndarray, np.ndarray]  # answers, decoder ids
  # The baseline's (context_prompt, answer) halves, decoder ids (None: no sequence_BxL).
  sequence: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None

  def sizes(self) -> np.ndarray:
    """Batcher.sizes: lines, and the longest line, question, answer sequence and baseline
    sequence, BOS and EOS included."""
    owner = np.repeat(np.arange(len(self.lines_N)), self.lines_N)
    longest_N = np.zeros(len(self.lines_N), np.int64)
    context_N = np.zeros(len(self.lines_N), np.int64)
    for ragged in (self.context, self.recon):
      if ragged is not None:
        np.maximum.at(longest_N, owner, ragged[1])
        context_N = np.maximum(context_N, np.bincount(owner, ragged[1] + 2,
                                                      len(self.lines_N)).astype(np.int64))
    answer_N = self.prompt[1] + self.answer[1]
    sequence_N = (self.sequence[0][1] + self.sequence[1][1] + 2 if self.sequence
                  else np.zeros_like(answer_N))
    return np.stack([self.lines_N, longest_N + 2, self.query[1] + 2, answer_N + 2, sequence_N,
                     context_N], axis=1)


def split_at_space(tok: tokenizers_lib.Tokenizer, question: str, answer: str) -> tuple[str, str]:
  """(prompt, answer) texts of `question + " " + answer`, split where the tokenizer splits.

  Where a space belongs to the next word's token (GPT-2: " hallway" is one token), the space
  goes in front of the answer: a prompt ending in a lone space token is text such a model never
  saw. Otherwise it ends the prompt: for bytes the ids are the same either way and the model
  then never spends a generated token on the fixed separator; WordPiece drops it. Inference
  knows no answer (""), so it gets no space either: its prompt is the one training built.
  """
  if tok.space_joins_next_word:
    return question, (" " + answer) if answer else ""
  return question + " ", answer


def answer_text(tok: tokenizers_lib.Tokenizer, ids) -> str:
  """The answer in generated ids (or an answer's own ids): text before the first EOS, without
  the separating space `split_at_space` may have put in front of it."""
  return tok.decode(ids).removeprefix(" ")


def context_prompt(ex: Example) -> str:
  """The baseline's question: every context line, then the question (newline-separated)."""
  return "".join(line + "\n" for line in ex.context) + ex.question


def _packed_rows(rows_R: np.ndarray, num_rows: int, shards: int, slots: int) -> np.ndarray:
  """line_rows_SxM: the ascending real rows `rows_R` of a B*E batch, per part, as indices into
  that part's rows; unused slots hold the part's row count (out of range: no line)."""
  if num_rows % shards:
    raise ValueError(f"A batch of {num_rows} line rows does not split into {shards} equal parts")
  per_part = num_rows // shards
  part_R, local_R = np.divmod(rows_R, per_part)
  counts_S = np.bincount(part_R, minlength=shards)
  if counts_S.max() > slots:
    raise ValueError(f"Part {int(counts_S.argmax())} of the batch has {counts_S.max()} real lines, "
                     f"more than the layout's {slots} packed slots")
  slot_R = np.arange(len(rows_R)) - np.repeat(np.cumsum(counts_S) - counts_S, counts_S)
  out_SxM = np.full((shards, slots), per_part, np.int32)
  out_SxM[part_R, slot_R] = local_R
  return out_SxM


def _check_fits(lengths: np.ndarray, room: int, texts: list[str], name_of) -> None:
  """Refuses the first of `texts` (tokenized `lengths` long) with more than `room` tokens."""
  too_long = np.flatnonzero(lengths > room)
  if too_long.size:
    j = int(too_long[0])
    raise ValueError(
        f"{name_of(j)} has {lengths[j]} tokens, more than the {room} that fit "
        f"({len(too_long)} text(s) too long in this batch): {texts[j][:80]!r}")


def _padded(tok, flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray,
            shape: tuple[int, ...]) -> np.ndarray:
  """A PAD array of `shape` (rows x width, or more axes flattened into rows) holding
  [BOS] + tokens + [EOS] of text j in row rows[j]."""
  out = np.full(shape, tok.pad_id, np.int32)
  out_NxW = out.reshape(-1, shape[-1])
  out_NxW[rows, 0] = tok.bos_id
  _scatter(out_NxW, flat, lengths, rows, np.ones_like(lengths))
  out_NxW[rows, 1 + lengths] = tok.eos_id
  return out


def _packed_lines(tok, flat: np.ndarray, lengths_R: np.ndarray, line_mask_BxE: np.ndarray,
                  width: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids_BxN, lengths_BxE) of `Batcher.pack_lines`: row b holds example b's real lines (`flat`,
  `lengths_R` tokens each, in example then line order) with their BOS and EOS, back to back."""
  lengths_BxE = np.zeros(line_mask_BxE.shape, np.int32)
  lengths_BxE[line_mask_BxE] = lengths_R + 2
  if lengths_BxE.sum(axis=1).max() >= width:  # the last column must stay padding
    raise ValueError(f"A context of {lengths_BxE.sum(axis=1).max()} tokens does not fit "
                     f"N={width} with a padding column; the layout was sized for other examples")
  # Every vocabulary here fits 16 bits (bytes 260, BERT 30,522, GPT-2 50,257 ids): half the
  # bytes to hand over and move; the device widens them as it pads.
  dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.int32
  # Each line's BOS and EOS, line by line: np.insert keeps the order of equal places, so a
  # line's EOS lands before the next line's BOS, and an empty line's BOS before its EOS. Rows
  # are then contiguous runs of `lines`: one copy each (a per-token index, as _scatter builds,
  # takes several times longer at these sizes).
  ends_R = np.cumsum(lengths_R)
  places = np.stack([ends_R - lengths_R, ends_R], axis=1).reshape(-1)
  specials = np.tile(np.array([tok.bos_id, tok.eos_id], dtype), len(lengths_R))
  lines = np.insert(flat.astype(dtype, copy=False), places, specials)
  ids_BxN = np.full((line_mask_BxE.shape[0], width), tok.pad_id, dtype)
  tokens_B = lengths_BxE.sum(axis=1)
  for b, (start, count) in enumerate(zip(np.cumsum(tokens_B) - tokens_B, tokens_B)):
    ids_BxN[b, :count] = lines[start:start + count]
  return ids_BxN, lengths_BxE


def _scatter(out_NxW: np.ndarray, flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray,
             starts: np.ndarray) -> None:
  """Writes ragged texts (`flat`, `lengths` tokens each) into `rows` from columns `starts`.

  One flat index per token (row * W + column) keeps this a single numpy scatter.
  """
  offsets = np.cumsum(lengths) - lengths
  first = rows * out_NxW.shape[1] + starts - offsets
  out_NxW.reshape(-1)[np.repeat(first, lengths) + np.arange(flat.size)] = flat


def example_name(ex: Example) -> str:
  return f"{ex.task}[{ex.index}]"


def _line_name(examples: Sequence[Example], flat_line: int) -> str:
  """Names the example and line of the `flat_line`-th line of the batch."""
  for ex in examples:
    if flat_line < len(ex.context):
      return f"Line {flat_line} of example {example_name(ex)}"
    flat_line -= len(ex.context)
  raise IndexError(flat_line)
