"""Temporal encoding: a masked bidirectional GRU over the line latents, in document order.

It lets the memory tell a recent fact from an older one about the same actor. Padding lines
neither change the recurrent state nor produce output (their output is zero), so appending
padding leaves every real line's encoding unchanged.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class MaskedGRUStep(nn.Module):
  """One GRU step that skips masked positions."""

  features: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, carry_BxF: jax.Array, inputs) -> tuple[jax.Array, jax.Array]:
    x_BxC, keep_B = inputs
    new_carry_BxF, _ = nn.GRUCell(self.features, dtype=self.dtype, name="cell")(carry_BxF, x_BxC)
    keep_Bx1 = keep_B[:, None]
    carry_BxF = jnp.where(keep_Bx1, new_carry_BxF, carry_BxF)
    return carry_BxF, jnp.where(keep_Bx1, new_carry_BxF, 0.0)


def _scan_direction(features: int, dtype: jnp.dtype, reverse: bool, name: str):
  return nn.scan(MaskedGRUStep, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1, reverse=reverse)(features, dtype, name=name)


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
    if self.kind == "none":
      return z_BxExC
    b, _, c = z_BxExC.shape
    if c % 2:
      raise ValueError(f"the BiGRU needs an even latent size C (C/2 units per direction), got C={c}")
    half = c // 2
    carry_BxF = jnp.zeros((b, half), self.dtype)
    inputs = (z_BxExC.astype(self.dtype), mask_BxE)
    _, fwd_BxExF = _scan_direction(half, self.dtype, False, "forward")(carry_BxF, inputs)
    _, bwd_BxExF = _scan_direction(half, self.dtype, True, "backward")(carry_BxF, inputs)
    zt_BxExC = jnp.concatenate([fwd_BxExF, bwd_BxExF], axis=-1)
    if self.residual:
      zt_BxExC = zt_BxExC + z_BxExC * mask_BxE[..., None]
    return zt_BxExC
