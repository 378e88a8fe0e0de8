"""The training objective: answer, autoencoding, read KL, supporting-fact and answer-read terms.

Every term masks padding (tokens, lines, examples) and is a mean over what is real, so adding
padding to a batch changes no loss.
"""

from typing import Any, TYPE_CHECKING

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memreasoner_jax.data import special_tokens
from memreasoner_jax import models
from memreasoner_jax.models import copying
from memreasoner_jax.models import memory

if TYPE_CHECKING:
  from memreasoner_jax.models import memreasoner


def loss_config() -> ml_collections.ConfigDict:
  """The `loss` section of a config."""
  cfg = ml_collections.ConfigDict()
  cfg.answer_weight = 1.0  # answer cross-entropy
  # Decoder positions scored from each prompt's end: the answer and its EOS must fit (an answer
  # longer than the generated tokens cannot be answered either). 0 scores every position.
  cfg.answer_positions = 0
  cfg.ae_weight = 1.0  # reconstruct sampled lines from their own latent (Larimar)
  # Reconstruct them from the memory read of their latent (Larimar). Without write noise, and
  # with no more lines per memory than slots, the read of a written latent is that latent (the
  # read projects onto the stored lines), so this term equals ae_loss and is not decoded twice
  # (losses.reads_back).
  cfg.ae_memory_weight = 1.0
  cfg.ae_lines = 2  # lines reconstructed per example (facts and distractors alike)
  cfg.kl_weight = 0.0  # KL of the noisy read weights (needs model.memory.read_noise)
  cfg.kl_cycle_steps = 2000  # cyclic KL schedule: ramp 0 -> 1 over half a cycle, then hold
  cfg.sf_weight = 1.0  # supporting-fact cross-entropy, on the supervised subset only
  cfg.sf_temperature = 0.1  # tau in softmax(sim(readout_t, line_i) / tau)
  # A read signal without supporting-fact labels, on every example: minus the log of the read's
  # softmax mass (at sf_temperature) on the lines that hold a word of the answer
  # (answer_lines_BxE). `answer_read_hops`: "last" (the hop whose line states the answer: qa1,
  # qa2) or "all" (every hop's line names part of the answer: variable tracking).
  cfg.answer_read_weight = 0.0
  cfg.answer_read_hops = "last"
  # The same for the first hop, toward the lines that hold a word of the question other than a
  # function word (question_lines_BxE): the football's lines for "Where is the football?".
  cfg.question_read_weight = 0.0
  # Both read losses also weigh each example's read against the lines of the batch's other
  # examples that hold none of its question's or answer's words: a 1k-token training context
  # holds a few dozen distractor lines, the batch about B times as many, a haystack thousands.
  # Needs line_words_BxExW and read_words_BxK (Batcher(read_words=True)). `foreign_hops`:
  # "all" (every hop a read loss trains) or "first" (the first hop's read alone: a later hop
  # looks for a line like the ones found before, and another story's lines about the same actor
  # differ from its own only in what the query cannot know).
  cfg.foreign_negatives = False
  cfg.foreign_hops = "all"
  # With model.decoder.copy: the pointer's and the gate's terms (models/copying.py), so that
  # answers are copied wherever the selected lines hold them.
  cfg.copy_weight = 1.0
  return cfg


def cyclic_weight(step: jax.Array, cycle_steps: int) -> jax.Array:
  """Cyclic annealing: 0 -> 1 linearly over the first half of each cycle, then 1."""
  phase = jnp.mod(step, cycle_steps) / cycle_steps
  return jnp.minimum(1.0, 2.0 * phase)


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-9)


def token_cross_entropy(logits_NxTxV: jax.Array, targets_NxT: jax.Array,
                        weights_NxT: jax.Array) -> jax.Array:
  ce = optax.softmax_cross_entropy_with_integer_labels(logits_NxTxV.astype(jnp.float32),
                                                       targets_NxT)
  return _masked_mean(ce, weights_NxT)


def answer_terms(logits_BxTxV: jax.Array, targets_BxT: jax.Array, weights_BxT: jax.Array,
                 example_B: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(answer cross-entropy, fraction of examples with every answer token right).

  Shared with the full-attention baseline, so both report the same answer metrics.
  """
  answer_loss = token_cross_entropy(logits_BxTxV, targets_BxT, weights_BxT)
  wrong_BxT = (jnp.argmax(logits_BxTxV, axis=-1) != targets_BxT) & (weights_BxT > 0)
  exact_B = (~jnp.any(wrong_BxT, axis=1)).astype(jnp.float32)
  return answer_loss, _masked_mean(exact_B, example_B)


def answer_window(cfg: ml_collections.ConfigDict, width: int) -> int:
  """Positions scored from each prompt's end (`answer_positions`), at most `width`."""
  positions = cfg.get("answer_positions", 0)
  return min(positions, width) if positions > 0 else width


def _answer_terms_at_prompt_end(model: "memreasoner.MemReasoner", params: models.Params,
                                batch: dict[str, jax.Array], r: "memreasoner.Reasoning",
                                cfg: ml_collections.ConfigDict
                                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`answer_terms` with the output layer only at the W positions from each prompt's end, and
  the copy terms (0 without copying)."""
  answer_BxA = batch["answer_BxA"]
  width = answer_BxA.shape[1] - 1
  pos_BxW = batch["prompt_len_B"][:, None] - 1 + jnp.arange(answer_window(cfg, width))[None]
  inside_BxW = pos_BxW < width
  pos_BxW = jnp.minimum(pos_BxW, width - 1)
  logits_BxWxV, pointer = model.decode_copying(params, answer_BxA[:, :-1], r.cond_BxNxC,
                                               pos_BxW, r.copy)
  example_B = batch["example_weight_B"]
  targets_BxW = jnp.take_along_axis(answer_BxA[:, 1:], pos_BxW, axis=1)
  weights_BxW = (jnp.take_along_axis(batch["answer_mask_BxA"][:, 1:], pos_BxW, axis=1)
                 & inside_BxW) * example_B[:, None]
  copy_loss = jnp.zeros(())
  if pointer is not None:
    pointer_BxW, gate_BxW = copying.copy_terms(pointer, r.copy.tokens_BxM, targets_BxW)
    copy_loss = _masked_mean(pointer_BxW + gate_BxW, weights_BxW)
  return (*answer_terms(logits_BxWxV, targets_BxW, weights_BxW, example_B), copy_loss)


def _sample_lines(rng: jax.Array, mask_BxE: jax.Array, count: int) -> jax.Array:
  """`count` distinct line indices per example, real lines first (Gumbel top-k).

  Each line's noise comes from its own index, so appending padding lines samples the same lines.
  """
  b, e = mask_BxE.shape
  per_line = lambda i: jax.random.gumbel(jax.random.fold_in(rng, i), (b,))
  gumbel_BxE = jax.vmap(per_line, out_axes=1)(jnp.arange(e))
  _, idx_BxR = jax.lax.top_k(jnp.where(mask_BxE, gumbel_BxE, -1e9), count)
  return idx_BxR


def _reconstruction_losses(model: "memreasoner.MemReasoner", params: models.Params,
                           batch: dict[str, jax.Array], r: "memreasoner.Reasoning", rng: jax.Array,
                           count: int) -> tuple[jax.Array, jax.Array]:
  """Larimar's two autoencoding terms on `count` sampled lines per example."""
  mask_BxE = batch["line_mask_BxE"].astype(bool)
  b, e = mask_BxE.shape
  count = min(count, e)
  idx_BxR = _sample_lines(rng, mask_BxE, count)
  # Lines in the decoder's ids: the context itself unless the two tokenizers differ.
  if "recon_BxExT" in batch:
    lines_BxExT, keep_BxExT = batch["recon_BxExT"], batch["recon_mask_BxExT"]
  else:
    lines_BxExT = batch["context_BxExT"]
    keep_BxExT = lines_BxExT != special_tokens.PAD_ID
  t = lines_BxExT.shape[-1]
  lines_BxRxT = jnp.take_along_axis(lines_BxExT, idx_BxR[..., None], axis=1)
  keep_BxRxT = jnp.take_along_axis(keep_BxExT, idx_BxR[..., None], axis=1)
  real_BxR = jnp.take_along_axis(mask_BxE, idx_BxR, axis=1) & (batch["example_weight_B"] > 0)[:, None]
  latents_BxRxC = jnp.take_along_axis(r.zt_BxExC, idx_BxR[..., None], axis=1).astype(jnp.float32)
  n = b * count
  lines_NxT = lines_BxRxT.reshape(n, t)
  weights_NxT = keep_BxRxT.reshape(n, t)[:, 1:] & real_BxR.reshape(-1)[:, None]
  if reads_back(model, e):
    cond_Nx1xC = latents_BxRxC.reshape(n, 1, -1)
  else:
    mem_cfg = model.config.memory
    read_one = lambda q_BxC: memory.read_chunked(
        r.mem, q_BxC, combine=mem_cfg.combine, recency=model.recency(params))[0]
    readouts_BxRxC = jax.vmap(read_one, in_axes=1, out_axes=1)(latents_BxRxC)
    # Both terms decode the same lines: one decoder call over both conditionings (2N sequences).
    cond_Nx1xC = jnp.concatenate([latents_BxRxC, readouts_BxRxC]).reshape(2 * n, 1, -1)
    lines_NxT = jnp.concatenate([lines_NxT] * 2)
  logits_NxTxV = model.decode(params, lines_NxT[:, :-1], cond_Nx1xC)
  ce_NxT = optax.softmax_cross_entropy_with_integer_labels(logits_NxTxV, lines_NxT[:, 1:])
  ae_loss = _masked_mean(ce_NxT[:n], weights_NxT)
  return ae_loss, _masked_mean(ce_NxT[-n:], weights_NxT)


def uses_read_targets(cfg: ml_collections.ConfigDict) -> bool:
  """Whether loss config `cfg` reads the batches' answer_lines_BxE or question_lines_BxE."""
  return bool(cfg.get("answer_read_weight", 0.0) or cfg.get("question_read_weight", 0.0))


def uses_read_words(cfg: ml_collections.ConfigDict) -> bool:
  """Whether loss config `cfg` reads the batches' line_words_BxExW and read_words_BxK."""
  return uses_read_targets(cfg) and bool(cfg.get("foreign_negatives", False))


def reads_back(model: "memreasoner.MemReasoner", lines: int) -> bool:
  """Whether the memory read of a written latent is that latent, so ae_memory_loss = ae_loss.

  Without write noise the memory stores the latents themselves; with no more lines per memory
  than slots, and exact pseudo-inverses (svd, or gram, which in that case reads through the
  lines' Gram matrix; `memory.pinv=auto` is one of the two), its read is the projection onto
  the stored lines, which returns each of them whatever the latents (so the gradients agree
  too); a chunked read keeps its own chunk's readout, the nearest line (without a recency
  bonus, which may hand the read to a later line). Equal up to rounding for latents in
  general position; tests/test_model.py checks the two terms agree.
  """
  mem = model.config.memory
  recency = mem.get("recency", 0.0) or mem.get("learn_recency", False)
  fits = (model.chunked and mem.combine == "nearest_line" and not recency) or (
      not model.chunked and lines <= mem.num_slots)
  return mem.write_noise_std == 0 and model.pinv in ("svd", "gram") and fits


def _supporting_fact_terms(r: "memreasoner.Reasoning", batch: dict[str, jax.Array],
                           temperature: float) -> tuple[jax.Array, jax.Array]:
  """(cross-entropy on supervised examples, hop accuracy on all labelled examples)."""
  support_BxS = batch["support_BxS"]
  hops = min(r.sims_BxHxE.shape[1], support_BxS.shape[1])
  logits_BxHxE = r.sims_BxHxE[:, :hops] / temperature
  target_BxH = support_BxS[:, :hops]
  labelled_BxH = (target_BxH >= 0) & (batch["example_weight_B"] > 0)[:, None]
  ce_BxH = optax.softmax_cross_entropy_with_integer_labels(logits_BxHxE,
                                                           jnp.maximum(target_BxH, 0))
  supervised_BxH = labelled_BxH * batch["sf_weight_B"][:, None]
  hit_BxH = jnp.argmax(logits_BxHxE, axis=-1) == target_BxH
  return _masked_mean(ce_BxH, supervised_BxH), _masked_mean(hit_BxH, labelled_BxH)


ANSWER_READ_HOPS = ("last", "all")


def _answer_read_loss(r: "memreasoner.Reasoning", batch: dict[str, jax.Array], temperature: float,
                      hops: str, foreign: str) -> jax.Array:
  """Minus the log of each hop's read mass on the lines holding an answer word that no earlier
  hop has read, over the real examples that have such a line. Any of those lines may be the
  fact, so the read is free to choose among them (a marginal likelihood, not a label); leaving
  out the lines read before makes a chain's hops read different lines, not one line twice."""
  if hops not in ANSWER_READ_HOPS:
    raise ValueError(f"loss.answer_read_hops must be one of {ANSWER_READ_HOPS}, got {hops!r}")
  mask_BxE = batch["line_mask_BxE"].astype(bool)
  e = mask_BxE.shape[1]
  picked_BxHxE = jax.nn.one_hot(jnp.argmax(r.sims_BxHxE, axis=-1), e, dtype=jnp.int32)
  read_before_BxHxE = (jnp.cumsum(picked_BxHxE, axis=1) - picked_BxHxE) > 0
  target_BxHxE = batch["answer_lines_BxE"].astype(bool)[:, None] & ~read_before_BxHxE
  hops_H = slice(-1, None) if hops == "last" else slice(None)
  return _read_mass_nll(r, hops_H, target_BxHxE[:, hops_H], batch, temperature, foreign)


def foreign_lines(batch: dict[str, jax.Array]) -> jax.Array:
  """foreign_BxBxE: whether line e of example x is a distractor for example b's read: a real
  line of another example that holds no word of b's question or answer ("Mary went to the
  garden" stays out of the negatives of every question about Mary or the garden)."""
  line_words_BxExW, read_words_BxK = batch["line_words_BxExW"], batch["read_words_BxK"]
  b = read_words_BxK.shape[0]
  shares_BxBxE = jnp.zeros((b,) + line_words_BxExW.shape[:2], bool)
  # One question word at a time: B x B x E x W at once, not that times K.
  for k in range(read_words_BxK.shape[1]):
    word_Bx1x1 = read_words_BxK[:, k, None, None]
    shares_BxBxE |= (word_Bx1x1 != 0) & jnp.any(line_words_BxExW[None] == word_Bx1x1[..., None],
                                                axis=-1)
  other_BxBx1 = ~jnp.eye(b, dtype=bool)[..., None]
  real_1xBxE = batch["line_mask_BxE"].astype(bool)[None]
  return other_BxBx1 & real_1xBxE & ~shares_BxBxE


FOREIGN_HOPS = ("all", "first")


def _read_mass_nll(r: "memreasoner.Reasoning", hops_H: slice, target_BxHxE: jax.Array,
                   batch: dict[str, jax.Array], temperature: float, foreign: str) -> jax.Array:
  """Minus the log of the read's softmax mass (over the real lines, at `temperature`) on the
  target lines among them, over the real examples' hops (`hops_H` of the reads) that have a
  target. With `foreign` ("all" of those hops, or the "first" hop if among them; "": none),
  the softmax also runs over the other examples' lines that `foreign_lines` counts as
  distractors, scored by the cosine alone: their place in another context says nothing about
  this one."""
  mask_BxE = batch["line_mask_BxE"].astype(bool)
  logits_BxHxE = jnp.where(mask_BxE[:, None],
                           r.sims_BxHxE[:, hops_H].astype(jnp.float32) / temperature, -1e9)
  target_BxHxE = target_BxHxE & mask_BxE[:, None]
  on_target_BxH = jax.nn.logsumexp(jnp.where(target_BxHxE, logits_BxHxE, -1e9), axis=-1)
  all_BxH = jax.nn.logsumexp(logits_BxHxE, axis=-1)
  if foreign:
    if foreign not in FOREIGN_HOPS:
      raise ValueError(f"loss.foreign_hops must be one of {FOREIGN_HOPS}, got {foreign!r}")
    if "line_words_BxExW" not in batch:
      raise ValueError("loss.foreign_negatives needs batches with line_words_BxExW and "
                       "read_words_BxK: build them with Batcher(read_words=True)")
    hop_H = np.arange(r.sims_BxHxE.shape[1])[hops_H]
    weighs_H = hop_H == 0 if foreign == "first" else np.ones(hop_H.shape, bool)
    if weighs_H.any():  # with "first", a loss on later hops alone weighs no foreign line
      # W: the hops that weigh them; the cosines of the others are never computed.
      cos_BxWxBxE = memory.cosine_across(r.readouts_BxHxC[:, hops_H][:, weighs_H], r.zt_BxExC)
      foreign_Bx1xBxE = foreign_lines(batch)[:, None]
      foreign_BxW = jax.nn.logsumexp(
          jnp.where(foreign_Bx1xBxE, cos_BxWxBxE / temperature, -1e9), axis=(2, 3))
      all_BxH = all_BxH.at[:, weighs_H].set(jnp.logaddexp(all_BxH[:, weighs_H], foreign_BxW))
  nll_BxH = all_BxH - on_target_BxH
  has_target_BxH = jnp.any(target_BxHxE, axis=-1) & (batch["example_weight_B"] > 0)[:, None]
  return _masked_mean(nll_BxH, has_target_BxH)


def _question_read_loss(r: "memreasoner.Reasoning", batch: dict[str, jax.Array],
                        temperature: float, foreign: str) -> jax.Array:
  """Minus the log of the first hop's read mass on the lines that hold a word of the question
  (any of them may be the one to read: a marginal likelihood, as `_answer_read_loss`)."""
  target_Bx1xE = batch["question_lines_BxE"].astype(bool)[:, None]
  return _read_mass_nll(r, slice(0, 1), target_Bx1xE, batch, temperature, foreign)


def loss_fn(model: "memreasoner.MemReasoner", params: models.Params, batch: dict[str, jax.Array],
            rng: jax.Array | None, step: jax.Array | int, cfg: ml_collections.ConfigDict, *,
            reasoning: "memreasoner.Reasoning | None" = None) -> tuple[jax.Array, dict[str, Any]]:
  """The weighted total loss and its parts. `rng=None` evaluates without training noise.

  `reasoning`: the batch's `model.reason` without noise, when the caller has it already.
  """
  noise_rng, sample_rng = (None, jax.random.PRNGKey(0)) if rng is None else jax.random.split(rng)
  r = model.reason(params, batch, rng=noise_rng) if reasoning is None else reasoning
  example_B = batch["example_weight_B"]

  answer_loss, answer_exact, copy_loss = _answer_terms_at_prompt_end(model, params, batch, r,
                                                                     cfg)

  ae_loss, ae_memory_loss = _reconstruction_losses(model, params, batch, r, sample_rng,
                                                   cfg.ae_lines)
  sf_loss, sf_accuracy = _supporting_fact_terms(r, batch, cfg.sf_temperature)
  # The hops whose reads weigh the other examples' lines ("": none).
  foreign = cfg.get("foreign_hops", "all") if cfg.get("foreign_negatives", False) else ""
  answer_read_loss = jnp.zeros(())
  if cfg.get("answer_read_weight", 0.0):
    answer_read_loss = _answer_read_loss(r, batch, cfg.sf_temperature,
                                         cfg.get("answer_read_hops", "last"), foreign)
  question_read_loss = jnp.zeros(())
  if cfg.get("question_read_weight", 0.0):
    question_read_loss = _question_read_loss(r, batch, cfg.sf_temperature, foreign)
  kl = _masked_mean(r.kl_B, example_B)
  kl_scale = cfg.kl_weight * cyclic_weight(jnp.asarray(step), cfg.kl_cycle_steps)

  total = (cfg.answer_weight * answer_loss + cfg.ae_weight * ae_loss
           + cfg.ae_memory_weight * ae_memory_loss + cfg.sf_weight * sf_loss + kl_scale * kl
           + cfg.get("copy_weight", 1.0) * copy_loss
           + cfg.get("answer_read_weight", 0.0) * answer_read_loss
           + cfg.get("question_read_weight", 0.0) * question_read_loss)
  metrics = {
      "loss": total,
      "answer_loss": answer_loss,
      "ae_loss": ae_loss,
      "ae_memory_loss": ae_memory_loss,
      "sf_loss": sf_loss,
      "copy_loss": copy_loss,
      "answer_read_loss": answer_read_loss,
      "question_read_loss": question_read_loss,
      "kl": kl,
      # Percentages, as the decoded answers' scores (babilong, exact_match) are.
      "answer_exact": 100.0 * answer_exact,
      "sf_accuracy": 100.0 * sf_accuracy,
  }
  return total, metrics
