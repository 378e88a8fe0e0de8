"""The answer decoder: a GPT-2-style causal transformer conditioned on memory readouts.

Conditioning follows Larimar (after Optimus): each conditioning vector is projected by W_M
(C -> L*D, no bias) into one slot per layer, and that slot is prepended to the layer's keys and
values (the same vector serves as key and value). Blocks are pre-LN with the tanh GELU and a
head tied to the token embedding, as in GPT-2, so GPT-2 checkpoints map onto it.

A KV cache is an explicit pytree, one `(keys_BxSxHxK, values_BxSxHxK)` pair per layer, passed in
and returned, so decoding stays a pure function.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from memreasoner_jax.models import attention

LayerCache = tuple[jax.Array, jax.Array]


def init_cache(config: ml_collections.ConfigDict, batch: int, length: int,
               dtype: jnp.dtype = jnp.float32) -> list[LayerCache]:
  """An empty KV cache for `length` positions."""
  head = config.d_model // config.num_heads
  shape = (batch, length, config.num_heads, head)
  return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers)]


def _write(cache_BxSxHxK: jax.Array, new_BxTxHxK: jax.Array, position: jax.Array) -> jax.Array:
  """The cache with `new` stored from `position` on (a scalar, or one position per example)."""
  new_BxTxHxK = new_BxTxHxK.astype(cache_BxSxHxK.dtype)
  if jnp.ndim(position) == 0:
    return jax.lax.dynamic_update_slice_in_dim(cache_BxSxHxK, new_BxTxHxK, position, axis=1)
  write_one = lambda c, x, p: jax.lax.dynamic_update_slice_in_dim(c, x, p, axis=0)
  return jax.vmap(write_one)(cache_BxSxHxK, new_BxTxHxK, position)


class CausalAttention(nn.Module):
  """Causal self-attention with memory slots prepended to the keys and values."""

  num_heads: int
  dtype: jnp.dtype
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array, slots_BxNxD: jax.Array,
               cache: LayerCache | None, position: jax.Array) -> tuple[jax.Array, LayerCache | None]:
    b, t, d = x_BxTxD.shape
    head = d // self.num_heads
    split = lambda y: y.reshape(*y.shape[:2], self.num_heads, head)
    q, k, v = jnp.split(nn.Dense(3 * d, dtype=self.dtype, name="qkv")(x_BxTxD), 3, axis=-1)
    q_BxTxHxK, k_BxSxHxK, v_BxSxHxK = split(q), split(k), split(v)
    if cache is not None:
      cache = (_write(cache[0], k_BxSxHxK, position), _write(cache[1], v_BxSxHxK, position))
      k_BxSxHxK, v_BxSxHxK = cache
    query_pos_BxT = jnp.broadcast_to(jnp.reshape(position, (-1, 1)) + jnp.arange(t), (b, t))
    out_BxTxHxK = attention.attend(q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, query_pos_BxT=query_pos_BxT,
                                   prefix_BxNxHxK=split(slots_BxNxD.astype(self.dtype)),
                                   implementation=self.implementation)
    return nn.Dense(d, dtype=self.dtype, name="proj")(out_BxTxHxK.reshape(b, t, d)), cache


class DecoderLayer(nn.Module):
  """One pre-LN GPT-2 block."""

  num_heads: int
  d_ff: int
  layer_norm_eps: float
  dtype: jnp.dtype
  attention: str = "xla"  # the attention implementation (attention.IMPLEMENTATIONS)

  @nn.compact
  def __call__(self, x_BxTxD, slots_BxNxD, cache, position):
    norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    attn, cache = CausalAttention(self.num_heads, self.dtype, self.attention, name="attention")(
        norm("attention_norm")(x_BxTxD), slots_BxNxD, cache, position)
    x_BxTxD = x_BxTxD + attn
    h = nn.Dense(self.d_ff, dtype=self.dtype, name="fc")(norm("mlp_norm")(x_BxTxD))
    h = nn.Dense(x_BxTxD.shape[-1], dtype=self.dtype, name="proj")(nn.gelu(h, approximate=True))
    return x_BxTxD + h, cache


def tied_head(hidden_NxD: jax.Array, embedding_VxD: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """Float32 logits_NxV from the token embedding as output layer.

  The matmul runs in the compute dtype (bf16 on accelerators) and accumulates in float32.
  """
  return jnp.einsum("...d,vd->...v", hidden_NxD.astype(dtype), embedding_VxD.astype(dtype),
                    preferred_element_type=jnp.float32)


def logits(params: dict, hidden_NxD: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """The decoder's output layer on hidden states it returned with `head=False`."""
  return tied_head(hidden_NxD, params["token_embed"]["embedding"], dtype)


class Decoder(nn.Module):
  """Next-token logits for `tokens_BxT` given conditioning vectors `cond_BxNxC`.

  N may be 0: with no memory slots the decoder computes exactly GPT-2 (the parity tests use it).

  Attributes:
    config: the `model.decoder` config.
    dtype: compute dtype; parameters and logits stay float32.
    attention: the attention implementation (`model.attention`).
    remat: recompute each block's activations in the backward pass instead of storing them.
  """

  config: ml_collections.ConfigDict
  dtype: jnp.dtype = jnp.float32
  attention: str = "xla"
  remat: bool = False

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array, cond_BxNxC: jax.Array,
               cache: list[LayerCache] | None = None, position: jax.Array | int = 0, *,
               head: bool = True) -> tuple[jax.Array, list[LayerCache] | None]:
    """Returns (logits_BxTxV, or with head=False the final hidden states BxTxD; the cache).

    Without a cache the T tokens sit at positions 0..T-1; with one, at `position` onwards (a
    scalar, or one start per example), attending to everything the cache holds before them.
    """
    cfg = self.config
    b, t = tokens_BxT.shape
    if cache is None and t > cfg.max_len:
      raise ValueError(f"decoder input has {t} tokens, more than max_len={cfg.max_len}")
    embed = nn.Embed(cfg.vocab_size, cfg.d_model, name="token_embed")
    x = embed(tokens_BxT) + nn.Embed(cfg.max_len, cfg.d_model, name="position_embed")(
        jnp.reshape(position, (-1, 1)) + jnp.arange(t))
    x = x.astype(self.dtype)
    n = cond_BxNxC.shape[1]
    slots_BxNxLxD = nn.Dense(cfg.num_layers * cfg.d_model, use_bias=False, dtype=self.dtype,
                             name="memory_proj")(cond_BxNxC).reshape(
                                 b, n, cfg.num_layers, cfg.d_model)
    new_cache = [] if cache is not None else None
    layer = nn.remat(DecoderLayer) if self.remat else DecoderLayer
    for i in range(cfg.num_layers):
      x, layer_cache = layer(cfg.num_heads, cfg.d_ff, cfg.layer_norm_eps, self.dtype,
                             self.attention, name=f"layer_{i}")(
                                        x, slots_BxNxLxD[:, :, i],
                                        None if cache is None else cache[i], position)
      if cache is not None:
        new_cache.append(layer_cache)
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="final_norm")(x)
    return (tied_head(x, embed.embedding, self.dtype) if head else x), new_cache


def greedy(decoder: Decoder, params: dict, cond_BxNxC: jax.Array, cache: list[LayerCache],
           first_logits_BxV: jax.Array, prompt_len_B: jax.Array, max_new_tokens: int,
           head: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
           last_token_B: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Greedy decoding after a prefill: (tokens_BxN, logits_BxNxV).

  `cache` holds each example's prompt and `first_logits_BxV` its logits after the prompt; each
  step feeds the last prediction at the example's own position (prompts end at different places).
  Cache entries past a prompt (its padding, a teacher-forced answer) are overwritten before any
  query can see them. `head` maps hidden states BxTxD and the tokens written at and before each
  position (BxTx2) to logits in place of the tied head; `last_token_B` is each prompt's last
  token, the one before the first fed.
  """
  dec = {"params": params}

  def step(carry, j):
    cache, logits_BxV, before_B = carry
    token_B = jnp.argmax(logits_BxV, axis=-1).astype(before_B.dtype)
    out_Bx1xY, cache = decoder.apply(dec, token_B[:, None], cond_BxNxC, cache,
                                     prompt_len_B + j, head=head is None)
    logits_Bx1xV = (out_Bx1xY if head is None
                    else head(out_Bx1xY, jnp.stack([token_B, before_B], axis=-1)[:, None]))
    return (cache, logits_Bx1xV[:, 0], token_B), logits_Bx1xV[:, 0]

  if last_token_B is None:
    last_token_B = jnp.zeros(prompt_len_B.shape, jnp.int32)
  _, rest_NxBxV = jax.lax.scan(step, (cache, first_logits_BxV, last_token_B.astype(jnp.int32)),
                               jnp.arange(max_new_tokens - 1))
  logits_BxNxV = jnp.concatenate([first_logits_BxV[:, None], jnp.swapaxes(rest_NxBxV, 0, 1)],
                                 axis=1)
  return jnp.argmax(logits_BxNxV, axis=-1), logits_BxNxV
