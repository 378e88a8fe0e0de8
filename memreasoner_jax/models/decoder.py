"""The answer decoder: a GPT-2-style causal transformer conditioned on memory readouts.

Conditioning follows Larimar (after Optimus): each conditioning vector is projected by W_M
(C -> L*D, no bias) into one slot per layer, and that slot is prepended to the layer's keys and
values (the same vector serves as key and value). Blocks are pre-LN with the tanh GELU and a
head tied to the token embedding, as in GPT-2, so GPT-2 checkpoints map onto it.

A KV cache is an explicit pytree, one `(keys_BxSxHxK, values_BxSxHxK)` pair per layer, passed in
and returned, so decoding stays a pure function.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

LayerCache = tuple[jax.Array, jax.Array]


def init_cache(config: ml_collections.ConfigDict, batch: int, length: int,
               dtype: jnp.dtype = jnp.float32) -> list[LayerCache]:
  """An empty KV cache for `length` positions."""
  head = config.d_model // config.num_heads
  shape = (batch, length, config.num_heads, head)
  return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers)]


class CausalAttention(nn.Module):
  """Causal self-attention with memory slots prepended to the keys and values."""

  num_heads: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array, slots_BxNxD: jax.Array,
               cache: LayerCache | None, position: jax.Array) -> tuple[jax.Array, LayerCache | None]:
    b, t, d = x_BxTxD.shape
    head = d // self.num_heads
    split = lambda y: y.reshape(*y.shape[:2], self.num_heads, head)
    q, k, v = jnp.split(nn.Dense(3 * d, dtype=self.dtype, name="qkv")(x_BxTxD), 3, axis=-1)
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = split(q), split(k), split(v)
    slots_BxNxHxK = split(slots_BxNxD.astype(self.dtype))
    query_pos_T = position + jnp.arange(t)
    if cache is None:
      keys, values, key_pos_S = k_BxTxHxK, v_BxTxHxK, jnp.arange(t)
    else:
      keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k_BxTxHxK.astype(cache[0].dtype),
                                                 position, axis=1)
      values = jax.lax.dynamic_update_slice_in_dim(cache[1], v_BxTxHxK.astype(cache[1].dtype),
                                                   position, axis=1)
      cache = (keys, values)
      key_pos_S = jnp.arange(keys.shape[1])
    visible_TxS = key_pos_S[None, :] <= query_pos_T[:, None]
    n = slots_BxNxD.shape[1]
    visible_TxNS = jnp.concatenate([jnp.ones((t, n), bool), visible_TxS], axis=1)
    keys = jnp.concatenate([slots_BxNxHxK, keys.astype(self.dtype)], axis=1)
    values = jnp.concatenate([slots_BxNxHxK, values.astype(self.dtype)], axis=1)
    logits = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, keys).astype(jnp.float32) / jnp.sqrt(head)
    logits = jnp.where(visible_TxNS[None, None], logits, -1e9)
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out_BxTxD = jnp.einsum("bhqs,bshk->bqhk", probs, values).reshape(b, t, d)
    return nn.Dense(d, dtype=self.dtype, name="proj")(out_BxTxD), cache


class DecoderLayer(nn.Module):
  """One pre-LN GPT-2 block."""

  num_heads: int
  d_ff: int
  layer_norm_eps: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BxTxD, slots_BxNxD, cache, position):
    norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    attn, cache = CausalAttention(self.num_heads, self.dtype, name="attention")(
        norm("attention_norm")(x_BxTxD), slots_BxNxD, cache, position)
    x_BxTxD = x_BxTxD + attn
    h = nn.Dense(self.d_ff, dtype=self.dtype, name="fc")(norm("mlp_norm")(x_BxTxD))
    h = nn.Dense(x_BxTxD.shape[-1], dtype=self.dtype, name="proj")(nn.gelu(h, approximate=True))
    return x_BxTxD + h, cache


class Decoder(nn.Module):
  """Next-token logits for `tokens_BxT` given conditioning vectors `cond_BxNxC`.

  N may be 0: with no memory slots the decoder computes exactly GPT-2 (the parity tests use it).

  Attributes:
    config: the `model.decoder` config.
    dtype: compute dtype; parameters and logits stay float32.
    remat: recompute each block's activations in the backward pass instead of storing them.
  """

  config: ml_collections.ConfigDict
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array, cond_BxNxC: jax.Array,
               cache: list[LayerCache] | None = None,
               position: jax.Array | int = 0) -> tuple[jax.Array, list[LayerCache] | None]:
    """Returns (logits_BxTxV, the updated cache or None).

    Without a cache the T tokens sit at positions 0..T-1; with one, at `position` onwards,
    attending to everything the cache already holds.
    """
    cfg = self.config
    b, t = tokens_BxT.shape
    if cache is None and t > cfg.max_len:
      raise ValueError(f"decoder input has {t} tokens, more than max_len={cfg.max_len}")
    embed = nn.Embed(cfg.vocab_size, cfg.d_model, name="token_embed")
    x = embed(tokens_BxT) + nn.Embed(cfg.max_len, cfg.d_model, name="position_embed")(
        position + jnp.arange(t))[None]
    x = x.astype(self.dtype)
    n = cond_BxNxC.shape[1]
    slots_BxNxLxD = nn.Dense(cfg.num_layers * cfg.d_model, use_bias=False, dtype=self.dtype,
                             name="memory_proj")(cond_BxNxC).reshape(
                                 b, n, cfg.num_layers, cfg.d_model)
    new_cache = [] if cache is not None else None
    layer = nn.remat(DecoderLayer) if self.remat else DecoderLayer
    for i in range(cfg.num_layers):
      x, layer_cache = layer(cfg.num_heads, cfg.d_ff, cfg.layer_norm_eps, self.dtype,
                                    name=f"layer_{i}")(
                                        x, slots_BxNxLxD[:, :, i],
                                        None if cache is None else cache[i], position)
      if cache is not None:
        new_cache.append(layer_cache)
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="final_norm")(x)
    return embed.attend(x.astype(jnp.float32)), new_cache
