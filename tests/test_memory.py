"""Properties of Larimar's least-squares memory."""

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest

from memreasoner_jax.models import memory


def _latents(seed, b, e, c):
  return jax.random.normal(jax.random.PRNGKey(seed), (b, e, c))


@pytest.mark.parametrize("pinv", memory.PINV_METHODS)
@pytest.mark.parametrize("e", [1, 5, 16])
def test_written_facts_read_back(pinv, e):
  k, c = 16, 32
  z = _latents(0, 3, e, c)
  mem = memory.write(z, jnp.ones((3, e), bool), jnp.eye(k, c), pinv=pinv)
  assert mem.shape == (3, k, c) and mem.dtype == jnp.float32
  for i in range(e):
    readout, weights = memory.read(mem, z[:, i], pinv=pinv)
    assert weights.shape == (3, k)
    # The regularised solve (which `read` uses for gram too) trades exactness for speed where
    # M is ill-conditioned (here a square 16 x 16 W0 at e = 16).
    tol = {"svd": 5e-5, "ben_israel": 5e-4, "solve": 5e-4, "gram": 5e-4}[pinv]
    np.testing.assert_allclose(readout, z[:, i], atol=tol * float(jnp.abs(z).max()))


def test_query_orthogonal_to_every_fact_reads_about_zero():
  k, c, e = 16, 32, 8
  z = _latents(1, 2, e, c)
  q = jax.random.normal(jax.random.PRNGKey(2), (2, c))
  # Remove from q its projection onto the span of each example's facts.
  q_orth = jnp.stack([
      q[b] - z[b].T @ jnp.linalg.lstsq(z[b].T, q[b])[0] for b in range(2)])
  mem = memory.write(z, jnp.ones((2, e), bool), jnp.eye(k, c))
  readout, _ = memory.read(mem, q_orth)
  assert float(jnp.abs(readout).max()) < 1e-4 * float(jnp.abs(q_orth).max())


def test_readout_is_projection_onto_the_facts_span_for_a_learned_prior():
  k, c, e = 12, 24, 6
  z = _latents(3, 2, e, c)
  prior = jnp.eye(k, c) + 0.1 * jax.random.normal(jax.random.PRNGKey(4), (k, c))
  q = jax.random.normal(jax.random.PRNGKey(5), (2, c))
  readout, _ = memory.read(memory.write(z, jnp.ones((2, e), bool), prior), q)
  expected = jnp.stack([z[b].T @ jnp.linalg.lstsq(z[b].T, q[b])[0] for b in range(2)])
  np.testing.assert_allclose(readout, expected, atol=1e-4)


@pytest.mark.parametrize("pinv", memory.PINV_METHODS)
def test_padding_lines_change_nothing(pinv):
  z = _latents(6, 2, 7, 32)
  mask = jnp.ones((2, 7), bool).at[1, 5:].set(False)
  garbage = 100.0 * _latents(7, 2, 9, 32)
  z_pad = jnp.concatenate([z, garbage], axis=1)
  mask_pad = jnp.concatenate([mask, jnp.zeros((2, 9), bool)], axis=1)
  prior = jnp.eye(16, 32)
  mem, mem_pad = memory.write(z, mask, prior, pinv=pinv), memory.write(z_pad, mask_pad, prior, pinv=pinv)
  np.testing.assert_allclose(mem_pad, mem, atol=1e-5)
  q = z[:, 2] + 0.5
  np.testing.assert_allclose(memory.read(mem_pad, q, pinv=pinv)[0], memory.read(mem, q, pinv=pinv)[0],
                             atol=1e-5)


def test_ben_israel_agrees_with_svd_where_it_converges():
  a = jax.random.normal(jax.random.PRNGKey(8), (4, 10, 16))
  svd = memory.pseudo_inverse(a, "svd")
  ben = memory.pseudo_inverse(a, "ben_israel")
  np.testing.assert_allclose(ben, svd, atol=1e-4)


def test_ben_israel_large_norms_guarded_by_automatic_scale():
  # Larimar's fixed initial scale diverges once alpha * sigma_max^2 > 2; the default scale
  # 1 / ||A||_F^2 stays inside the convergence region at any norm.
  a = 1e3 * jax.random.normal(jax.random.PRNGKey(9), (10, 16))
  svd = memory.pseudo_inverse(a, "svd")
  fixed = memory.pseudo_inverse(a, "ben_israel", ben_israel_alpha=1e-3)
  assert not bool(jnp.all(jnp.isfinite(fixed))) or float(jnp.abs(fixed - svd).max()) > 1.0
  auto = memory.pseudo_inverse(a, "ben_israel")
  np.testing.assert_allclose(auto, svd, atol=1e-4 * float(jnp.abs(svd).max()))


def test_solve_pseudo_inverse_matches_svd():
  for shape in [(10, 16), (16, 10)]:
    a = jax.random.normal(jax.random.PRNGKey(10), shape)
    svd = memory.pseudo_inverse(a, "svd")
    np.testing.assert_allclose(memory.pseudo_inverse(a, "solve"), svd,
                               atol=1e-4 * float(jnp.abs(svd).max()))


@pytest.mark.parametrize("lines_per_chunk", [0, 4])
def test_gram_read_matches_svd(lines_per_chunk):
  # One memory for 12 lines, or chunks of 4 lines; 16 slots keep W0 well-conditioned (a
  # square W0 is not, and then neither method is exact). One example has padding lines.
  z = _latents(20, 3, 12, 64)
  mask = jnp.ones((3, 12), bool).at[1, 9:].set(False)
  prior = jnp.eye(16, 64)
  kw = {"lines_per_chunk": lines_per_chunk}
  svd = memory.write_chunked(z, mask, prior, pinv="svd", **kw)
  gram = memory.write_chunked(z, mask, prior, pinv="gram", **kw)
  np.testing.assert_allclose(gram.memory_BxNxKxC, svd.memory_BxNxKxC, atol=1e-4)
  np.testing.assert_allclose(gram.memory_pinv_BxNxCxK, svd.memory_pinv_BxNxCxK, atol=1e-4)
  for q in (z[:, 4], jax.random.normal(jax.random.PRNGKey(21), (3, 64))):
    for got, want in zip(memory.read_chunked(gram, q), memory.read_chunked(svd, q)):
      np.testing.assert_allclose(got, want, atol=1e-4)


def test_gram_falls_back_to_solve_with_more_lines_than_slots():
  z = _latents(22, 2, 12, 32)
  mask = jnp.ones((2, 12), bool)
  prior = jnp.eye(8, 32)
  gram = memory.write_chunked(z, mask, prior, pinv="gram")
  solve = memory.write_chunked(z, mask, prior, pinv="solve")
  np.testing.assert_array_equal(gram.memory_pinv_BxNxCxK, solve.memory_pinv_BxNxCxK)


@pytest.mark.parametrize("duplicate_scale", [0.0, 1e-3])
def test_gram_duplicate_lines_stay_finite_and_close_to_svd(duplicate_scale):
  # Line 3 repeats line 1 exactly or up to a small perturbation: a singular or nearly singular
  # Gram matrix. Queries that are stored lines still read back what svd reads.
  z = _latents(23, 2, 8, 32)
  z = z.at[:, 3].set(z[:, 1] + duplicate_scale * _latents(24, 2, 1, 32)[:, 0])
  mask = jnp.ones((2, 8), bool)
  prior = jnp.eye(8, 32)
  svd = memory.write_chunked(z, mask, prior, pinv="svd")
  gram = memory.write_chunked(z, mask, prior, pinv="gram")
  for i in range(8):
    readout, weights, _ = memory.read_chunked(gram, z[:, i])
    assert bool(jnp.all(jnp.isfinite(readout))) and bool(jnp.all(jnp.isfinite(weights)))
    np.testing.assert_allclose(readout, memory.read_chunked(svd, z[:, i])[0], atol=2e-2)


def test_gram_write_and_read_gradients():
  z = _latents(25, 2, 5, 12)
  mask = jnp.ones((2, 5), bool).at[0, 4].set(False)
  prior = jnp.eye(6, 12) + 0.1 * jax.random.normal(jax.random.PRNGKey(26), (6, 12))
  q = jax.random.normal(jax.random.PRNGKey(27), (2, 12))

  @jax.jit
  def write(z, prior):
    return memory.write(z, mask, prior, pinv="gram")

  @jax.jit
  def read(z, prior, q):
    mem = memory.write_chunked(z, mask, prior, pinv="gram")
    readout, weights, _ = memory.read_chunked(mem, q)
    return readout, weights

  jtu.check_grads(write, (z, prior), order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)
  jtu.check_grads(read, (z, prior, q), order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)


def test_auto_pinv_is_svd_on_cpu_and_gram_on_accelerators():
  assert memory.resolve_pinv("auto", "cpu") == "svd"
  assert memory.resolve_pinv("auto", "gpu") == memory.resolve_pinv("auto", "tpu") == "gram"
  assert memory.resolve_pinv("solve", "gpu") == "solve"
  with pytest.raises(ValueError, match="pinv method"):
    memory.resolve_pinv("qr")


def test_one_chunk_is_the_single_memory():
  z = _latents(11, 2, 12, 32)
  mask = jnp.ones((2, 12), bool)
  prior = jnp.eye(16, 32)
  single = memory.write(z, mask, prior)
  chunked = memory.write_chunked(z, mask, prior, lines_per_chunk=0)
  q = z[:, 4]
  np.testing.assert_allclose(memory.read_chunked(chunked, q)[0], memory.read(single, q)[0], atol=1e-5)


def test_chunked_read_finds_a_fact_in_any_chunk():
  z = _latents(12, 2, 40, 32)
  mask = jnp.ones((2, 40), bool).at[:, 37:].set(False)
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  assert mem.memory_BxNxKxC.shape == (2, 5, 8, 32)
  for i in (0, 9, 20, 36):
    readout, _, scores = memory.read_chunked(mem, z[:, i])
    np.testing.assert_allclose(readout, z[:, i], atol=1e-4)
    assert scores.shape == (2, 5)


def test_a_short_last_chunk_is_filled_up_and_cannot_win_every_read():
  # 33 real lines in chunks of 8: a last chunk holding only line 32 would store it exactly, its
  # readout would point along line 32 for any query and score a perfect nearest-line cosine.
  z = _latents(13, 2, 48, 32)
  mask = jnp.arange(48) < jnp.array([[33], [5]])
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  np.testing.assert_array_equal(mem.lines_BxNxLxC[0, 4], z[0, 25:33])
  np.testing.assert_array_equal(mem.keep_BxNxL[0].sum(-1), [8, 8, 8, 8, 8, 0])
  np.testing.assert_array_equal(mem.keep_BxNxL[1].sum(-1), [5, 0, 0, 0, 0, 0])
  noise = _latents(14, 2, 1, 32)[:, 0]
  for i in range(4):
    # A little of line 32 in the query makes its lone-line readout point along +line 32.
    query = z[:, i] + 0.3 * noise + 0.2 * z[:, 32]
    readout, _, scores = memory.read_chunked(mem, query)
    assert int(jnp.argmax(scores[0])) == 0
    assert float(memory.cosine(readout[:1], z[:1, i:i + 1])[0, 0]) > 0.9


def test_line_place_is_relative_among_real_lines():
  mask = jnp.array([[1, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0]], bool)
  np.testing.assert_allclose(memory.line_place(mask),
                             [[0, 1 / 3, 0, 2 / 3, 1, 0], [0, 0, 0, 0, 0, 0]], atol=1e-7)


def test_recency_hands_a_near_tie_to_the_later_line_by_relative_place():
  # The same fact stored at line 3 and, slightly changed, at a later line in the example's
  # last real chunk (line 20 of 24 lines, line 36 of 40). The query matches line 3 best; the
  # bonus hands the read to the later copy. (Within one chunk the readout is the same and the
  # hop's own line similarities, which carry the bonus too, choose: tests/test_model.py.)
  z = _latents(15, 2, 40, 32)
  mask = jnp.arange(40) < jnp.array([[24], [40]])
  for b, late in enumerate((20, 36)):
    z = z.at[b, late].set(z[b, 3] + 0.05 * z[b, 5])
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  np.testing.assert_allclose(mem.place_BxNxL[1, 0], jnp.arange(8) / 39, atol=1e-7)
  query = z[:, 3]
  nearest = lambda readout: jnp.argmax(memory.cosine(readout, z), axis=-1)
  plain, _, plain_scores = memory.read_chunked(mem, query)
  recent, _, recent_scores = memory.read_chunked(mem, query, recency=0.1)
  np.testing.assert_array_equal(nearest(plain), [3, 3])
  np.testing.assert_array_equal(nearest(recent), [20, 36])
  np.testing.assert_array_equal(jnp.argmax(recent_scores, axis=-1), [2, 4])
  # A chunk's score is its best line's similarity plus 0.1 times that line's place.
  assert float(recent_scores[0, 2] - plain_scores[0, 2]) > 0.1 * 16 / 23 - 1e-6
  assert bool(jnp.all(jnp.isneginf(recent_scores[0, 3:])))


def test_latest_within_reads_the_latest_near_best_line_however_close_the_places():
  # Example 0: three lines about the query near the best (0.90, 0.88, 0.87) and a filler line
  # far below; places 1 apart in 10,000, so no recency bonus could tell them apart.
  sims = jnp.array([[0.90, 0.88, 0.87, 0.30], [0.90, 0.70, 0.92, 0.95]])
  place = jnp.array([[0.5000, 0.5001, 0.5002, 0.9], [0.1, 0.2, 0.3, 0.0]])
  pick = lambda margin: jnp.argmax(memory.latest_within(sims, place, margin), axis=-1)
  np.testing.assert_array_equal(pick(0.0), [0, 3])
  np.testing.assert_array_equal(pick(0.025), [1, 3])  # line 2 is 0.03 below: not a candidate
  np.testing.assert_array_equal(pick(0.05), [2, 2])  # example 1: line 2, the latest of 0, 2, 3
  np.testing.assert_array_equal(pick(0.7), [3, 2])  # every line a candidate: the last place
  lifted = memory.latest_within(sims, place, 0.05)
  # Lifted at most two margins above the best, the other lines unchanged; the gradient is the
  # similarities' own.
  assert float(jnp.max(lifted - jnp.max(sims, axis=-1, keepdims=True))) <= 0.1
  np.testing.assert_array_equal(lifted[sims < 0.85], sims[sims < 0.85])
  grad = jax.grad(lambda x: jnp.sum(memory.latest_within(x, place, 0.05) * jnp.arange(4.0)))(sims)
  np.testing.assert_array_equal(grad, jnp.broadcast_to(jnp.arange(4.0), sims.shape))


def test_latest_margin_reads_the_chunk_of_the_later_copy_whatever_the_gap():
  # As in the recency test, but the later copy is in the next chunk: the two places are 8 lines
  # apart in 40 (example 1) and the query still prefers line 3. A margin hands the read to the
  # later copy; padding chunks stay unread.
  z = _latents(15, 2, 40, 32)
  mask = jnp.arange(40) < jnp.array([[24], [40]])
  z = z.at[:, 11].set(z[:, 3] + 0.05 * z[:, 5])
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  nearest = lambda readout: jnp.argmax(memory.cosine(readout, z), axis=-1)
  plain, _, _ = memory.read_chunked(mem, z[:, 3])
  latest, _, scores = memory.read_chunked(mem, z[:, 3], latest_margin=0.1)
  np.testing.assert_array_equal(nearest(plain), [3, 3])
  np.testing.assert_array_equal(nearest(latest), [11, 11])
  np.testing.assert_array_equal(jnp.argmax(scores, axis=-1), [1, 1])
  assert bool(jnp.all(jnp.isneginf(scores[0, 3:])))


def test_latest_alike_keeps_lines_unlike_the_best_out_of_the_candidates():
  # Lines 0 and 2 say alike things (cosine 0.96); line 3, later and as near the query, says
  # something else (cosine 0 with line 0). With the margin alone the latest, line 3, is read;
  # asking for likeness 0.9 to the best line reads line 2. Chunked the same: B x N x L.
  lines = jnp.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.96, 0.28, 0.0], [0.0, 1.0, 0.0]]])
  sims = jnp.array([[0.90, 0.10, 0.88, 0.89]])
  place = jnp.array([[0.0, 0.3, 0.6, 1.0]])
  pick = lambda s, p, l, alike: jnp.argmax(
      memory.latest_within(s, p, 0.05, l, alike).reshape(1, -1), axis=-1)
  np.testing.assert_array_equal(pick(sims, place, lines, -1.0), [3])
  np.testing.assert_array_equal(pick(sims, place, lines, 0.9), [2])
  np.testing.assert_array_equal(pick(sims, place, lines, 1.0), [0])  # only the best is alike
  np.testing.assert_array_equal(
      pick(sims.reshape(1, 2, 2), place.reshape(1, 2, 2), lines.reshape(1, 2, 2, 3), 0.9), [2])


def test_latest_alike_passes_to_the_chunked_read():
  # The later copy of line 3 (line 11) is alike; a line unlike it, planted as near the query
  # in a later chunk (line 19), takes the margin's read unless likeness is asked for.
  z = _latents(15, 2, 40, 32)
  mask = jnp.arange(40) < jnp.array([[24], [40]])
  z = z.at[:, 11].set(z[:, 3] + 0.05 * z[:, 5])
  z = z.at[:, 19].set(z[:, 3] + 0.9 * z[:, 7])
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  nearest = lambda readout: jnp.argmax(memory.cosine(readout, z), axis=-1)
  wide, _, _ = memory.read_chunked(mem, z[:, 3], latest_margin=0.5)
  alike, _, _ = memory.read_chunked(mem, z[:, 3], latest_margin=0.5, latest_alike=0.95)
  np.testing.assert_array_equal(nearest(wide), [19, 19])
  np.testing.assert_array_equal(nearest(alike), [11, 11])


@pytest.mark.parametrize("pinv", memory.PINV_METHODS)
def test_write_and_read_gradients_match_finite_differences(pinv):
  # The memory algebra runs in float32 whatever it is given (so x64 would change nothing).
  # Well-conditioned, order-1 inputs: facts and memory near orthonormal rows (singular values
  # about 1), a prior near the identity; central differences of eps 1e-3 then agree with
  # reverse mode to within 1e-3 (5e-3 asserted).
  k, c = 4, 6
  near_rows = lambda seed, shape: (jnp.eye(*shape[-2:]) + 0.2 * jax.random.normal(
      jax.random.PRNGKey(seed), shape))
  facts_BxExC = near_rows(14, (2, 3, c))
  prior_KxC = near_rows(15, (k, c))
  mask_BxE = jnp.ones((2, 3), bool)
  write = lambda f, p: memory.write(f, mask_BxE, p, pinv=pinv)
  jtu.check_grads(write, (facts_BxExC, prior_KxC), order=1, modes=("rev",), eps=1e-3,
                  atol=5e-3, rtol=5e-3)
  memory_BxKxC = near_rows(16, (2, k, c))
  query_BxC = jax.random.normal(jax.random.PRNGKey(17), (2, c))
  read = lambda m, q: memory.read(m, q, pinv=pinv)
  jtu.check_grads(read, (memory_BxKxC, query_BxC), order=1, modes=("rev",), eps=1e-3,
                  atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("pinv", memory.PINV_METHODS)
def test_padding_lines_get_no_gradient(pinv):
  facts_BxExC = _latents(18, 2, 5, 8)
  mask_BxE = jnp.ones((2, 5), bool).at[1, 3:].set(False)
  grad = jax.grad(lambda f: jnp.sum(memory.write(f, mask_BxE, jnp.eye(4, 8), pinv=pinv) ** 2))
  g_BxExC = grad(facts_BxExC)
  np.testing.assert_array_equal(g_BxExC[1, 3:], 0.0)
  assert float(jnp.abs(g_BxExC[1, :3]).min()) > 0.0 and bool(jnp.all(jnp.isfinite(g_BxExC)))


def _chunk_reads(mem, query_BxC):
  """Each chunk's readout (a plain `read` of its memory) and the cosine of its nearest real
  line, in numpy."""
  n = mem.memory_BxNxKxC.shape[1]
  readouts_BxNxC = np.stack([np.asarray(memory.read(mem.memory_BxNxKxC[:, i], query_BxC)[0])
                             for i in range(n)], axis=1)
  lines_BxNxLxC, keep_BxNxL = np.asarray(mem.lines_BxNxLxC), np.asarray(mem.keep_BxNxL)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  cos_BxNxL = np.einsum("bnc,bnlc->bnl", unit(readouts_BxNxC),
                        unit(lines_BxNxLxC + 1e-30 * ~keep_BxNxL[..., None]))
  return readouts_BxNxC, np.where(keep_BxNxL, cos_BxNxL, -np.inf).max(-1)


def test_soft_combine_weights_chunk_readouts_by_a_softmax_of_their_nearest_line():
  z = _latents(19, 2, 24, 32)
  mask = jnp.ones((2, 24), bool).at[:, 21:].set(False)
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  query_BxC = z[:, 3] + 0.5 * jax.random.normal(jax.random.PRNGKey(20), (2, 32))
  readout_BxC, _, scores_BxN = memory.read_chunked(mem, query_BxC, combine="soft",
                                                   temperature=0.1)
  readouts_BxNxC, expected_BxN = _chunk_reads(mem, query_BxC)
  np.testing.assert_allclose(scores_BxN, expected_BxN, atol=1e-5)
  probs_BxN = np.exp((expected_BxN - expected_BxN.max(-1, keepdims=True)) / 0.1)
  probs_BxN /= probs_BxN.sum(-1, keepdims=True)
  np.testing.assert_allclose(readout_BxC, np.einsum("bn,bnc->bc", probs_BxN, readouts_BxNxC),
                             atol=1e-4)
  assert float(probs_BxN.min()) > 1e-3  # every chunk really takes part


def test_soft_combine_is_nearest_line_when_one_chunk_dominates():
  # A stored line reads back from its own chunk exactly (cosine 1); the other chunks' nearest
  # lines are further than 0.2 in cosine, so at temperature 0.01 their weights are below e^-20.
  z = _latents(21, 2, 24, 32)
  mask = jnp.ones((2, 24), bool)
  mem = memory.write_chunked(z, mask, jnp.eye(8, 32), lines_per_chunk=8)
  for i in (2, 12, 23):
    _, scores_BxN = _chunk_reads(mem, z[:, i])
    others_BxN = np.delete(scores_BxN, i // 8, axis=1)
    assert float((scores_BxN[:, i // 8] - others_BxN.max(-1)).min()) > 0.2
    soft, _, _ = memory.read_chunked(mem, z[:, i], combine="soft", temperature=0.01)
    nearest, _, _ = memory.read_chunked(mem, z[:, i], combine="nearest_line")
    np.testing.assert_allclose(soft, nearest, atol=1e-5)
    np.testing.assert_allclose(nearest, z[:, i], atol=1e-4)


def test_soft_combine_ignores_padding_and_empty_chunks():
  z = _latents(22, 2, 13, 32)
  mask = jnp.ones((2, 13), bool).at[1, 10:].set(False)
  garbage = 100.0 * _latents(23, 2, 11, 32)  # 24 lines: chunk 2 becomes all padding
  z_pad = jnp.concatenate([z, garbage], axis=1)
  mask_pad = jnp.concatenate([mask, jnp.zeros((2, 11), bool)], axis=1)
  query_BxC = z[:, 4] + 0.5
  read = lambda f, m: memory.read_chunked(
      memory.write_chunked(f, m, jnp.eye(8, 32), lines_per_chunk=8), query_BxC, combine="soft")
  readout, _, scores = read(z, mask)
  readout_pad, _, scores_pad = read(z_pad, mask_pad)
  np.testing.assert_allclose(readout_pad, readout, atol=1e-5)
  np.testing.assert_array_equal(scores_pad[:, 2], -np.inf)
  grad = jax.grad(lambda f: jnp.sum(read(f, mask_pad)[0]))(z_pad)
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad[:, 13:]).max()) == 0.0


def test_straight_through_combine_reads_the_nearest_line_and_trains_the_chunk_choice():
  z = _latents(24, 2, 24, 32)
  mask = jnp.ones((2, 24), bool).at[1, 20:].set(False)
  query_BxC = z[:, 5] + 0.5 * jax.random.normal(jax.random.PRNGKey(25), (2, 32))
  target_BxC = z[:, 18]  # a line of another chunk than the one the query reads best

  def loss(f, combine):
    mem = memory.write_chunked(f, mask, jnp.eye(8, 32), lines_per_chunk=8)
    readout_BxC, _, _ = memory.read_chunked(mem, query_BxC, combine=combine)
    return jnp.sum(jnp.square(readout_BxC - target_BxC)), readout_BxC

  (_, hard), grad_hard = jax.value_and_grad(loss, has_aux=True)(z, "nearest_line")
  (_, st), grad_st = jax.value_and_grad(loss, has_aux=True)(z, "straight_through")
  np.testing.assert_array_equal(st, hard)
  # Only the picked chunk (lines 0..7) passes a gradient under the argmax; the straight-through
  # rule also reaches the chunk holding the target, which is what lets the read move to it.
  assert float(jnp.abs(grad_hard[:, 16:]).max()) == 0.0
  assert float(jnp.abs(grad_st[:, 16:]).max()) > 1e-6
  np.testing.assert_array_equal(grad_st[1, 20:], 0.0)  # padding lines stay untouched


def test_an_example_of_padding_alone_reads_finite_values_with_every_rule():
  z = _latents(26, 2, 16, 32)
  mask = jnp.ones((2, 16), bool).at[1].set(False)
  for combine in memory.COMBINE_RULES:
    read = lambda f: memory.read_chunked(
        memory.write_chunked(f, mask, jnp.eye(8, 32), lines_per_chunk=8), z[:, 3],
        combine=combine)[0]
    grad = jax.grad(lambda f: jnp.sum(read(f)))(z)
    assert bool(jnp.all(jnp.isfinite(read(z)))) and bool(jnp.all(jnp.isfinite(grad))), combine


def test_bad_shapes_name_the_argument():
  z = _latents(13, 2, 4, 8)
  with pytest.raises(ValueError, match="facts_BxExC"):
    memory.write(z[0], jnp.ones((2, 4), bool), jnp.eye(4, 8))
  with pytest.raises(ValueError, match="mask_BxE"):
    memory.write(z, jnp.ones((2, 5), bool), jnp.eye(4, 8))
  with pytest.raises(ValueError, match="K >= 1"):
    memory.write(z, jnp.ones((2, 4), bool), jnp.zeros((0, 8)))
  with pytest.raises(ValueError, match="prior_KxC"):
    memory.write(z, jnp.ones((2, 4), bool), jnp.eye(4, 6))
  mem = memory.write(z, jnp.ones((2, 4), bool), jnp.eye(4, 8))
  with pytest.raises(ValueError, match="query_BxC"):
    memory.read(mem, jnp.ones((2, 7)))
  with pytest.raises(ValueError, match="pinv method"):
    memory.pseudo_inverse(z, "qr")


def test_order_bonus_takes_the_gated_penalty_off_every_line_after_the_cutoff():
  place_BxE = jnp.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
  cutoff_B, gate_B = jnp.array([0.5, 0.5]), jnp.array([1.0, 0.25])
  bonus = memory.order_bonus(place_BxE, 0.2, cutoff_B, gate_B)
  p = memory.BEFORE_PENALTY
  np.testing.assert_allclose(bonus, [[0.0, 0.1, 0.2 - p], [0.0, 0.1, 0.2 - 0.25 * p]],
                             atol=1e-6)
  # Chunked places (B x N x L) are cut per example the same way.
  chunked = memory.order_bonus(place_BxE.reshape(2, 3, 1), 0.2, cutoff_B, gate_B)
  np.testing.assert_allclose(chunked.reshape(2, 3), bonus, atol=1e-6)
  np.testing.assert_allclose(memory.order_bonus(place_BxE, 0.2), 0.2 * place_BxE)


def test_order_bonus_takes_the_penalty_off_the_lines_earlier_hops_read():
  place_BxE = jnp.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
  read_BxH = jnp.array([[0.5, -1.0], [1.0, 0.0]])  # -1: no line read yet
  p = memory.READ_PENALTY
  bonus = memory.order_bonus(place_BxE, 0.0, read_BxH=read_BxH)
  np.testing.assert_allclose(bonus, [[0.0, -p, 0.0], [-p, 0.0, -p]])
  chunked = memory.order_bonus(place_BxE.reshape(2, 3, 1), 0.0, read_BxH=read_BxH)
  np.testing.assert_allclose(chunked.reshape(2, 3), bonus)
