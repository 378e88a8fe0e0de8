"""The hop operator: H reads of one memory, each followed by a query update, as a lax.scan.

A 2-hop question ("Where is the football?") first reads who holds the object, then, with the
query moved towards that readout, where that actor is.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memreasoner_jax.models import memory

# The paper's query update rules (its sweep), and ours.
PAPER_UPDATE_RULES = ("gru", "add", "linear", "nearest_fact")
UPDATE_RULES = PAPER_UPDATE_RULES + ("nearest_content",)
# Similarity given to padding lines: far below any cosine, yet finite for the losses.
_MASKED_SIM = -1e4
# The first hop's cutoff: after every line's place (places run from 0 to 1), so it cuts none.
_NO_CUTOFF = 2.0
# The place of a line no hop has read yet: before every line's.
_NOT_READ = -1.0
# The before gate's starting bias: the gate starts near open (0.12 of the full cut), so the
# gradient, not the initialisation, decides which questions cut.
_BEFORE_GATE_BIAS = -2.0


class Hop(nn.Module):
  """One hop: read the memory with the query, then update the query from the readout.

  Attributes:
    update: the query update rule, one of UPDATE_RULES.
    read_noise: the model has Larimar's learned Gaussian noise on the read weights.
    sample_noise: draw that noise now (training); its parameters exist either way.
    combine: how chunked memories combine their readouts (see memory.read_chunked).
    recency: a bonus for later lines, times their place, in every line similarity (see
      memory.read_chunked): of two lines about the same actor, the later one is read.
    learn_recency: the bonus is a parameter ("recency", shared by the hops), `recency` its
      initial value.
    add_recency: this read adds the bonus (the parameter exists either way).
    before_gate: a learned gate on the query may cut, in this hop's read, the lines after the
      line the previous hop read (see memory.order_bonus). "Where is the football?" after
      "John dropped the football" asks where John was before the drop, not where he went next;
      after "John picked up the football", where he is now.
    skip_read: a hop never reads a line an earlier hop read (see memory.order_bonus). A vt2
      hop that read the line it was sent from again ("VAR B = VAR A" twice) copied its name
      twice and never reached the next link of the chain (BUILD_NOTES.md).
    latest_margin: of the lines within this margin of the best similarity, the latest is read
      (memory.latest_within; 0: the best).
    latest_alike: a later line is read in the best one's place only when its cosine similarity
      to the best line is at least this (memory.latest_within; -1: any).
    dtype: compute dtype of the update network; the read itself is float32.
  """

  update: str = "gru"
  read_noise: bool = False
  sample_noise: bool = False
  combine: str = "nearest_line"
  recency: float = 0.0
  learn_recency: bool = False
  add_recency: bool = True
  before_gate: bool = False
  skip_read: bool = False
  latest_margin: float = 0.0
  latest_alike: float = -1.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], rng: jax.Array,
               mem: memory.ChunkedMemory, lines_BxExC: jax.Array, mask_BxE: jax.Array,
               content_BxExC: jax.Array):
    """Returns ((next query_BxC, next read_BxH), (readout_BxC, similarity to every line_BxE
    (with the order terms), read KL_B)).

    The carry is the query and the places of the lines the hops so far read, oldest first
    (`_NOT_READ` until H hops have); the last is the previous hop's line, the before gate's
    cutoff.
    `content_BxExC` are the lines' latents before temporal encoding (`nearest_content` updates
    the query from the nearest line's)."""
    query_BxC, read_BxH = carry
    cutoff_B = jnp.where(read_BxH[:, -1] == _NOT_READ, _NO_CUTOFF, read_BxH[:, -1])
    skip_BxH = read_BxH if self.skip_read else None
    c = query_BxC.shape[-1]
    recency = (self.param("recency", nn.initializers.constant(self.recency), ())
               if self.learn_recency else self.recency)
    if not self.add_recency:
      recency = 0.0
    gate_B = None
    if self.before_gate:
      gate_B = nn.sigmoid(nn.Dense(
          1, kernel_init=nn.initializers.zeros,
          bias_init=nn.initializers.constant(_BEFORE_GATE_BIAS),
          name="before_gate")(query_BxC.astype(jnp.float32))[:, 0])
    noise_BxNxK, kl_B = None, jnp.zeros(query_BxC.shape[:1], jnp.float32)
    sample = self.read_noise and self.sample_noise
    if self.read_noise:
      # One scalar log-std per example: Larimar's K*C -> K noise network, made small.
      log_std_B = nn.Dense(1, name="read_log_std")(query_BxC.astype(jnp.float32))[:, 0]
      std_Bx1x1 = jnp.exp(log_std_B)[:, None, None]
    if sample:
      # Drawn per chunk, so the chunks of a bigger line bucket leave the real chunks' noise alone.
      noise_BxNxK = std_Bx1x1 * memory.normal_per_index(rng, mem.memory_BxNxKxC.shape[:3])
    readout_BxC, weights_BxNxK, _ = memory.read_chunked(
        mem, query_BxC, combine=self.combine, weight_noise_BxNxK=noise_BxNxK,
        recency=recency, cutoff_B=cutoff_B, gate_B=gate_B, read_BxH=skip_BxH,
        latest_margin=self.latest_margin, latest_alike=self.latest_alike)
    if sample:
      var_Bx1x1 = jnp.square(std_Bx1x1)
      kl_BxNxK = 0.5 * (jnp.square(weights_BxNxK) + var_Bx1x1 - 1.0 - jnp.log(var_Bx1x1))
      # Empty chunks (all padding) are not memories of the example: counting them would make
      # the KL grow with the line bucket.
      real_BxNx1 = jnp.any(mem.keep_BxNxL, axis=-1, keepdims=True)
      kl_B = jnp.sum(jnp.where(real_BxNx1, kl_BxNxK, 0.0), axis=(1, 2))
    place_BxE = memory.line_place(mask_BxE)
    sims_BxE = memory.cosine(readout_BxC, lines_BxExC) + memory.order_bonus(
        place_BxE, recency, cutoff_B, gate_B, skip_BxH)
    sims_BxE = jnp.where(mask_BxE, sims_BxE, _MASKED_SIM)
    sims_BxE = memory.latest_within(sims_BxE, place_BxE, self.latest_margin, lines_BxExC,
                                    self.latest_alike)
    pick_B = jnp.argmax(sims_BxE, axis=-1)
    picked_Bx1 = jnp.take_along_axis(place_BxE, pick_B[:, None], axis=1)
    # The oldest entry drops out: with H entries, it is never one a later hop needs.
    next_read_BxH = jnp.concatenate([read_BxH[:, 1:], picked_Bx1], axis=1)
    if self.update == "gru":
      next_BxC, _ = nn.GRUCell(c, dtype=self.dtype, name="gru")(query_BxC, readout_BxC)
    elif self.update == "add":
      next_BxC = query_BxC + readout_BxC
    elif self.update == "linear":
      next_BxC = nn.Dense(c, dtype=self.dtype, name="linear")(
          jnp.concatenate([query_BxC, readout_BxC.astype(query_BxC.dtype)], axis=-1))
    elif self.update == "nearest_fact":
      next_BxC = jnp.take_along_axis(lines_BxExC, pick_B[:, None, None], axis=1)[:, 0]
    elif self.update == "nearest_content":
      # The GRU reads what the found line says, not where it stands: a temporally encoded
      # readout carries the line's neighbourhood, and a second hop fed with it reads the lines
      # next to the first hop's (measured on qa2, BUILD_NOTES.md).
      found_BxC = jnp.take_along_axis(content_BxExC, pick_B[:, None, None], axis=1)[:, 0]
      next_BxC, _ = nn.GRUCell(c, dtype=self.dtype, name="gru")(query_BxC, found_BxC)
    else:
      raise ValueError(f"hop update must be one of {UPDATE_RULES}, got {self.update!r}")
    return ((next_BxC.astype(query_BxC.dtype), next_read_BxH),
            (readout_BxC, sims_BxE, kl_B))


class HopOperator(nn.Module):
  """Scans `Hop` over `num_hops` hops, sharing its parameters across hops."""

  num_hops: int
  update: str = "gru"
  read_noise: bool = False
  combine: str = "nearest_line"
  dtype: jnp.dtype = jnp.float32
  recency: float = 0.0
  learn_recency: bool = False
  before_gate: bool = False
  skip_read: bool = False
  latest_margin: float = 0.0
  latest_alike: float = -1.0
  eval_recency: bool = True  # reads without an rng add the recency bonus too

  @nn.compact
  def __call__(self, query_BxC: jax.Array, mem: memory.ChunkedMemory, lines_BxExC: jax.Array,
               mask_BxE: jax.Array, rng: jax.Array | None = None,
               content_BxExC: jax.Array | None = None):
    """Returns (readouts_BxHxC, sims_BxHxE, kl_B summed over hops).

    Read noise is drawn only when the operator has `read_noise` and an rng is given; without
    an rng the recency bonus is added only with `eval_recency`.
    `content_BxExC`: the lines before temporal encoding (default `lines_BxExC`).
    """
    noisy = self.read_noise and rng is not None
    rngs_H = jax.random.split(rng if noisy else jax.random.PRNGKey(0), self.num_hops)
    scan = nn.scan(Hop, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                   out_axes=0,
                   length=self.num_hops)
    hop = scan(self.update, self.read_noise, noisy, self.combine, self.recency,
               self.learn_recency, self.eval_recency or rng is not None, self.before_gate,
               self.skip_read, self.latest_margin, self.latest_alike, self.dtype, name="hop")
    lines_BxExC = lines_BxExC.astype(jnp.float32)
    content_BxExC = lines_BxExC if content_BxExC is None else content_BxExC.astype(jnp.float32)
    b = query_BxC.shape[0]
    carry = (query_BxC, jnp.full((b, self.num_hops), _NOT_READ, jnp.float32))
    _, (readouts_HxBxC, sims_HxBxE, kl_HxB) = hop(
        carry, rngs_H, mem, lines_BxExC, mask_BxE, content_BxExC)
    return (jnp.swapaxes(readouts_HxBxC, 0, 1), jnp.swapaxes(sims_HxBxE, 0, 1),
            kl_HxB.sum(axis=0))
