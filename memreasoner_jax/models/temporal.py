"""Temporal encoding: a masked bidirectional GRU over the line latents, in document order.

It lets the memory tell a recent fact from an older one about the same actor. Padding lines
neither change the recurrent state nor produce output (their output is zero), so appending
padding leaves every real line's encoding unchanged.

The GRU is flax's `GRUCell` (same gates, same initialisers), laid out for speed: the input
projections of every line and both directions are one matmul before the scan, and one scan
steps both directions at once (the backward direction reads the lines reversed), so each step
is a single small recurrent matmul. The state stays float32 whatever the compute dtype.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# Gates in the order of the stacked kernels: reset, update, candidate (flax's ir/iz/in, hr/hz/hn).
_GATES = 3


def _per_gate(init):
  """Initialises each direction's kernel gate by gate (rows x F blocks), as GRUCell does."""
  def init_fn(key, shape, dtype=jnp.float32):
    directions, rows, cols = shape
    keys = jax.random.split(key, (directions, _GATES))
    return jnp.stack([
        jnp.concatenate([init(k, (rows, cols // _GATES), dtype) for k in gate_keys], axis=-1)
        for gate_keys in keys])
  return init_fn


class BiGRU(nn.Module):
  """Masked bidirectional GRU: outputs_BxEx2F, forward then backward features.

  Attributes:
    features: F, units per direction.
    dtype: compute dtype of the matmuls; gates and state are float32.
  """

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxExC: jax.Array, mask_BxE: jax.Array) -> jax.Array:
    f, c = self.features, x_BxExC.shape[-1]
    # Per direction (2): input kernel C x 3F with bias, recurrent kernel F x 3F, and the bias of
    # the candidate's recurrent term (GRUCell's hn), which the reset gate multiplies.
    w_in = self.param("input_kernel", _per_gate(nn.initializers.lecun_normal()), (2, c, 3 * f))
    b_in = self.param("input_bias", nn.initializers.zeros_init(), (2, 3 * f))
    w_h = self.param("recurrent_kernel", _per_gate(nn.initializers.orthogonal()), (2, f, 3 * f))
    b_hn = self.param("recurrent_bias", nn.initializers.zeros_init(), (2, f))

    gates_2xBxExG = jnp.einsum("bec,dcg->dbeg", x_BxExC.astype(self.dtype),
                               w_in.astype(self.dtype)).astype(jnp.float32)
    gates_2xBxExG = gates_2xBxExG + b_in[:, None, None]
    keep_BxE = mask_BxE.astype(bool)
    # Time-major, the backward direction reversed: step i is line i forward, line E-1-i backward.
    gates_Ex2xBxG = jnp.stack([gates_2xBxExG[0], gates_2xBxExG[1, :, ::-1]], axis=0)
    gates_Ex2xBxG = jnp.transpose(gates_Ex2xBxG, (2, 0, 1, 3))
    keep_Ex2xB = jnp.stack([keep_BxE, keep_BxE[:, ::-1]], axis=0).transpose(2, 0, 1)
    w_h = w_h.astype(self.dtype)

    def step(h_2xBxF, inputs):
      x_2xBxG, keep_2xB = inputs
      hidden_2xBxG = jnp.einsum("dbf,dfg->dbg", h_2xBxF.astype(self.dtype),
                                w_h).astype(jnp.float32)
      xr, xz, xn = jnp.split(x_2xBxG, 3, axis=-1)
      hr, hz, hn = jnp.split(hidden_2xBxG, 3, axis=-1)
      r = jax.nn.sigmoid(xr + hr)
      z = jax.nn.sigmoid(xz + hz)
      n = jnp.tanh(xn + r * (hn + b_hn[:, None]))
      new_2xBxF = (1.0 - z) * n + z * h_2xBxF
      keep_2xBx1 = keep_2xB[..., None]
      return (jnp.where(keep_2xBx1, new_2xBxF, h_2xBxF),
              jnp.where(keep_2xBx1, new_2xBxF, 0.0))

    h_2xBxF = jnp.zeros((2, x_BxExC.shape[0], f), jnp.float32)
    _, out_Ex2xBxF = jax.lax.scan(step, h_2xBxF, (gates_Ex2xBxG, keep_Ex2xB))
    fwd_BxExF = jnp.swapaxes(out_Ex2xBxF[:, 0], 0, 1)
    bwd_BxExF = jnp.swapaxes(out_Ex2xBxF[::-1, 1], 0, 1)
    return jnp.concatenate([fwd_BxExF, bwd_BxExF], axis=-1)


class TemporalEncoder(nn.Module):
  """`zt_BxExC = BiGRU(z_BxExC)` with C/2 units per direction, or the identity.

  Attributes:
    kind: "bigru" or "none".
    residual: add the input latent to the GRU output.
    dtype: compute dtype.
  """

  kind: str = "bigru"
  residual: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z_BxExC: jax.Array, mask_BxE: jax.Array) -> jax.Array:
    """Returns zt_BxExC, float32 for the BiGRU (its state is), z itself for "none"."""
    if self.kind == "none":
      return z_BxExC
    c = z_BxExC.shape[-1]
    if c % 2:
      raise ValueError(f"the BiGRU needs an even latent size C (C/2 units per direction), got C={c}")
    zt_BxExC = BiGRU(c // 2, self.dtype, name="bigru")(z_BxExC, mask_BxE)
    if self.residual:
      zt_BxExC = zt_BxExC + z_BxExC.astype(jnp.float32) * mask_BxE[..., None]
    return zt_BxExC
