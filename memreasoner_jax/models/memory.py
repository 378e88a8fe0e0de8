"""Larimar's episodic memory: a least-squares write and read, as pure float32 functions.

The memory algebra always runs in float32 at the highest matmul precision, whatever the compute
dtype of the rest of the model: the pseudo-inverses below lose their meaning in bfloat16.

Write:  W0 = Z M0^+  (ExK),   M = W0^+ Z  (KxC)
Read:   w = u M^+    (K),     readout = w M  (C)

With exact pseudo-inverses and no more independent lines than slots, the readout is the
orthogonal projection of the query onto the span of the written latents. The "gram" method
uses that: for E <= K it takes M^+ = Z^+ W0 from one Cholesky of the E x E Gram matrix of the
lines, with no K x C pseudo-inverse (an SVD per example, the slowest op of the step on
accelerators).
"""

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

PinvMethod = Literal["svd", "gram", "solve", "ben_israel"]
PINV_METHODS = ("svd", "gram", "solve", "ben_israel")
# "auto" in a config: resolved by `resolve_pinv` for the platform the model runs on.
PINV_CHOICES = ("auto",) + PINV_METHODS
_HIGHEST = jax.lax.Precision.HIGHEST
# Ridge of the regularised solves, relative to the Gram matrix's trace: large enough that
# float32 Cholesky stays finite on rank-deficient matrices (duplicate lines, fewer lines than
# slots). One refinement step squares its relative error, so it costs about 1e-7 where it
# costs 1e-3 unrefined.
_SOLVE_RIDGE = 1e-5


def resolve_pinv(method: str, platform: str | None = None) -> PinvMethod:
  """The method "auto" stands for: svd on CPU (the reference), gram on GPU and TPU.

  Batched SVDs are slow on accelerators, Cholesky of a small Gram matrix is not.
  """
  if method not in PINV_CHOICES:
    raise ValueError(f"pinv method must be one of {PINV_CHOICES}, got {method!r}")
  if method != "auto":
    return method
  return "svd" if (platform or jax.default_backend()) == "cpu" else "gram"


def _check_rank(name: str, x: jax.Array, rank: int, shape: str) -> None:
  if x.ndim != rank:
    raise ValueError(f"{name} must have rank {rank} ({shape}), got shape {tuple(x.shape)}")


def _ben_israel(a_NxM: jax.Array, steps: int, alpha: float) -> jax.Array:
  """Ben-Israel/Newton-Schulz iteration X <- 2X - X A X from X0 = alpha A^T.

  It converges iff 0 < alpha * sigma_max(A)^2 < 2. Larimar uses a fixed alpha, which diverges
  for latents of large norm; alpha <= 0 (the default) picks alpha = 1 / ||A||_F^2, which is
  always inside the region since sigma_max^2 <= ||A||_F^2. Fifteen steps then resolve singular
  values down to about sigma_max / 180; smaller ones converge only with more steps.
  """
  a_t = jnp.swapaxes(a_NxM, -1, -2)
  if alpha <= 0:
    frob2 = jnp.sum(jnp.square(a_NxM), axis=(-2, -1), keepdims=True)
    x = a_t / jnp.maximum(frob2, jnp.finfo(jnp.float32).tiny)
  else:
    x = alpha * a_t

  def step(x_MxN, _):
    xax = jnp.matmul(jnp.matmul(x_MxN, a_NxM, precision=_HIGHEST), x_MxN, precision=_HIGHEST)
    return 2.0 * x_MxN - xax, None

  x, _ = jax.lax.scan(step, x, None, length=steps)
  return x


def _gram_solve(gram_NxN: jax.Array, rhs_NxR: jax.Array,
                keep_N: jax.Array | None = None) -> jax.Array:
  """G^-1 rhs for a positive semi-definite Gram matrix: ridge, Cholesky, one refinement step.

  Rows and columns of G where keep_N is False must be zero (padding lines); a unit diagonal
  there keeps G positive definite and decouples them, so the real rows' solution is exactly
  what it is without the padding. Directions G does not span are damped by the ridge, which
  is finite where an exact inverse is not.
  """
  size = gram_NxN.shape[-1]
  scale = jnp.trace(gram_NxN, axis1=-2, axis2=-1)[..., None, None]
  ridge = _SOLVE_RIDGE * jnp.maximum(scale, jnp.finfo(jnp.float32).tiny)
  if keep_N is not None:
    ridge = ridge + (1.0 - keep_N.astype(gram_NxN.dtype))[..., None, :]
  diagonal = ridge * jnp.eye(size, dtype=gram_NxN.dtype)
  chol = (jnp.linalg.cholesky(gram_NxN + diagonal), True)
  x_NxR = jax.scipy.linalg.cho_solve(chol, rhs_NxR)
  # Refined against G itself: the ridge's relative error lambda/sigma^2 becomes its square.
  residual_NxR = rhs_NxR - jnp.matmul(gram_NxN, x_NxR, precision=_HIGHEST)
  return x_NxR + jax.scipy.linalg.cho_solve(chol, residual_NxR)


def _regularised_solve(a_NxM: jax.Array, keep_N: jax.Array | None = None) -> jax.Array:
  """A^+ from the normal equations of the smaller side: A^T (A A^T)^-1 or (A^T A)^-1 A^T.

  Cheaper than an SVD on accelerators (one Cholesky of the smaller Gram matrix). keep_N marks
  the real rows of A; the others must be zero.
  """
  n, m = a_NxM.shape[-2:]
  a_t = jnp.swapaxes(a_NxM, -1, -2)
  if n <= m:
    gram = jnp.matmul(a_NxM, a_t, precision=_HIGHEST)
    return jnp.swapaxes(_gram_solve(gram, a_NxM, keep_N), -1, -2)
  return _gram_solve(jnp.matmul(a_t, a_NxM, precision=_HIGHEST), a_t)


def pseudo_inverse(
    a_NxM: jax.Array,
    method: PinvMethod = "svd",
    *,
    keep_N: jax.Array | None = None,
    ben_israel_steps: int = 15,
    ben_israel_alpha: float = 0.0,
) -> jax.Array:
  """Moore-Penrose pseudo-inverse of the last two axes, in float32.

  Args:
    a_NxM: matrices, with any leading batch axes.
    method: "svd" (jnp.linalg.pinv, the stable default), "solve" or "gram" (regularised
      normal equations; for one matrix they are the same) or "ben_israel" (Larimar's
      iteration, for parity).
    keep_N: the real rows of A (the others zero), for the normal equations.
    ben_israel_steps: iterations of the Ben-Israel method.
    ben_israel_alpha: its initial scale; <= 0 picks a scale that always converges.
  """
  if method not in PINV_METHODS:
    raise ValueError(f"pinv method must be one of {PINV_METHODS}, got {method!r}")
  a_NxM = a_NxM.astype(jnp.float32)
  with jax.default_matmul_precision("highest"):
    if method == "svd":
      return jnp.linalg.pinv(a_NxM)
    if method in ("gram", "solve"):
      return _regularised_solve(a_NxM, keep_N)
    return _ben_israel(a_NxM, ben_israel_steps, ben_israel_alpha)


def normal_per_index(rng: jax.Array, shape_BxNx: tuple[int, ...]) -> jax.Array:
  """Standard normal noise whose slice i on axis 1 is drawn from its own key, fold_in(rng, i).

  Appending padding along axis 1 (lines, chunks) then leaves the draws of the real entries
  unchanged, where one `jax.random.normal` over the whole shape would redraw them all.
  """
  b, n, *rest = shape_BxNx
  per_index = lambda i: jax.random.normal(jax.random.fold_in(rng, i), (b, *rest))
  return jax.vmap(per_index, out_axes=1)(jnp.arange(n))


class _Written(NamedTuple):
  memory_BxKxC: jax.Array
  w0_BxExK: jax.Array  # the write weights Z M0^+
  lines_BxExC: jax.Array  # the written latents, padding zeroed


def _write(facts_BxExC: jax.Array, mask_BxE: jax.Array, prior_KxC: jax.Array,
           pinv: PinvMethod) -> _Written:
  _check_rank("facts_BxExC", facts_BxExC, 3, "B x E x C")
  _check_rank("mask_BxE", mask_BxE, 2, "B x E")
  _check_rank("prior_KxC", prior_KxC, 2, "K x C")
  b, e, c = facts_BxExC.shape
  if mask_BxE.shape != (b, e):
    raise ValueError(f"mask_BxE must have shape {(b, e)} to match facts_BxExC, got {mask_BxE.shape}")
  if prior_KxC.shape[0] < 1:
    raise ValueError(f"prior_KxC needs K >= 1 slots, got shape {prior_KxC.shape}")
  if prior_KxC.shape[1] != c:
    raise ValueError(f"prior_KxC must have C={c} columns to match facts_BxExC, got {prior_KxC.shape}")
  keep_BxEx1 = mask_BxE[..., None].astype(jnp.float32)
  z_BxExC = facts_BxExC.astype(jnp.float32) * keep_BxEx1
  prior_pinv_CxK = pseudo_inverse(prior_KxC, pinv)
  w0_BxExK = jnp.einsum("bec,ck->bek", z_BxExC, prior_pinv_CxK, precision=_HIGHEST)
  w0_pinv_BxKxE = pseudo_inverse(w0_BxExK, pinv, keep_N=mask_BxE)
  memory_BxKxC = jnp.einsum("bke,bec->bkc", w0_pinv_BxKxE, z_BxExC, precision=_HIGHEST)
  return _Written(memory_BxKxC, w0_BxExK, z_BxExC)


def write(
    facts_BxExC: jax.Array,
    mask_BxE: jax.Array,
    prior_KxC: jax.Array,
    *,
    pinv: PinvMethod = "svd",
) -> jax.Array:
  """Writes each example's lines into a memory of K slots (Larimar's least-squares write).

  Padding lines (mask False) become zero rows, which change neither pseudo-inverse's non-zero
  part: the write is invariant to them.

  Args:
    facts_BxExC: line latents.
    mask_BxE: True for real lines.
    prior_KxC: the memory prior M0 (learned; initialised to the identity).
    pinv: pseudo-inverse method, see `pseudo_inverse`.

  Returns:
    memory_BxKxC in float32.
  """
  return _write(facts_BxExC, mask_BxE, prior_KxC, pinv).memory_BxKxC


def _memory_pinv(written: _Written, mask_BxE: jax.Array, pinv: PinvMethod) -> jax.Array:
  """M^+ (B x C x K) of freshly written memories.

  With "gram" and E <= K, M = W0^+ Z is a full-column-rank times a full-row-rank matrix, so
  M^+ = Z^+ W0 = Z^T (Z Z^T)^-1 W0: one E x E Cholesky instead of a K x C pseudo-inverse.
  """
  e, k = written.w0_BxExK.shape[-2:]
  if pinv != "gram" or e > k:
    return pseudo_inverse(written.memory_BxKxC, pinv)
  z_BxExC = written.lines_BxExC
  with jax.default_matmul_precision("highest"):
    gram_BxExE = jnp.einsum("bec,bfc->bef", z_BxExC, z_BxExC, precision=_HIGHEST)
    coeffs_BxExK = _gram_solve(gram_BxExE, written.w0_BxExK, mask_BxE)
  return jnp.einsum("bec,bek->bck", z_BxExC, coeffs_BxExK, precision=_HIGHEST)


def read(
    memory_BxKxC: jax.Array,
    query_BxC: jax.Array,
    *,
    pinv: PinvMethod = "svd",
    memory_pinv_BxCxK: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Reads a memory with a query by least squares: w = u M^+, readout = w M.

  Args:
    memory_BxKxC: memories from `write`.
    query_BxC: one query per memory.
    pinv: pseudo-inverse method, see `pseudo_inverse` ("gram" needs the written lines, which
      only `write_chunked` has; here it is the regularised solve of M).
    memory_pinv_BxCxK: M^+ when the caller already has it (several hops read one memory).

  Returns:
    (readout_BxC, weights_BxK), float32.
  """
  _check_rank("memory_BxKxC", memory_BxKxC, 3, "B x K x C")
  _check_rank("query_BxC", query_BxC, 2, "B x C")
  b, _, c = memory_BxKxC.shape
  if query_BxC.shape != (b, c):
    raise ValueError(f"query_BxC must have shape {(b, c)} to match memory_BxKxC, got {query_BxC.shape}")
  memory_BxKxC = memory_BxKxC.astype(jnp.float32)
  if memory_pinv_BxCxK is None:
    memory_pinv_BxCxK = pseudo_inverse(memory_BxKxC, pinv)
  weights_BxK = jnp.einsum(
      "bc,bck->bk", query_BxC.astype(jnp.float32), memory_pinv_BxCxK, precision=_HIGHEST)
  readout_BxC = jnp.einsum("bk,bkc->bc", weights_BxK, memory_BxKxC, precision=_HIGHEST)
  return readout_BxC, weights_BxK


class ChunkedMemory(NamedTuple):
  """Memories written over consecutive chunks of lines; one chunk is the single-memory model.

  Attributes:
    memory_BxNxKxC: one memory per chunk.
    memory_pinv_BxNxCxK: their pseudo-inverses, computed once for every hop's read.
    lines_BxNxLxC: the latents written into each chunk (L lines per chunk).
    keep_BxNxL: True for real lines.
    place_BxNxL: each slot's line's place among the example's real lines (`line_place`).
  """

  memory_BxNxKxC: jax.Array
  memory_pinv_BxNxCxK: jax.Array
  lines_BxNxLxC: jax.Array
  keep_BxNxL: jax.Array
  place_BxNxL: jax.Array


COMBINE_RULES = ("nearest_line", "soft", "straight_through")


def line_place(mask_BxE: jax.Array) -> jax.Array:
  """place_BxE: each real line's place among its example's real lines, 0 for the first and 1
  for the last (0 for padding). Relative, so a story spread over 40 lines or 13,000 gives its
  facts the same places."""
  count_BxE = jnp.cumsum(mask_BxE, axis=1) - 1
  last_Bx1 = jnp.maximum(count_BxE[:, -1:], 1)
  return jnp.where(mask_BxE, count_BxE / last_Bx1, 0.0).astype(jnp.float32)


def _chunk_lines(mask_BxE: jax.Array, n: int, per_chunk: int) -> tuple[jax.Array, jax.Array]:
  """The line each of the N chunks' L slots holds (line_BxNxL), and whether it is used.

  Chunks hold consecutive lines, except the last one holding real lines: it ends at the last
  real line and reaches back a whole chunk, overlapping the chunk before. A chunk of one or
  two lines stores them almost exactly, so its nearest-line score would beat every full chunk
  and win every read; filled up, it competes like the others.
  """
  e = mask_BxE.shape[1]
  # One past the last real line: masks need not be a prefix.
  end_B = jnp.max(jnp.where(mask_BxE, jnp.arange(1, e + 1), 0), axis=1)
  first_N = jnp.arange(n) * per_chunk
  start_BxN = jnp.minimum(first_N[None, :], jnp.maximum(end_B - per_chunk, 0)[:, None])
  line_BxNxL = start_BxN[..., None] + jnp.arange(per_chunk)
  used_BxNxL = (first_N[None, :, None] < end_B[:, None, None]) & (line_BxNxL < e)
  return jnp.minimum(line_BxNxL, e - 1), used_BxNxL


def write_chunked(facts_BxExC: jax.Array, mask_BxE: jax.Array, prior_KxC: jax.Array, *,
                  lines_per_chunk: int = 0, noise_std: float = 0.0,
                  rng: jax.Array | None = None, pinv: PinvMethod = "svd") -> ChunkedMemory:
  """Writes the lines into one memory per chunk of `lines_per_chunk` lines (0: one memory).

  The chunks are written by one batched `write`, not a Python loop. The last chunk holding
  real lines is filled up with the lines before it (see `_chunk_lines`). Chunks made only of
  padding are marked empty and never selected by `read_chunked`. With pinv "gram" and no more
  lines per chunk than slots, M^+ comes from the lines' E x E Gram matrix (see `_memory_pinv`).

  Args:
    noise_std: std of Gaussian observation noise added to the written latents (training),
      drawn per line so that padding lines change no real line's noise.
    rng: key for the noise; required when noise_std > 0.
  """
  _check_rank("facts_BxExC", facts_BxExC, 3, "B x E x C")
  _check_rank("mask_BxE", mask_BxE, 2, "B x E")
  b, e, c = facts_BxExC.shape
  written_BxExC = facts_BxExC.astype(jnp.float32)
  if noise_std > 0:
    if rng is None:
      raise ValueError("write_chunked: noise_std > 0 needs an rng")
    noise_BxExC = normal_per_index(rng, (b, e, c)) * mask_BxE[..., None]
    written_BxExC = written_BxExC + noise_std * noise_BxExC
  per_chunk = e if lines_per_chunk <= 0 else lines_per_chunk
  n = -(-e // per_chunk)
  line_BxNxL, real_BxNxL = _chunk_lines(mask_BxE, n, per_chunk)
  # One row per chunk: (B*N) x L x ...
  chunks = lambda x: jnp.take_along_axis(
      x, line_BxNxL.reshape(b, n * per_chunk, *(1,) * (x.ndim - 2)), axis=1
  ).reshape(b * n, per_chunk, *x.shape[2:])
  keep_BNxL = (chunks(mask_BxE) & real_BxNxL.reshape(b * n, per_chunk))
  written = _write(chunks(written_BxExC), keep_BNxL, prior_KxC, pinv)
  k = prior_KxC.shape[0]
  return ChunkedMemory(
      memory_BxNxKxC=written.memory_BxKxC.reshape(b, n, k, c),
      memory_pinv_BxNxCxK=_memory_pinv(written, keep_BNxL, pinv).reshape(b, n, c, k),
      lines_BxNxLxC=chunks(facts_BxExC).reshape(b, n, per_chunk, c).astype(jnp.float32),
      keep_BxNxL=keep_BNxL.reshape(b, n, per_chunk),
      place_BxNxL=chunks(line_place(mask_BxE)).reshape(b, n, per_chunk))


# What a closed before gate takes from each line after the cutoff: more than cosines span.
BEFORE_PENALTY = 2.0
# What a line an earlier hop read loses with `skip_read`: more than cosines and any recency bonus
# span, so the line is never read again (2 was not: a large bonus outweighed it).
READ_PENALTY = 1e3


def order_bonus(place_Bx: jax.Array, recency: float | jax.Array,
                cutoff_B: jax.Array | None = None, gate_B: jax.Array | None = None,
                read_BxH: jax.Array | None = None) -> jax.Array:
  """The order terms a read adds to the similarity of lines at places `place_Bx...`.

  `recency` times the place (later lines win near ties); with a before gate, `gate_B` times
  BEFORE_PENALTY off every line placed after `cutoff_B` (the previous hop's line): a closed gate
  reads only that line and earlier ones; and READ_PENALTY off the lines at the places
  `read_BxH` (the lines earlier hops read; negative: none). The comparisons are exact at any
  length, the places of the hop's lines and of the chunks' being the same numbers.
  """
  bonus = recency * place_Bx
  per_example = (slice(None),) + (None,) * (place_Bx.ndim - 1)
  if gate_B is not None:
    after = place_Bx > cutoff_B[per_example]
    bonus = bonus - BEFORE_PENALTY * gate_B[per_example] * after
  if read_BxH is not None:
    read_before = jnp.any(place_Bx[..., None] == read_BxH[per_example], axis=-1)
    bonus = bonus - READ_PENALTY * read_before
  return bonus


def latest_within(sims_BxN: jax.Array, place_BxN: jax.Array, margin: float,
                  lines_BxNxC: jax.Array | None = None, alike: float = -1.0) -> jax.Array:
  """The similarities with the latest near-best line lifted to the top (`margin` > 0).

  Every line within `margin` of the example's best similarity (over all trailing axes: lines,
  or chunks and their lines) is a candidate; the candidates are lifted above every other line,
  in the order of their places, so the latest of them wins. A recency bonus times the place
  loses a near tie when the two lines stand close together, which in a long context they often
  do; this rule does not look at the distance. The lift carries no gradient: the similarities
  keep theirs.

  With `alike` above -1, a candidate must also have at least this cosine similarity to the
  best line (`lines_BxNxC`: the latents the similarities were taken with, N matching the
  trailing axes of `sims_BxN`): an older and a newer move of the asked actor say alike things,
  while a book line that comes near the query by chance says something else, and in 5,000
  lines of filler some do.
  """
  if margin <= 0:
    return sims_BxN
  axes = tuple(range(1, sims_BxN.ndim))
  best_Bx1 = jnp.max(sims_BxN, axis=axes, keepdims=True)
  candidate_BxN = sims_BxN >= best_Bx1 - margin
  if alike > -1.0:
    b, c = sims_BxN.shape[0], lines_BxNxC.shape[-1]
    flat_BxMxC = lines_BxNxC.reshape(b, -1, c)
    best_B = jnp.argmax(sims_BxN.reshape(b, -1), axis=-1)
    best_BxC = jnp.take_along_axis(flat_BxMxC, best_B[:, None, None], axis=1)[:, 0]
    likeness_BxN = cosine(best_BxC, flat_BxMxC).reshape(sims_BxN.shape)
    candidate_BxN = candidate_BxN & (likeness_BxN >= alike)
  # At most 2 margins above the best: the candidates' order, not a large value, decides.
  lift_BxN = jnp.where(candidate_BxN, best_Bx1 + margin * (1.0 + place_BxN) - sims_BxN, 0.0)
  return sims_BxN + jax.lax.stop_gradient(lift_BxN)


def cosine(a_BxC: jax.Array, b_BxNxC: jax.Array) -> jax.Array:
  """Cosine similarity of each vector in `a` with each of its N partners in `b`, float32."""
  return jnp.einsum("bc,bnc->bn", unit(a_BxC), unit(b_BxNxC), precision=_HIGHEST)


def cosine_across(a_BxHxC: jax.Array, b_BxExC: jax.Array) -> jax.Array:
  """cos_BxHxBxE: cosine similarity of every vector in `a` with every vector in `b`, of every
  example (the read losses' `foreign_negatives`), float32."""
  return jnp.einsum("bhc,xec->bhxe", unit(a_BxHxC), unit(b_BxExC), precision=_HIGHEST)


def unit(x: jax.Array) -> jax.Array:
  """`x` in float32 scaled to unit length along its last axis. The epsilon sits inside the
  square root: a zero vector (a padding line) then has a finite gradient, where the norm's own
  gradient at zero is NaN and would poison every masked sum."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-16)


def read_chunked(mem: ChunkedMemory, query_BxC: jax.Array, *, combine: str = "nearest_line",
                 weight_noise_BxNxK: jax.Array | None = None,
                 temperature: float = 0.1,
                 recency: float | jax.Array = 0.0, cutoff_B: jax.Array | None = None,
                 gate_B: jax.Array | None = None,
                 read_BxH: jax.Array | None = None,
                 latest_margin: float = 0.0,
                 latest_alike: float = -1.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Reads every chunk with the query and combines the readouts.

  "nearest_line" keeps the readout whose nearest stored line has the highest cosine
  similarity; "soft" averages readouts weighted by a softmax of that score / temperature;
  "straight_through" keeps nearest_line's readout and takes the gradient of "soft", so the
  choice between chunks, which the argmax leaves without a gradient, learns from the answer.

  Args:
    mem: from `write_chunked`.
    query_BxC: the query.
    combine: the combination rule.
    weight_noise_BxNxK: added to the read weights before the readout (Larimar's read noise).
    temperature: of the "soft" and "straight_through" rules.
    recency: added to each line's similarity times its place (`line_place`) before a chunk
      takes its nearest line, so that of two lines that match the query about as well the
      later one wins, whether they share a chunk or not. A float, or a learned scalar.
    cutoff_B, gate_B: a hop's before gate and the previous hop's line place (`order_bonus`).
    read_BxH: places of lines this read may not take (`order_bonus`).
    latest_margin: the chunk holding the latest line within this margin of the best line's
      similarity is read (`latest_within`; 0: the best line's chunk).
    latest_alike: the least cosine similarity to the best line a later line needs to be read
      in its place (`latest_within`; -1: any).

  Returns:
    (readout_BxC, mean read weights_BxNxK before noise, chunk scores_BxN).
  """
  if combine not in COMBINE_RULES:
    raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
  weights_BxNxK = jnp.einsum("bc,bnck->bnk", query_BxC.astype(jnp.float32),
                             mem.memory_pinv_BxNxCxK, precision=_HIGHEST)
  noisy_BxNxK = weights_BxNxK if weight_noise_BxNxK is None else weights_BxNxK + weight_noise_BxNxK
  readouts_BxNxC = jnp.einsum("bnk,bnkc->bnc", noisy_BxNxK, mem.memory_BxNxKxC, precision=_HIGHEST)
  n = readouts_BxNxC.shape[1]
  if n == 1:
    return readouts_BxNxC[:, 0], weights_BxNxK, jnp.zeros(readouts_BxNxC.shape[:2])
  # The nearest stored line of each chunk's readout: cosine over that chunk's real lines.
  sims_BxNxL = jax.vmap(cosine, in_axes=(1, 1), out_axes=1)(readouts_BxNxC, mem.lines_BxNxLxC)
  sims_BxNxL = sims_BxNxL + order_bonus(mem.place_BxNxL, recency, cutoff_B, gate_B,
                                       read_BxH)
  sims_BxNxL = jnp.where(mem.keep_BxNxL, sims_BxNxL, -jnp.inf)
  sims_BxNxL = latest_within(sims_BxNxL, mem.place_BxNxL, latest_margin, mem.lines_BxNxLxC,
                             latest_alike)
  scores_BxN = jnp.max(sims_BxNxL, axis=-1)
  pick_BxN = jax.nn.one_hot(jnp.argmax(scores_BxN, axis=-1), n)
  if combine != "nearest_line":
    # Empty chunks score -inf; floored, an example made only of padding gets finite weights.
    probs_BxN = jax.nn.softmax(jnp.maximum(scores_BxN, -1e4) / temperature, axis=-1)
    pick_BxN = probs_BxN if combine == "soft" else (
        pick_BxN + probs_BxN - jax.lax.stop_gradient(probs_BxN))
  readout_BxC = jnp.einsum("bn,bnc->bc", pick_BxN, readouts_BxNxC, precision=_HIGHEST)
  return readout_BxC, weights_BxNxK, scores_BxN
