"""The BiGRU equals a plain per-step, per-direction GRU (flax's GRUCell, scanned as it was)."""

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


def _to_stacked(ref_params):
  """The reference's per-gate Dense parameters in the BiGRU's stacked layout."""
  cells = [ref_params[d]["cell"] for d in ("forward", "backward")]
  cat = lambda cell, names, leaf: jnp.concatenate([cell[n][leaf] for n in names], axis=-1)
  return {
      "input_kernel": jnp.stack([cat(c, ("ir", "iz", "in"), "kernel") for c in cells]),
      "input_bias": jnp.stack([cat(c, ("ir", "iz", "in"), "bias") for c in cells]),
      "recurrent_kernel": jnp.stack([cat(c, ("hr", "hz", "hn"), "kernel") for c in cells]),
      "recurrent_bias": jnp.stack([c["hn"]["bias"] for c in cells]),
  }


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
  got = jax.jit(temporal.BiGRU(8).apply)({"params": _to_stacked(ref_params)}, x, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert float(jnp.abs(got[0, 6:]).max()) == 0.0 and float(jnp.abs(got[2, 3]).max()) == 0.0


def test_bigru_padding_lines_change_nothing(inputs):
  x, mask, _, ref_params = inputs
  gru = jax.jit(temporal.BiGRU(8).apply)
  params = {"params": _to_stacked(ref_params)}
  padded_x = jnp.concatenate([x, 100.0 * jnp.ones((3, 5, 16))], axis=1)
  padded_mask = jnp.concatenate([mask, jnp.zeros((3, 5), bool)], axis=1)
  np.testing.assert_allclose(gru(params, padded_x, padded_mask)[:, :9], gru(params, x, mask),
                             atol=1e-6)


def test_bigru_parameters_and_initialisers_match_gru_cells(inputs):
  x, mask, ref, ref_params = inputs
  params = temporal.BiGRU(8).init(jax.random.PRNGKey(2), x, mask)["params"]
  assert (sum(p.size for p in jax.tree.leaves(params))
          == sum(p.size for p in jax.tree.leaves(ref_params)))
  # Each recurrent gate block is orthogonal, as GRUCell initialises it.
  for block in jnp.split(params["recurrent_kernel"], 3, axis=-1):
    np.testing.assert_allclose(jnp.einsum("dfg,dfh->dgh", block, block),
                               jnp.broadcast_to(jnp.eye(8), (2, 8, 8)), atol=1e-5)


def test_bfloat16_compute_keeps_a_float32_state(inputs):
  x, mask, _, ref_params = inputs
  params = {"params": _to_stacked(ref_params)}
  f32 = temporal.BiGRU(8).apply(params, x, mask)
  bf16 = temporal.BiGRU(8, jnp.bfloat16).apply(params, x, mask)
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, atol=5e-2)
