"""The BiGRU equals a plain per-step, per-direction GRU (flax's GRUCell, scanned as it was),
with the very same parameters: checkpoints of that layout load unchanged."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memreasoner_jax.models import temporal


class _ReferenceStep(nn.Module):
  """One masked GRUCell step: the straightforward implementation the BiGRU replaces."""

  features: int

  @nn.compact
  def __call__(self, carry_BxF, inputs):
    x_BxC, keep_B = inputs
    new_BxF, _ = nn.GRUCell(self.features, name="cell")(carry_BxF, x_BxC)
    keep_Bx1 = keep_B[:, None]
    return jnp.where(keep_Bx1, new_BxF, carry_BxF), jnp.where(keep_Bx1, new_BxF, 0.0)


class _ReferenceBiGRU(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x_BxExC, mask_BxE):
    outputs = []
    for name, reverse in (("forward", False), ("backward", True)):
      scan = nn.scan(_ReferenceStep, variable_broadcast="params", split_rngs={"params": False},
                     in_axes=1, out_axes=1, reverse=reverse)(self.features, name=name)
      carry_BxF = jnp.zeros((x_BxExC.shape[0], self.features))
      outputs.append(scan(carry_BxF, (x_BxExC, mask_BxE))[1])
    return jnp.concatenate(outputs, axis=-1)


@pytest.fixture(scope="module")
def inputs():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 16))
  # Trailing padding, and a gap in the middle of one example.
  mask = jnp.ones((3, 9), bool).at[0, 6:].set(False).at[2, 3].set(False)
  ref = _ReferenceBiGRU(8)
  ref_params = ref.init(jax.random.PRNGKey(1), x, mask)["params"]
  # Non-zero biases, so that each bias meets its own gate.
  ref_params = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(p.size), p.shape), ref_params)
  return x, mask, ref, ref_params


def test_bigru_equals_the_reference_gru(inputs):
  x, mask, ref, ref_params = inputs
  want = ref.apply({"params": ref_params}, x, mask)
  got = jax.jit(temporal.BiGRU(8).apply)({"params": ref_params}, x, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert float(jnp.abs(got[0, 6:]).max()) == 0.0 and float(jnp.abs(got[2, 3]).max()) == 0.0


def test_bigru_padding_lines_change_nothing(inputs):
  x, mask, _, ref_params = inputs
  gru = jax.jit(temporal.BiGRU(8).apply)
  params = {"params": ref_params}
  padded_x = jnp.concatenate([x, 100.0 * jnp.ones((3, 5, 16))], axis=1)
  padded_mask = jnp.concatenate([mask, jnp.zeros((3, 5), bool)], axis=1)
  np.testing.assert_allclose(gru(params, padded_x, padded_mask)[:, :9], gru(params, x, mask),
                             atol=1e-6)


def test_bigru_parameters_and_initialisers_match_gru_cells(inputs):
  x, mask, ref, ref_params = inputs
  shapes = lambda tree: jax.tree.map(lambda p: p.shape, tree)
  params = temporal.BiGRU(8).init(jax.random.PRNGKey(2), x, mask)["params"]
  # The layout of a scanned flax GRUCell per direction: same names, nesting and shapes.
  assert shapes(params) == shapes(ref_params)
  cell = {"ir": {"kernel": (16, 8), "bias": (8,)}, "iz": {"kernel": (16, 8), "bias": (8,)},
          "in": {"kernel": (16, 8), "bias": (8,)}, "hr": {"kernel": (8, 8)},
          "hz": {"kernel": (8, 8)}, "hn": {"kernel": (8, 8), "bias": (8,)}}
  assert shapes(params) == {"forward": {"cell": cell}, "backward": {"cell": cell}}
  # The temporal encoder holds them directly, as its per-direction scans did.
  encoder_params = temporal.TemporalEncoder().init(jax.random.PRNGKey(2), x, mask)["params"]
  assert shapes(encoder_params) == shapes(ref_params)
  for direction in ("forward", "backward"):
    cell_params = params[direction]["cell"]
    # GRUCell's initialisers: orthogonal recurrent kernels, zero biases, lecun-normal inputs.
    for gate in ("hr", "hz", "hn"):
      kernel = cell_params[gate]["kernel"]
      np.testing.assert_allclose(kernel.T @ kernel, jnp.eye(8), atol=1e-5)
    assert all(float(jnp.abs(cell_params[g]["bias"]).max()) == 0.0 for g in ("ir", "iz", "in", "hn"))
    for gate in ("ir", "iz", "in"):
      assert 0.1 < float(jnp.std(cell_params[gate]["kernel"])) * 4 < 2.0  # std 1/sqrt(16)


def test_temporal_encoder_applies_gru_cell_parameters(inputs):
  x, mask, _, ref_params = inputs
  want = _ReferenceBiGRU(8).apply({"params": ref_params}, x, mask) + x * mask[..., None]
  got = temporal.TemporalEncoder().apply({"params": ref_params}, x, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bfloat16_compute_keeps_a_float32_state(inputs):
  x, mask, _, ref_params = inputs
  params = {"params": ref_params}
  f32 = temporal.BiGRU(8).apply(params, x, mask)
  bf16 = temporal.BiGRU(8, jnp.bfloat16).apply(params, x, mask)
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, atol=5e-2)
