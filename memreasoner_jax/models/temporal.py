"""Temporal encoding: a masked bidirectional GRU over the line latents, in document order.

It lets the memory tell a recent fact from an older one about the same actor. Padding lines
neither change the recurrent state nor produce output (their output is zero), so appending
padding leaves every real line's encoding unchanged.

The GRU is flax's `GRUCell`, and its parameters are declared exactly as a per-direction scan of
`GRUCell`s declares them ({forward, backward}: {cell: {ir, iz, in, hr, hz, hn}}, same shapes and
initialisers), so checkpoints of that layout load unchanged. Only at apply time are they laid
out for speed: the input projections of every line and both directions are one matmul before
the scan, and one scan steps both directions at once (the backward direction reads the lines
reversed), so each step is a single small recurrent matmul. The state stays float32 whatever
the compute dtype.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# GRUCell's gates in the order of the stacked kernels: reset, update, candidate.
_INPUT_GATES = ("ir", "iz", "in")
_RECURRENT_GATES = ("hr", "hz", "hn")
DIRECTIONS = ("forward", "backward")


class _DenseParams(nn.Module):
  """The parameters of one of GRUCell's Dense layers (kernel rows x features, optional bias),
  declared under the same names and returned unapplied."""

  rows: int
  features: int
  kernel_init: Callable
  use_bias: bool

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    params = {"kernel": self.param("kernel", self.kernel_init, (self.rows, self.features))}
    if self.use_bias:
      params["bias"] = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return params


class _CellParams(nn.Module):
  """flax GRUCell's parameters: ir, iz, in (C x F, with bias), hr, hz (F x F) and hn (F x F,
  with bias), with GRUCell's initialisers (lecun normal, orthogonal, zero biases)."""

  features: int
  input_size: int

  @nn.compact
  def __call__(self) -> dict[str, dict[str, jax.Array]]:
    f = self.features
    params = {name: _DenseParams(self.input_size, f, nn.initializers.lecun_normal(), True,
                                 name=name)() for name in _INPUT_GATES}
    for name in _RECURRENT_GATES:
      params[name] = _DenseParams(f, f, nn.initializers.orthogonal(), name == "hn", name=name)()
    return params


class _DirectionParams(nn.Module):
  """One direction's GRUCell parameters, under "cell" as the scanned step module held them."""

  features: int
  input_size: int

  @nn.compact
  def __call__(self) -> dict[str, dict[str, jax.Array]]:
    return _CellParams(self.features, self.input_size, name="cell")()


def _bigru(x_BxExC: jax.Array, mask_BxE: jax.Array, features: int,
           dtype: jnp.dtype) -> jax.Array:
  """The masked BiGRU, its parameters declared in the calling module (under forward, backward)."""
  f, c = features, x_BxExC.shape[-1]
  cells = [_DirectionParams(f, c, name=name)() for name in DIRECTIONS]
  stack = lambda names, leaf: jnp.stack(
      [jnp.concatenate([cell[n][leaf] for n in names], axis=-1) for cell in cells])
  w_in = stack(_INPUT_GATES, "kernel")  # 2 x C x 3F
  b_in = stack(_INPUT_GATES, "bias")  # 2 x 3F
  w_h = stack(_RECURRENT_GATES, "kernel").astype(dtype)  # 2 x F x 3F
  # The bias of the candidate's recurrent term, which the reset gate multiplies.
  b_hn = jnp.stack([cell["hn"]["bias"] for cell in cells])  # 2 x F

  gates_2xBxExG = jnp.einsum("bec,dcg->dbeg", x_BxExC.astype(dtype),
                             w_in.astype(dtype)).astype(jnp.float32)
  gates_2xBxExG = gates_2xBxExG + b_in[:, None, None]
  keep_BxE = mask_BxE.astype(bool)
  # Time-major, the backward direction reversed: step i is line i forward, line E-1-i backward.
  gates_Ex2xBxG = jnp.stack([gates_2xBxExG[0], gates_2xBxExG[1, :, ::-1]], axis=0)
  gates_Ex2xBxG = jnp.transpose(gates_Ex2xBxG, (2, 0, 1, 3))
  keep_Ex2xB = jnp.stack([keep_BxE, keep_BxE[:, ::-1]], axis=0).transpose(2, 0, 1)

  def step(h_2xBxF, inputs):
    x_2xBxG, keep_2xB = inputs
    hidden_2xBxG = jnp.einsum("dbf,dfg->dbg", h_2xBxF.astype(dtype), w_h).astype(jnp.float32)
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


class BiGRU(nn.Module):
  """Masked bidirectional GRU: outputs_BxEx2F, forward then backward features.

  Parameters: {forward, backward}: {cell: GRUCell's parameters}.

  Attributes:
    features: F, units per direction.
    dtype: compute dtype of the matmuls; gates and state are float32.
  """

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxExC: jax.Array, mask_BxE: jax.Array) -> jax.Array:
    return _bigru(x_BxExC, mask_BxE, self.features, self.dtype)


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
    # Declared here rather than in a BiGRU child, so the parameters sit directly under
    # "temporal" (forward, backward) as they always have.
    zt_BxExC = _bigru(z_BxExC, mask_BxE, c // 2, self.dtype)
    if self.residual:
      zt_BxExC = zt_BxExC + z_BxExC.astype(jnp.float32) * mask_BxE[..., None]
    return zt_BxExC
