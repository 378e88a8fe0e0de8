"""The line encoder: a BERT-style bidirectional transformer, pooled and projected to a latent.

The layout follows BERT (post-layer-norm blocks, learned absolute positions, token types, exact
GELU) so that BERT-family checkpoints map onto it one tensor to one parameter.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from memreasoner_jax.data import special_tokens
from memreasoner_jax.models import attention


class SelfAttention(nn.Module):
  """Multi-head self-attention over the non-padding tokens of each sequence."""

  num_heads: int
  dtype: jnp.dtype
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x_NxTxD: jax.Array, keep_NxT: jax.Array) -> jax.Array:
    d = x_NxTxD.shape[-1]
    head = d // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head), dtype=self.dtype, name=name)
    q_NxTxHxK = dense("query")(x_NxTxD)
    k_NxTxHxK = dense("key")(x_NxTxD)
    v_NxTxHxK = dense("value")(x_NxTxD)
    # An all-padding line sees every key equally: finite outputs, ignored later.
    out_NxTxHxK = attention.attend(q_NxTxHxK, k_NxTxHxK, v_NxTxHxK, keep_BxS=keep_NxT,
                                   implementation=self.implementation)
    return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, name="output")(out_NxTxHxK)


class EncoderLayer(nn.Module):
  """One post-LN BERT block."""

  num_heads: int
  d_ff: int
  layer_norm_eps: float
  dtype: jnp.dtype
  attention: str = "xla"  # the attention implementation (attention.IMPLEMENTATIONS)

  @nn.compact
  def __call__(self, x_NxTxD: jax.Array, keep_NxT: jax.Array) -> jax.Array:
    d = x_NxTxD.shape[-1]
    norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    attn = SelfAttention(self.num_heads, self.dtype, self.attention, name="attention")(
        x_NxTxD, keep_NxT)
    x_NxTxD = norm("attention_norm")(x_NxTxD + attn)
    h = nn.Dense(self.d_ff, dtype=self.dtype, name="intermediate")(x_NxTxD)
    h = nn.Dense(d, dtype=self.dtype, name="output")(nn.gelu(h, approximate=False))
    return norm("output_norm")(x_NxTxD + h)


class Encoder(nn.Module):
  """Encodes token sequences (lines or queries) to latents.

  Attributes:
    config: the `model.encoder` config.
    latent_size: C, the latent width.
    dtype: compute dtype; parameters stay float32.
    attention: the attention implementation (`model.attention`).
    remat: recompute each block's activations in the backward pass instead of storing them.
  """

  config: ml_collections.ConfigDict
  latent_size: int
  dtype: jnp.dtype = jnp.float32
  attention: str = "xla"
  remat: bool = False

  @nn.compact
  def __call__(self, tokens_NxT: jax.Array, *, hidden_only: bool = False) -> jax.Array:
    """Returns latents_NxC, or with hidden_only the last hidden states NxTxD (BERT's output)."""
    cfg = self.config
    # The Batcher refuses encoder tokenizers that pad with another id.
    keep_NxT = tokens_NxT != special_tokens.PAD_ID
    n, t = tokens_NxT.shape
    if t > cfg.max_len:
      raise ValueError(f"encoder input has {t} tokens per sequence, more than max_len={cfg.max_len}")
    x = nn.Embed(cfg.vocab_size, cfg.d_model, name="token_embed")(tokens_NxT)
    x = x + nn.Embed(cfg.max_len, cfg.d_model, name="position_embed")(jnp.arange(t))[None]
    x = x + nn.Embed(cfg.type_vocab_size, cfg.d_model, name="type_embed")(
        jnp.zeros((n, t), jnp.int32))
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="embed_norm")(x)
    x = x.astype(self.dtype)
    layer = nn.remat(EncoderLayer) if self.remat else EncoderLayer
    for i in range(cfg.num_layers):
      x = layer(cfg.num_heads, cfg.d_ff, cfg.layer_norm_eps, self.dtype, self.attention,
                       name=f"layer_{i}")(x, keep_NxT)
    if hidden_only:
      return x
    pooled_NxD = self.pool(x, tokens_NxT)
    return nn.Dense(self.latent_size, dtype=self.dtype, name="to_latent")(pooled_NxD)

  def pool(self, hidden_NxTxD: jax.Array, tokens_NxT: jax.Array) -> jax.Array:
    if self.config.pooling == "first":
      return hidden_NxTxD[:, 0]
    keep_NxTx1 = (tokens_NxT != special_tokens.PAD_ID)[..., None].astype(hidden_NxTxD.dtype)
    count_Nx1 = jnp.maximum(keep_NxTx1.sum(axis=1), 1.0)
    return (hidden_NxTxD * keep_NxTx1).sum(axis=1) / count_Nx1
