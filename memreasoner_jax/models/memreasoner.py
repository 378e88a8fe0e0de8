"""MemReasoner as pure functions over one parameter pytree.

`MemReasoner` holds the Flax modules and composes them: encode lines and query, add temporal
order, write the memory, scan the hops, condition the decoder. Its methods take `params`
explicitly and jit cleanly.

The batch is a dict of arrays (B batch, E lines, T tokens per line, Q query tokens, A decoder
tokens, S supporting facts):
  context_BxExT    int32  each line [BOS] tokens [EOS], PAD-padded; padding lines all PAD
  line_mask_BxE    bool   True for real lines
  query_BxQ        int32  [BOS] question [EOS]
  answer_BxA       int32  [BOS] prompt answer [EOS]; input [:, :-1], targets [:, 1:]
  answer_mask_BxA  bool   True at the answer tokens and final EOS (what is predicted)
  prompt_len_B     int32  leading tokens of answer_BxA that are BOS + prompt
  line_rows_SxM    int32  optional: the real lines of each of S equal parts of the batch, as row
                          indices into that part's (B/S)*E lines (data/batching.py); the
                          encoder then reads only these
  support_BxS      int32  supporting line indices in hop order, -1 padded
  answer_lines_BxE bool   lines holding a word of the answer (losses.answer_read_weight)
  question_lines_BxE bool lines holding a word of the question (losses.question_read_weight)
  sf_weight_B      float  1 for examples in the supporting-fact supervised subset
  example_weight_B float  1 for real examples, 0 for batch padding
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from memreasoner_jax.data import special_tokens
from memreasoner_jax import models
from memreasoner_jax.models import attention
from memreasoner_jax.models import copying
from memreasoner_jax.models import decoder as decoder_lib
from memreasoner_jax.models import encoder as encoder_lib
from memreasoner_jax.models import hops as hops_lib
from memreasoner_jax.models import losses
from memreasoner_jax.models import memory
from memreasoner_jax.models import temporal as temporal_lib

Params = models.Params
CONDITIONS = ("readouts", "facts", "both")
REMAT = ("none", "blocks")
FACT_GRADIENTS = ("none", "straight_through")


class Reasoning(NamedTuple):
  """Everything the model computes before decoding, for losses and explanations."""

  z_BxExC: jax.Array  # line latents from the encoder
  zt_BxExC: jax.Array  # after temporal encoding: what is written to memory
  query_BxC: jax.Array  # the query latent
  mem: memory.ChunkedMemory
  readouts_BxHxC: jax.Array
  # Cosine of each hop's readout with every line, plus any recency bonus (padding very low).
  sims_BxHxE: jax.Array
  kl_B: jax.Array
  cond_BxNxC: jax.Array  # the decoder's conditioning vectors
  copy: copying.CopySource | None = None  # the selected lines' tokens (model.decoder.copy)


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first impossible model setting."""
  def need(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
      raise ValueError(f"config model.{key} must be {what}, got {value!r}")

  need(cfg.latent_size >= 1, "latent_size", ">= 1", cfg.latent_size)
  need(cfg.memory.num_slots >= 1, "memory.num_slots (K)", ">= 1", cfg.memory.num_slots)
  need(cfg.memory.lines_per_chunk >= 1, "memory.lines_per_chunk", ">= 1",
       cfg.memory.lines_per_chunk)
  need(cfg.memory.mode in ("single", "chunked"), "memory.mode", "single or chunked",
       cfg.memory.mode)
  need(cfg.memory.pinv in memory.PINV_CHOICES, "memory.pinv", f"one of {memory.PINV_CHOICES}",
       cfg.memory.pinv)
  need(cfg.memory.get("recency", 0.0) >= 0, "memory.recency", ">= 0",
       cfg.memory.get("recency", 0.0))
  need(cfg.memory.get("latest_margin", 0.0) >= 0, "memory.latest_margin", ">= 0",
       cfg.memory.get("latest_margin", 0.0))
  need(-1 <= cfg.memory.get("latest_alike", -1.0) <= 1, "memory.latest_alike",
       "between -1 and 1 (a cosine similarity)", cfg.memory.get("latest_alike", -1.0))
  need(cfg.memory.combine in memory.COMBINE_RULES, "memory.combine",
       f"one of {memory.COMBINE_RULES}", cfg.memory.combine)
  need(cfg.hops.num_hops >= 1, "hops.num_hops", ">= 1", cfg.hops.num_hops)
  need(cfg.hops.update_rule in hops_lib.UPDATE_RULES, "hops.update_rule",
       f"one of {hops_lib.UPDATE_RULES}", cfg.hops.update_rule)
  need(cfg.temporal.kind in ("bigru", "none"), "temporal.kind", "bigru or none",
       cfg.temporal.kind)
  need(cfg.temporal.kind != "bigru" or cfg.latent_size % 2 == 0, "latent_size",
       "even for the BiGRU (C/2 units per direction)", cfg.latent_size)
  need(cfg.decoder.condition in CONDITIONS, "decoder.condition", f"one of {CONDITIONS}",
       cfg.decoder.condition)
  need(cfg.decoder.fact_gradient in FACT_GRADIENTS, "decoder.fact_gradient",
       f"one of {FACT_GRADIENTS}", cfg.decoder.fact_gradient)
  need(cfg.encoder.pooling in ("first", "mean"), "encoder.pooling", "first or mean",
       cfg.encoder.pooling)
  need(cfg.encoder.encode_chunk >= 1, "encoder.encode_chunk", ">= 1", cfg.encoder.encode_chunk)
  for part in ("encoder", "decoder"):
    sub = cfg[part]
    need(sub.d_model % sub.num_heads == 0, f"{part}.d_model", "divisible by num_heads",
         sub.d_model)
  need(cfg.get("attention", "xla") in attention.IMPLEMENTATIONS, "attention",
       f"one of {attention.IMPLEMENTATIONS}", cfg.get("attention"))
  need(cfg.get("remat", "none") in REMAT, "remat", f"one of {REMAT}", cfg.get("remat"))
  models.check_dtype(cfg)


def _check_batch(batch: dict[str, jax.Array]) -> None:
  ctx = batch["context_BxExT"]
  if ctx.ndim != 3:
    raise ValueError(f"batch['context_BxExT'] must have rank 3 (B x E x T), got {ctx.shape}")
  if batch["line_mask_BxE"].shape != ctx.shape[:2]:
    raise ValueError(f"batch['line_mask_BxE'] must have shape {ctx.shape[:2]} (B x E), "
                     f"got {batch['line_mask_BxE'].shape}")
  if batch["query_BxQ"].ndim != 2 or batch["query_BxQ"].shape[0] != ctx.shape[0]:
    raise ValueError(f"batch['query_BxQ'] must have shape ({ctx.shape[0]}, Q), "
                     f"got {batch['query_BxQ'].shape}")


class MemReasoner:
  """The model: Flax modules plus the pure functions that compose them."""

  def __init__(self, config: ml_collections.ConfigDict):
    validate(config)
    self.config = config
    dtype = jnp.dtype(config.dtype)
    implementation = config.get("attention", "xla")
    remat = config.get("remat", "none") == "blocks"
    self.encoder = encoder_lib.Encoder(config.encoder, config.latent_size, dtype, implementation,
                                       remat)
    self.temporal = temporal_lib.TemporalEncoder(config.temporal.kind, config.temporal.residual,
                                                 dtype)
    self.hops = hops_lib.HopOperator(config.hops.num_hops, config.hops.update_rule,
                                     config.memory.read_noise, config.memory.combine, dtype,
                                     config.memory.get("recency", 0.0),
                                     config.memory.get("learn_recency", False),
                                     config.hops.get("before_gate", False),
                                     config.hops.get("skip_read", False),
                                     config.memory.get("latest_margin", 0.0),
                                     config.memory.get("latest_alike", -1.0),
                                     config.memory.get("eval_recency", True))
    self.decoder = decoder_lib.Decoder(config.decoder, dtype, implementation, remat)
    self.copy_head = (copying.CopyHead(config.decoder.d_model, config.decoder.vocab_size,
                                       config.decoder.get("copy_written", False))
                      if config.decoder.get("copy", False) else None)
    self.pinv = memory.resolve_pinv(config.memory.pinv)  # "auto" follows the platform

  @property
  def chunked(self) -> bool:
    return self.config.memory.mode == "chunked"

  def recency(self, params: Params) -> float | jax.Array:
    """The reads' bonus for later lines: the config's, or the learned one."""
    if self.config.memory.get("learn_recency", False):
      return params["hops"]["hop"]["recency"]
    return self.config.memory.get("recency", 0.0)

  @property
  def lines_per_chunk(self) -> int:
    """Lines per memory; 0 writes all lines into one memory."""
    return self.config.memory.lines_per_chunk if self.chunked else 0

  @property
  def num_slots(self) -> int:
    """K of each memory: the single memory's slots, or one slot per line of a chunk."""
    mem = self.config.memory
    return mem.lines_per_chunk if self.chunked else mem.num_slots

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Params:
    """Float32 parameters for batches shaped like `batch` (any B, E works afterwards).

    Jitted: one compilation is far cheaper than running each initialiser eagerly.
    """
    _check_batch(batch)
    return jax.jit(self._init)(rng, batch)

  def _init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Params:
    k_enc, k_tmp, k_hop, k_dec = jax.random.split(rng, 4)
    c = self.config.latent_size
    b, e, _ = batch["context_BxExT"].shape
    z_BxExC = jnp.zeros((b, e, c))
    mask_BxE = batch["line_mask_BxE"]
    prior_KxC = jnp.eye(self.num_slots, c)
    mem = memory.write_chunked(z_BxExC + jnp.eye(e, c), mask_BxE, prior_KxC,
                               lines_per_chunk=self.lines_per_chunk)
    cond_BxNxC = jnp.zeros((b, 1, c))
    params = {
        "encoder": self.encoder.init(k_enc, batch["query_BxQ"])["params"],
        "temporal": self.temporal.init(k_tmp, z_BxExC, mask_BxE).get("params", {}),
        "memory": {"prior": prior_KxC},
        "hops": self.hops.init(k_hop, z_BxExC[:, 0], mem, z_BxExC, mask_BxE)["params"],
        "decoder": self.decoder.init(k_dec, batch["answer_BxA"], cond_BxNxC)["params"],
    }
    if self.copy_head is not None:
      dec = self.config.decoder
      source = copying.CopySource(jnp.zeros((b, 1, self.config.encoder.d_model)),
                                  jnp.zeros((b, 1), jnp.int32))
      params["copy"] = self.copy_head.init(
          jax.random.fold_in(k_dec, 1), jnp.zeros((b, 1, dec.d_model)), source,
          jnp.zeros((b, 1, 2), jnp.int32))["params"]
    return params

  def encode(self, params: Params, tokens_NxT: jax.Array) -> jax.Array:
    """Latents_NxC of N token sequences, `encoder.encode_chunk` sequences at a time."""
    chunk = self.config.encoder.encode_chunk
    apply = lambda t: self.encoder.apply({"params": params["encoder"]}, t)
    n, t = tokens_NxT.shape
    if n <= chunk:
      return apply(tokens_NxT)
    steps = -(-n // chunk)
    padded = jnp.pad(tokens_NxT, ((0, steps * chunk - n), (0, 0)))
    latents = jax.lax.map(apply, padded.reshape(steps, chunk, t))
    return latents.reshape(steps * chunk, -1)[:n]

  def encode_lines(self, params: Params, context_BxExT: jax.Array,
                   rows_SxM: jax.Array | None = None) -> jax.Array:
    """Latents_BxExC of every line slot; with `rows_SxM` only the listed lines are encoded
    (zeros elsewhere).

    The batch is split into S parts (one per device, as the batch is sharded) and each part
    gathers its own lines, so the gather and scatter stay on the device that holds them.
    """
    b, e, t = context_BxExT.shape
    if rows_SxM is None:
      return self.encode(params, context_BxExT.reshape(b * e, t)).reshape(b, e, -1)
    s, m = rows_SxM.shape
    if b % s:
      raise ValueError(f"batch['line_rows_SxM'] has {s} parts, which do not divide B={b}")
    lines_SxRxT = context_BxExT.reshape(s, b * e // s, t)
    # Unused slots point past the part's rows: they read a padding line and are dropped below.
    packed_SxMxT = jnp.take_along_axis(lines_SxRxT, rows_SxM[..., None], axis=1, mode="fill",
                                       fill_value=special_tokens.PAD_ID)
    z_SxMxC = self.encode(params, packed_SxMxT.reshape(s * m, t)).reshape(s, m, -1)
    z_SxRxC = jnp.zeros(lines_SxRxT.shape[:2] + z_SxMxC.shape[-1:], z_SxMxC.dtype)
    z_SxRxC = z_SxRxC.at[jnp.arange(s)[:, None], rows_SxM].set(z_SxMxC, mode="drop")
    return z_SxRxC.reshape(b, e, -1)

  def reason(self, params: Params, batch: dict[str, jax.Array], *,
             rng: jax.Array | None = None) -> Reasoning:
    """Encoder, temporal encoding, memory write and hops. An rng turns on training noise."""
    _check_batch(batch)
    cfg = self.config
    context_BxExT = batch["context_BxExT"]
    mask_BxE = batch["line_mask_BxE"].astype(bool)
    z_BxExC = self.encode_lines(params, context_BxExT, batch.get("line_rows_SxM"))
    z_BxExC = z_BxExC * mask_BxE[..., None]
    query_BxC = self.encode(params, batch["query_BxQ"])
    # Float32 from here on, as the memory algebra is: the written latents and the ones returned
    # (for the losses and explanations) are then one array, not a bf16 output and an unrounded
    # copy that XLA may fuse into the write.
    zt_BxExC = self.temporal.apply({"params": params["temporal"]}, z_BxExC,
                                   mask_BxE).astype(jnp.float32)
    write_rng, read_rng = (None, None) if rng is None else jax.random.split(rng)
    mem = memory.write_chunked(
        zt_BxExC, mask_BxE, params["memory"]["prior"],
        lines_per_chunk=self.lines_per_chunk,
        noise_std=cfg.memory.write_noise_std if rng is not None else 0.0,
        rng=write_rng, pinv=self.pinv)
    readouts_BxHxC, sims_BxHxE, kl_B = self.hops.apply(
        {"params": params["hops"]}, query_BxC, mem, zt_BxExC, mask_BxE, read_rng, z_BxExC)
    facts_BxHxC = self._select_facts(zt_BxExC, sims_BxHxE, mask_BxE)
    cond_BxNxC = {"readouts": readouts_BxHxC, "facts": facts_BxHxC,
                  "both": jnp.concatenate([readouts_BxHxC, facts_BxHxC], axis=1)}[
                      cfg.decoder.condition]
    copy = None if self.copy_head is None else self._copy_source(params, batch, sims_BxHxE)
    return Reasoning(z_BxExC, zt_BxExC, query_BxC, mem, readouts_BxHxC, sims_BxHxE, kl_B,
                     cond_BxNxC, copy)

  def _copy_source(self, params: Params, batch: dict[str, jax.Array],
                   sims_BxHxE: jax.Array) -> copying.CopySource:
    """The tokens and encoder states of each hop's most similar line."""
    if "recon_BxExT" in batch:  # the lines in the decoder's ids differ from the encoder's
      raise ValueError("config model.decoder.copy needs the decoder to use the encoder's "
                       "tokenizer (config data.decoder_tokenizer='')")
    context_BxExT = batch["context_BxExT"]
    b, _, t = context_BxExT.shape
    picked_BxH = jnp.argmax(sims_BxHxE, axis=-1)
    tokens_BxHxT = jnp.take_along_axis(context_BxExT, picked_BxH[..., None], axis=1)
    tokens_NxT = tokens_BxHxT.reshape(-1, t)
    states_NxTxD = self.encoder.apply({"params": params["encoder"]}, tokens_NxT, hidden_only=True)
    return copying.CopySource(states_NxTxD.reshape(b, -1, states_NxTxD.shape[-1]),
                              tokens_BxHxT.reshape(b, -1))

  def _select_facts(self, zt_BxExC: jax.Array, sims_BxHxE: jax.Array,
                    mask_BxE: jax.Array) -> jax.Array:
    """Each hop's most similar line's latent (facts_BxHxC), with the configured gradient."""
    pick_BxHxE = jax.nn.one_hot(jnp.argmax(sims_BxHxE, axis=-1), sims_BxHxE.shape[-1])
    if self.config.decoder.fact_gradient == "straight_through":
      soft_BxHxE = jax.nn.softmax(sims_BxHxE / self.config.decoder.fact_temperature, axis=-1,
                                  where=mask_BxE[:, None, :])
      soft_BxHxE = jnp.where(mask_BxE[:, None, :], soft_BxHxE, 0.0)
      pick_BxHxE = pick_BxHxE + soft_BxHxE - jax.lax.stop_gradient(soft_BxHxE)
    return jnp.einsum("bhe,bec->bhc", pick_BxHxE, zt_BxExC,
                      precision=jax.lax.Precision.HIGHEST)

  def decode(self, params: Params, tokens_BxT: jax.Array, cond_BxNxC: jax.Array,
             positions_BxW: jax.Array | None = None,
             copy: copying.CopySource | None = None) -> jax.Array:
    """Teacher-forced next-token logits_BxTxV, or only at `positions_BxW` (logits_BxWxV);
    with a copy source, log-probabilities that may copy its tokens."""
    return self.decode_copying(params, tokens_BxT, cond_BxNxC, positions_BxW, copy)[0]

  def decode_copying(self, params: Params, tokens_BxT: jax.Array, cond_BxNxC: jax.Array,
                     positions_BxW: jax.Array | None, copy: copying.CopySource | None
                     ) -> tuple[jax.Array, copying.Pointer | None]:
    """`decode`, and with a copy source also where each position points (for the loss).

    The output layer runs only where logits are asked for: with a large vocabulary it costs
    about as much as the rest of a small decoder.
    """
    hidden_BxTxD, _ = self.decoder.apply({"params": params["decoder"]}, tokens_BxT, cond_BxNxC,
                                         head=False)
    written_BxTx2 = copying.written_tokens(tokens_BxT)
    if positions_BxW is not None:
      hidden_BxTxD = jnp.take_along_axis(hidden_BxTxD, positions_BxW[..., None], axis=1)
      written_BxTx2 = jnp.take_along_axis(written_BxTx2, positions_BxW[..., None], axis=1)
    return self._head(params, hidden_BxTxD, copy, written_BxTx2)

  def _head(self, params: Params, hidden_BxTxD: jax.Array, copy: copying.CopySource | None,
            written_BxTx2: jax.Array) -> tuple[jax.Array, copying.Pointer | None]:
    """The output layer: the tied head, mixed with copying where there is a source.
    `written_BxTx2`: the token at each position and the one before (`copying.written_tokens`)."""
    logits_BxTxV = decoder_lib.logits(params["decoder"], hidden_BxTxD,
                                      jnp.dtype(self.config.dtype))
    if copy is None:
      return logits_BxTxV, None
    pointer = self.copy_head.apply({"params": params["copy"]}, hidden_BxTxD, copy, written_BxTx2)
    return copying.mix(logits_BxTxV, pointer, copy.tokens_BxM), pointer

  def batch_shapes(self, batch_size: int = 1) -> dict[str, jax.ShapeDtypeStruct]:
    return batch_shapes(batch_size)

  def loss(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array | None,
           step: jax.Array | int, cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    return losses.loss_fn(self, params, batch, rng, step, cfg)

  def loss_and_generate(self, params: Params, batch: dict[str, jax.Array],
                        cfg: ml_collections.ConfigDict,
                        max_new_tokens: int) -> tuple[jax.Array, dict, models.Generated]:
    """`loss` without noise and `generate`, from one `reason` (the context encoded once)."""
    reasoning = self.reason(params, batch)
    total, metrics = losses.loss_fn(self, params, batch, None, 0, cfg, reasoning=reasoning)
    return total, metrics, self._generate(params, batch, reasoning, max_new_tokens)

  def generate(self, params: Params, batch: dict[str, jax.Array], max_new_tokens: int, *,
               use_cache: bool = True) -> models.Generated:
    """Greedy answers after each example's prompt.

    The prompts are read in one decoder call into a KV cache (prefill); then each example feeds
    one token per step at its own position. Without the cache each step re-runs the whole
    sequence (for checking the cache).
    """
    reasoning = self.reason(params, batch)
    if use_cache:
      return self._generate(params, batch, reasoning, max_new_tokens)
    cond_BxNxC = reasoning.cond_BxNxC
    prompt_len_B = batch["prompt_len_B"]
    self._length(batch, max_new_tokens)
    copy = reasoning.copy
    buffer_BxL = jnp.pad(batch["answer_BxA"], ((0, 0), (0, max_new_tokens)))
    rows_B = jnp.arange(prompt_len_B.shape[0])

    def step(buffer_BxL, j):
      logits_BxV = self.decode(params, buffer_BxL, cond_BxNxC, (prompt_len_B + j - 1)[:, None],
                               copy)
      logits_BxV = logits_BxV[:, 0]
      token_B = jnp.argmax(logits_BxV, axis=-1).astype(buffer_BxL.dtype)
      return buffer_BxL.at[rows_B, prompt_len_B + j].set(token_B), (token_B, logits_BxV)

    _, (tokens_NxB, logits_NxBxV) = jax.lax.scan(step, buffer_BxL, jnp.arange(max_new_tokens))
    return models.Generated(tokens_NxB.T, jnp.swapaxes(logits_NxBxV, 0, 1),
                            reasoning.sims_BxHxE)

  def _length(self, batch: dict[str, jax.Array], max_new_tokens: int) -> int:
    """Positions a generation may use: the prompt width and the new tokens."""
    length = batch["answer_BxA"].shape[1] + max_new_tokens
    if length > self.config.decoder.max_len:
      raise ValueError(f"prompt width {batch['answer_BxA'].shape[1]} + max_new_tokens "
                       f"{max_new_tokens} exceeds decoder.max_len={self.config.decoder.max_len}")
    return length

  def _generate(self, params: Params, batch: dict[str, jax.Array], reasoning: Reasoning,
                max_new_tokens: int) -> models.Generated:
    """Prefill answer_BxA into a cache, then greedy steps from each example's prompt end."""
    prompt_BxP = batch["answer_BxA"]
    prompt_len_B = batch["prompt_len_B"]
    dtype = jnp.dtype(self.config.dtype)
    cache = decoder_lib.init_cache(self.config.decoder, prompt_BxP.shape[0],
                                   self._length(batch, max_new_tokens), dtype)
    hidden_BxPxD, cache = self.decoder.apply({"params": params["decoder"]}, prompt_BxP,
                                             reasoning.cond_BxNxC, cache, 0, head=False)
    last_Bx1 = (prompt_len_B - 1)[:, None]
    last_Bx1xD = jnp.take_along_axis(hidden_BxPxD, last_Bx1[..., None], axis=1)
    last_written_Bx1x2 = jnp.take_along_axis(copying.written_tokens(prompt_BxP),
                                             last_Bx1[..., None], axis=1)
    head = lambda hidden_Bx1xD, written_Bx1x2: self._head(params, hidden_Bx1xD, reasoning.copy,
                                                          written_Bx1x2)[0]
    tokens_BxN, logits_BxNxV = decoder_lib.greedy(
        self.decoder, params["decoder"], reasoning.cond_BxNxC, cache,
        head(last_Bx1xD, last_written_Bx1x2)[:, 0], prompt_len_B, max_new_tokens, head=head,
        last_token_B=last_written_Bx1x2[:, 0, 0])
    return models.Generated(tokens_BxN.astype(prompt_BxP.dtype), logits_BxNxV,
                            reasoning.sims_BxHxE)


def batch_shapes(batch_size: int = 1, lines: int = 2, line_tokens: int = 8, query_tokens: int = 8,
                 answer_tokens: int = 8, supports: int = 2) -> dict[str, jax.ShapeDtypeStruct]:
  """Shape-only stand-ins for a batch, for `jax.eval_shape(model.init, ...)`."""
  spec = jax.ShapeDtypeStruct
  b, e = batch_size, lines
  return {
      "context_BxExT": spec((b, e, line_tokens), jnp.int32),
      "line_mask_BxE": spec((b, e), jnp.bool_),
      "query_BxQ": spec((b, query_tokens), jnp.int32),
      "answer_BxA": spec((b, answer_tokens), jnp.int32),
      "answer_mask_BxA": spec((b, answer_tokens), jnp.bool_),
      "prompt_len_B": spec((b,), jnp.int32),
      "support_BxS": spec((b, supports), jnp.int32),
      "answer_lines_BxE": spec((b, e), jnp.bool_),
      "question_lines_BxE": spec((b, e), jnp.bool_),
      "sf_weight_B": spec((b,), jnp.float32),
      "example_weight_B": spec((b,), jnp.float32),
  }


def parameter_counts(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Parameters per part (encoder, temporal, memory, hops, decoder), without allocating any."""
  shapes = jax.eval_shape(MemReasoner(config).init, jax.random.PRNGKey(0), batch_shapes())
  return {part: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
          for part, tree in shapes.items()}
