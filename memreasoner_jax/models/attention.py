"""The one attention of the encoder and the decoder, on `jax.nn.dot_product_attention`.

`model.attention` picks the implementation: "xla" (any device; the logits and the softmax in
float32, whatever the compute dtype) or "cudnn" (the fused cuDNN kernel, NVIDIA GPUs only; it
takes bf16/fp16 inputs, so float32 compute is rounded to bf16 for the kernel, and it runs its
softmax in float32 itself). Masks are boolean and combine a key padding mask, a causal mask by
position (the decoder's KV cache holds key i at position i), and prefix keys (the decoder's
memory slots) that every query sees.
"""

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "cudnn")


def attend(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array, *,
           keep_BxS: jax.Array | None = None, query_pos_BxT: jax.Array | None = None,
           prefix_BxNxHxK: jax.Array | None = None,
           implementation: str = "xla") -> jax.Array:
  """Softmax(q k^T / sqrt(K)) v over the visible keys; out_BxTxHxK in q's dtype.

  Args:
    keep_BxS: False at padding keys (None: all real).
    query_pos_BxT: causal: query t sees keys at positions 0..query_pos[t] (None: not causal).
    prefix_BxNxHxK: N extra keys, each its own value, before the S keys and seen by every query.
    implementation: one of IMPLEMENTATIONS.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"config model.attention must be one of {IMPLEMENTATIONS}, "
                     f"got {implementation!r}")
  b, t = q_BxTxHxK.shape[:2]
  s = k_BxSxHxK.shape[1]
  visible_BxTxS = jnp.ones((b, t, s), bool)
  if keep_BxS is not None:
    visible_BxTxS &= keep_BxS[:, None, :]
  if query_pos_BxT is not None:
    visible_BxTxS &= jnp.arange(s)[None, None, :] <= query_pos_BxT[:, :, None]
  if prefix_BxNxHxK is not None:
    n = prefix_BxNxHxK.shape[1]
    prefix = prefix_BxNxHxK.astype(k_BxSxHxK.dtype)
    k_BxSxHxK = jnp.concatenate([prefix, k_BxSxHxK], axis=1)
    v_BxSxHxK = jnp.concatenate([prefix, v_BxSxHxK], axis=1)
    visible_BxTxS = jnp.concatenate([jnp.ones((b, t, n), bool), visible_BxTxS], axis=2)
  dtype = q_BxTxHxK.dtype
  if implementation == "cudnn":
    if dtype == jnp.float32:
      # The fused kernel has no float32 path.
      q_BxTxHxK, k_BxSxHxK, v_BxSxHxK = (x.astype(jnp.bfloat16)
                                         for x in (q_BxTxHxK, k_BxSxHxK, v_BxSxHxK))
    q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, visible_BxTxS = even_lengths(
        q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, visible_BxTxS)
  out = jax.nn.dot_product_attention(q_BxTxHxK, k_BxSxHxK.astype(q_BxTxHxK.dtype),
                                     v_BxSxHxK.astype(q_BxTxHxK.dtype),
                                     mask=visible_BxTxS[:, None], implementation=implementation)
  return out[:, :t].astype(dtype)


def even_lengths(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array,
                 visible_BxTxS: jax.Array) -> tuple[jax.Array, ...]:
  """Pads the query and key lengths to even numbers, which cuDNN's masked kernel needs in
  training (jax raises "Unsupported sequence length" otherwise; the decoder has T targets and
  T + 1 keys with its readout slot). The extra key is invisible; the extra query repeats the
  last one's visibility, so no row is all masked, and its output is sliced off by the caller."""
  t, s = q_BxTxHxK.shape[1], k_BxSxHxK.shape[1]
  if s % 2:
    k_BxSxHxK, v_BxSxHxK = (jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0)))
                            for x in (k_BxSxHxK, v_BxSxHxK))
    visible_BxTxS = jnp.pad(visible_BxTxS, ((0, 0), (0, 0), (0, 1)))
  if t % 2:
    q_BxTxHxK = jnp.pad(q_BxTxHxK, ((0, 0), (0, 1), (0, 0), (0, 0)))
    visible_BxTxS = jnp.concatenate([visible_BxTxS, visible_BxTxS[:, -1:]], axis=1)
  return q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, visible_BxTxS
