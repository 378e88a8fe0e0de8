"""The full-attention baseline: a GPT-2-style decoder that reads the whole context as one sequence.

Every MemReasoner result is compared with it: the same decoder (`decoder.Decoder`, the preset's
width, depth and vocabulary) given no memory slots, reading `sequence_BxL` (BOS, the context lines
joined by newlines, the question prompt, the answer, EOS; the Batcher builds it when
`data.sequence_tokens` > 0) with causal full attention, and trained on the answer tokens only.
`model.decoder.max_len` is its position table, so it bounds context + prompt + generated tokens.

Cost: each position attends to every earlier one, O(L^2) work in the context length L. The
sequence is read `chunk` query positions at a time into a KV cache, so memory stays
O(chunk x L); each block scores all L cache positions under the causal mask, as a plain
(unfused) attention does. The PAD tail follows the answer, so causal attention never lets a real
token see padding. Greedy generation reads the prompt once (prefill) and then feeds one token per
step at each example's own position (examples' prompts end at different places).

The decoder's W_M projection gets conditioning vectors of width 1 and none of them: its
1 x (layers * width) kernel exists but is unused.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from memreasoner_jax import models
from memreasoner_jax.models import decoder as decoder_lib
from memreasoner_jax.models import losses
from memreasoner_jax.models import memreasoner

Params = models.Params
SEQUENCE_KEYS = ("sequence_BxL", "sequence_mask_BxL", "sequence_prompt_len_B")


def _no_slots(batch: int) -> jax.Array:
  """No conditioning vectors: the decoder is then exactly GPT-2."""
  return jnp.zeros((batch, 0, 1))


def _check_batch(batch: dict[str, jax.Array]) -> None:
  missing = [k for k in SEQUENCE_KEYS if k not in batch]
  if missing:
    raise ValueError(f"the full-attention baseline reads {missing} from the batch; build batches "
                     "with data.sequence_tokens > 0 (the length of context + question + answer "
                     "in decoder tokens)")


class Baseline:
  """The decoder-only reader: `init`, `loss`, `generate` over one parameter dict {"decoder"}."""

  def __init__(self, config: ml_collections.ConfigDict, chunk: int = 512):
    """`chunk`: query positions per attention block (memory O(chunk x sequence length))."""
    models.check_dtype(config)
    dec = config.decoder
    if dec.d_model % dec.num_heads:
      raise ValueError(f"config model.decoder.d_model must be divisible by num_heads, "
                       f"got {dec.d_model}")
    if chunk < 1:
      raise ValueError(f"chunk must be >= 1, got {chunk}")
    self.config = config
    self.chunk = chunk
    self.decoder = decoder_lib.Decoder(dec, jnp.dtype(config.dtype),
                                       config.get("attention", "xla"),
                                       config.get("remat", "none") == "blocks")

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Params:
    """Float32 parameters (any sequence length up to decoder.max_len works afterwards)."""
    _check_batch(batch)
    tokens_Bx1 = batch["sequence_BxL"][:, :1]
    init = lambda r, t: {"decoder": self.decoder.init(r, t, _no_slots(t.shape[0]))["params"]}
    return jax.jit(init)(rng, tokens_Bx1)

  def read(self, params: Params, tokens_BxL: jax.Array, window_start_B: jax.Array, window: int,
           cache_len: int) -> tuple[list[decoder_lib.LayerCache], jax.Array]:
    """Reads the whole sequence block by block into a KV cache of `cache_len` positions.

    Returns the cache and logits_BxWxV at positions window_start_B + 0..W-1 (zeros past L): the
    only logits kept, so the vocabulary never multiplies the sequence length in memory.
    """
    b, l = tokens_BxL.shape
    if l > self.config.decoder.max_len:
      raise ValueError(f"sequence of {l} tokens exceeds model.decoder.max_len="
                       f"{self.config.decoder.max_len}")
    c = min(self.chunk, l)
    num_blocks = -(-l // c)
    # The last block ends at L (overlapping its predecessor), so no position leaves the table;
    # rewriting the overlap's keys stores the same values again.
    starts_N = jnp.minimum(jnp.arange(num_blocks) * c, l - c)
    pos_BxW = window_start_B[:, None] + jnp.arange(window)[None]
    dec = {"params": params["decoder"]}

    def block(carry, i):
      cache, kept_BxWxD = carry
      start = starts_N[i]
      tokens_BxC = jax.lax.dynamic_slice_in_dim(tokens_BxL, start, c, axis=1)
      hidden_BxCxD, cache = self.decoder.apply(dec, tokens_BxC, _no_slots(b), cache, start,
                                               head=False)
      offset_BxW = pos_BxW - start
      new_BxW = (pos_BxW >= i * c) & (offset_BxW < c)
      got_BxWxD = jnp.take_along_axis(hidden_BxCxD, jnp.clip(offset_BxW, 0, c - 1)[..., None],
                                      axis=1)
      return (cache, jnp.where(new_BxW[..., None], got_BxWxD, kept_BxWxD)), None

    dtype = jnp.dtype(self.config.dtype)
    cache = decoder_lib.init_cache(self.config.decoder, b, cache_len, dtype)
    kept_BxWxD = jnp.zeros((b, window, self.config.decoder.d_model), dtype)
    (cache, kept_BxWxD), _ = jax.lax.scan(block, (cache, kept_BxWxD), jnp.arange(num_blocks))
    # The output layer only at the kept positions.
    return cache, decoder_lib.logits(params["decoder"], kept_BxWxD, dtype)

  def batch_shapes(self, batch_size: int = 1,
                   sequence_tokens: int = 16) -> dict[str, jax.ShapeDtypeStruct]:
    spec = jax.ShapeDtypeStruct
    return {**memreasoner.batch_shapes(batch_size),
            "sequence_BxL": spec((batch_size, sequence_tokens), jnp.int32),
            "sequence_mask_BxL": spec((batch_size, sequence_tokens), jnp.bool_),
            "sequence_prompt_len_B": spec((batch_size,), jnp.int32)}

  def loss(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array | None,
           step: jax.Array | int, cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """Answer cross-entropy (the only term) and exact-answer rate; no noise, no schedule."""
    del rng, step
    _check_batch(batch)
    tokens_BxL = batch["sequence_BxL"]
    window = self._window(batch, cfg)
    _, logits_BxWxV = self.read(params, tokens_BxL, batch["sequence_prompt_len_B"] - 1, window,
                                tokens_BxL.shape[1])
    return self._answer_loss(batch, logits_BxWxV, cfg)

  def generate(self, params: Params, batch: dict[str, jax.Array],
               max_new_tokens: int) -> models.Generated:
    """Greedy answers after each example's context and prompt (no hops: sims_BxHxE has H = 0)."""
    _check_batch(batch)
    cache, first_Bx1xV = self.read(params, batch["sequence_BxL"],
                                   batch["sequence_prompt_len_B"] - 1, 1,
                                   self._cache_len(batch, max_new_tokens))
    return self._continue(params, batch, cache, first_Bx1xV[:, 0], max_new_tokens)

  def loss_and_generate(self, params: Params, batch: dict[str, jax.Array],
                        cfg: ml_collections.ConfigDict,
                        max_new_tokens: int) -> tuple[jax.Array, dict, models.Generated]:
    """`loss` without noise and `generate`, from one read of the sequence."""
    _check_batch(batch)
    cache, logits_BxWxV = self.read(params, batch["sequence_BxL"],
                                    batch["sequence_prompt_len_B"] - 1, self._window(batch, cfg),
                                    self._cache_len(batch, max_new_tokens))
    total, metrics = self._answer_loss(batch, logits_BxWxV, cfg)
    return total, metrics, self._continue(params, batch, cache, logits_BxWxV[:, 0],
                                          max_new_tokens)

  def _window(self, batch: dict[str, jax.Array], cfg: ml_collections.ConfigDict) -> int:
    """Positions scored after each prompt: the answer and its EOS fit in answer_BxA's width A."""
    return losses.answer_window(cfg, batch["answer_BxA"].shape[1])

  def _cache_len(self, batch: dict[str, jax.Array], max_new_tokens: int) -> int:
    l = batch["sequence_BxL"].shape[1]
    if l + max_new_tokens > self.config.decoder.max_len:
      raise ValueError(f"sequence width {l} + max_new_tokens {max_new_tokens} exceeds "
                       f"model.decoder.max_len={self.config.decoder.max_len}")
    return l + max_new_tokens

  def _answer_loss(self, batch: dict[str, jax.Array], logits_BxWxV: jax.Array,
                   cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """The loss of the logits at the W positions from each prompt's last token on."""
    tokens_BxL = batch["sequence_BxL"]
    l, width = tokens_BxL.shape[1], logits_BxWxV.shape[1]
    target_pos_BxW = batch["sequence_prompt_len_B"][:, None] + jnp.arange(width)[None]
    inside_BxW = target_pos_BxW < l
    target_pos_BxW = jnp.minimum(target_pos_BxW, l - 1)
    targets_BxW = jnp.take_along_axis(tokens_BxL, target_pos_BxW, axis=1)
    example_B = batch["example_weight_B"]
    weights_BxW = (jnp.take_along_axis(batch["sequence_mask_BxL"], target_pos_BxW, axis=1)
                   & inside_BxW) * example_B[:, None]
    answer_loss, answer_exact = losses.answer_terms(logits_BxWxV, targets_BxW, weights_BxW,
                                                    example_B)
    total = cfg.answer_weight * answer_loss
    return total, {"loss": total, "answer_loss": answer_loss, "answer_exact": 100.0 * answer_exact}

  def _continue(self, params: Params, batch: dict[str, jax.Array], cache: list,
                first_logits_BxV: jax.Array, max_new_tokens: int) -> models.Generated:
    b = first_logits_BxV.shape[0]
    tokens_BxN, logits_BxNxV = decoder_lib.greedy(
        self.decoder, params["decoder"], _no_slots(b), cache, first_logits_BxV,
        batch["sequence_prompt_len_B"], max_new_tokens)
    return models.Generated(tokens_BxN.astype(batch["sequence_BxL"].dtype), logits_BxNxV,
                            jnp.zeros((b, 0, 0), jnp.float32))
