"""Properties of the composed model: padding, hops, decoding, gradients, presets, dtypes."""

import math
import re
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memreasoner_jax.data import batching
from memreasoner_jax.data import tokenizers
from memreasoner_jax import models
from memreasoner_jax.models import copying
from memreasoner_jax.models import hops as hops_lib
from memreasoner_jax.models import losses
from memreasoner_jax.models import memory
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets
from tests import data_fixtures
from tests import toy_batches


def _config(**overrides):
  cfg = presets.model_config("tiny")
  for key, value in overrides.items():
    node = cfg
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return cfg


@pytest.fixture(scope="module")
def tiny():
  model = model_lib.MemReasoner(_config(**{"hops.num_hops": 2}))
  batch = toy_batches.qa1_batch(4, seed=0, lines=20)
  params = model.init(jax.random.PRNGKey(0), batch)
  return model, params, batch


def test_padding_lines_change_neither_readout_nor_output(tiny):
  model, params, _ = tiny
  plain = toy_batches.qa1_batch(3, seed=5, lines=7)
  padded = toy_batches.qa1_batch(3, seed=5, lines=7, pad_lines=9)
  reason = jax.jit(model.reason)
  r, r_pad = reason(params, plain), reason(params, padded)
  np.testing.assert_allclose(r_pad.readouts_BxHxC, r.readouts_BxHxC, atol=1e-5)
  np.testing.assert_allclose(r_pad.sims_BxHxE[..., :7], r.sims_BxHxE, atol=1e-5)
  generate = jax.jit(model.generate, static_argnums=2)
  tokens, logits, _ = generate(params, plain, 6)
  tokens_pad, logits_pad, _ = generate(params, padded, 6)
  np.testing.assert_array_equal(tokens_pad, tokens)
  np.testing.assert_allclose(logits_pad, logits, atol=1e-4)
  loss_fn = jax.jit(lambda b: losses.loss_fn(model, params, b, None, 0, losses.loss_config())[0])
  loss, loss_pad = loss_fn(plain), loss_fn(padded)
  np.testing.assert_allclose(loss_pad, loss, rtol=1e-5)


@pytest.mark.parametrize("combine", memory.COMBINE_RULES)
def test_padding_lines_change_nothing_with_chunked_memory(combine):
  model = model_lib.MemReasoner(_config(**{"memory.mode": "chunked", "memory.lines_per_chunk": 4,
                                           "memory.combine": combine}))
  plain = toy_batches.qa1_batch(2, seed=6, lines=10)
  padded = toy_batches.qa1_batch(2, seed=6, lines=10, pad_lines=7)  # chunks 3 and 4 all padding
  params = model.init(jax.random.PRNGKey(1), plain)
  reason = jax.jit(model.reason)
  np.testing.assert_allclose(reason(params, padded).readouts_BxHxC,
                             reason(params, plain).readouts_BxHxC, atol=1e-5)
  loss = lambda p: losses.loss_fn(model, p, padded, None, 0, losses.loss_config())[0]
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  chex.assert_tree_all_finite((value, grads))


def test_memory_recency_reaches_the_hops_and_a_large_one_reads_the_last_line():
  chunked = {"memory.mode": "chunked", "memory.lines_per_chunk": 4, "hops.num_hops": 2}
  plain = model_lib.MemReasoner(_config(**chunked))
  recent = model_lib.MemReasoner(_config(**chunked, **{"memory.recency": 10.0}))
  batch = toy_batches.qa1_batch(4, seed=7, lines=10, pad_lines=6)  # chunks 0..2 real, 3 empty
  params = plain.init(jax.random.PRNGKey(2), batch)
  read = lambda m, p: np.argmax(jax.jit(m.reason)(p, batch).sims_BxHxE, axis=-1)
  np.testing.assert_array_equal(read(recent, params), 9)  # every hop: the last real line
  assert (read(plain, params) < 9).any(), read(plain, params)
  # The reconstruction term reads through the same rule, so it no longer equals ae_loss.
  assert losses.reads_back(plain, 16) and not losses.reads_back(recent, 16)


def test_skip_read_reaches_the_hops_each_reading_a_line_no_earlier_hop_read():
  # A recency this large makes every hop read the last line; kept off the lines earlier hops
  # read, each hop reads the latest line left.
  options = {"memory.mode": "chunked", "memory.lines_per_chunk": 4, "hops.num_hops": 3,
             "memory.recency": 10.0, "hops.skip_read": True}
  model = model_lib.MemReasoner(_config(**options))
  batch = toy_batches.qa1_batch(4, seed=7, lines=10, pad_lines=6)
  params = model.init(jax.random.PRNGKey(2), batch)
  reads = np.argmax(jax.jit(model.reason)(params, batch).sims_BxHxE, axis=-1)
  np.testing.assert_array_equal(reads, np.broadcast_to([9, 8, 7], reads.shape))


def test_latest_margin_reaches_the_hops_and_a_wide_one_reads_the_last_line():
  # A margin wider than cosines span makes every line a candidate: each hop reads the last
  # real line.
  chunked = {"memory.mode": "chunked", "memory.lines_per_chunk": 4, "hops.num_hops": 2}
  latest = model_lib.MemReasoner(_config(**chunked, **{"memory.latest_margin": 3.0}))
  batch = toy_batches.qa1_batch(4, seed=7, lines=10, pad_lines=6)
  params = latest.init(jax.random.PRNGKey(2), batch)
  reads = np.argmax(jax.jit(latest.reason)(params, batch).sims_BxHxE, axis=-1)
  np.testing.assert_array_equal(reads, 9)
  with pytest.raises(ValueError, match="memory.latest_margin must be >= 0"):
    model_lib.MemReasoner(_config(**{"memory.latest_margin": -0.1}))
  # Asking every candidate to be the best line itself (likeness 1) reads what no margin reads,
  # in stories that never repeat a line (a repeated line is alike the best by any likeness).
  batch = toy_batches.qa1_batch(4, seed=22, lines=6, pad_lines=2)
  assert all(len({bytes(line) for line in story[:6]}) == 6 for story in batch["context_BxExT"])
  params = latest.init(jax.random.PRNGKey(2), batch)
  alike = model_lib.MemReasoner(_config(**chunked, **{"memory.latest_margin": 3.0,
                                                       "memory.latest_alike": 1.0}))
  plain = model_lib.MemReasoner(_config(**chunked))
  np.testing.assert_array_equal(
      np.argmax(jax.jit(alike.reason)(params, batch).sims_BxHxE, axis=-1),
      np.argmax(jax.jit(plain.reason)(params, batch).sims_BxHxE, axis=-1))
  with pytest.raises(ValueError, match="memory.latest_alike must be between -1 and 1"):
    model_lib.MemReasoner(_config(**{"memory.latest_alike": 1.5}))


def test_learned_recency_is_one_parameter_that_the_losses_move():
  learned = model_lib.MemReasoner(_config(**{"memory.mode": "chunked", "memory.lines_per_chunk": 4,
                                             "hops.num_hops": 2, "memory.recency": 0.5,
                                             "memory.learn_recency": True}))
  batch = toy_batches.qa1_batch(4, seed=7, lines=10, pad_lines=6)
  params = learned.init(jax.random.PRNGKey(2), batch)
  assert float(params["hops"]["hop"]["recency"]) == 0.5 == float(learned.recency(params))
  cfg = losses.loss_config()
  cfg.answer_read_weight = 1.0
  grads = jax.grad(lambda p: losses.loss_fn(learned, p, batch, None, 0, cfg)[0])(params)
  assert float(jnp.abs(grads["hops"]["hop"]["recency"])) > 0
  # As large as the fixed one above, it reads the last line too.
  params["hops"]["hop"]["recency"] = jnp.asarray(10.0)
  np.testing.assert_array_equal(
      np.argmax(jax.jit(learned.reason)(params, batch).sims_BxHxE, axis=-1), 9)


@pytest.mark.parametrize("pinv, tol", [("solve", 1e-3), ("ben_israel", 1e-5)])
def test_solve_and_ben_israel_pseudo_inverses_agree_with_svd_in_the_model(tiny, pinv, tol):
  # Readouts within `tol` of the largest readout (the solve's ridge costs about 3e-4 of it,
  # measured; Ben-Israel's fifteen steps converge on these latents), losses within 1e-5.
  model, params, _ = tiny
  other = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "memory.pinv": pinv}))
  batch = toy_batches.qa1_batch(4, seed=1, lines=7, pad_lines=2)
  r, r_other = jax.jit(model.reason)(params, batch), jax.jit(other.reason)(params, batch)
  scale = float(jnp.abs(r.readouts_BxHxC).max())
  np.testing.assert_allclose(r_other.readouts_BxHxC, r.readouts_BxHxC, atol=tol * scale)
  np.testing.assert_allclose(r_other.sims_BxHxE[..., :7], r.sims_BxHxE[..., :7], atol=1e-4)
  loss = lambda m: jax.jit(lambda p: m.loss(p, batch, None, 0, losses.loss_config())[0])(params)
  np.testing.assert_allclose(loss(other), loss(model), rtol=1e-5)


def test_lines_encoded_in_chunks_give_the_latents_of_one_pass(tiny):
  model, params, _ = tiny
  chunked = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "encoder.encode_chunk": 2}))
  batch = toy_batches.qa1_batch(3, seed=7, lines=7)  # 21 lines: 11 chunks of 2, one padded
  tokens_NxT = batch["context_BxExT"].reshape(21, -1)
  # The chunked path really loops (lax.map), the default encodes all 21 lines at once.
  assert "scan" in str(jax.make_jaxpr(chunked.encode)(params, tokens_NxT))
  assert "scan" not in str(jax.make_jaxpr(model.encode)(params, tokens_NxT))
  np.testing.assert_allclose(jax.jit(chunked.encode)(params, tokens_NxT),
                             jax.jit(model.encode)(params, tokens_NxT), atol=1e-6)
  r, r_chunked = jax.jit(model.reason)(params, batch), jax.jit(chunked.reason)(params, batch)
  np.testing.assert_allclose(r_chunked.z_BxExC, r.z_BxExC, atol=1e-6)
  np.testing.assert_allclose(r_chunked.query_BxC, r.query_BxC, atol=1e-6)  # 3 queries: 2 chunks
  np.testing.assert_allclose(r_chunked.readouts_BxHxC, r.readouts_BxHxC, atol=1e-5)


@pytest.mark.parametrize("rule,options",
                         [(rule, {}) for rule in hops_lib.UPDATE_RULES]
                         + [("nearest_content", {"before_gate": True}),
                            ("nearest_content", {"skip_read": True}),
                            ("nearest_content", {"latest_margin": 0.1})])
def test_scanned_hops_equal_an_unrolled_loop(rule, options):
  b, e, c, hops = 3, 9, 16, 3
  z = jax.random.normal(jax.random.PRNGKey(2), (b, e, c))
  mask = jnp.ones((b, e), bool).at[0, 6:].set(False)
  mem = memory.write_chunked(z, mask, jnp.eye(12, c))
  query = jax.random.normal(jax.random.PRNGKey(3), (b, c))
  op = hops_lib.HopOperator(hops, rule, **options)
  params = op.init(jax.random.PRNGKey(4), query, mem, z, mask)
  readouts, sims, _ = op.apply(params, query, mem, z, mask)
  step = hops_lib.Hop(rule, **options)
  carry = (query, jnp.full((b, hops), -1.0))  # no line has been read
  for h in range(hops):
    carry, (readout, sim, _) = step.apply({"params": params.get("params", {}).get("hop", {})},
                                          carry, jax.random.PRNGKey(0), mem, z, mask, z)
    np.testing.assert_allclose(readouts[:, h], readout, atol=1e-6)
    np.testing.assert_allclose(sims[:, h], sim, atol=1e-6)


def test_a_closed_before_gate_reads_no_line_after_the_previous_hops_line():
  b, e, c, hops = 4, 40, 16, 3
  z = jax.random.normal(jax.random.PRNGKey(2), (b, e, c))
  mask = jnp.ones((b, e), bool)
  mem = memory.write_chunked(z, mask, jnp.eye(12, c))  # four chunks: the cut spans memories
  query = jax.random.normal(jax.random.PRNGKey(3), (b, c))
  gated = hops_lib.HopOperator(hops, "nearest_content", before_gate=True)
  params = gated.init(jax.random.PRNGKey(4), query, mem, z, mask)

  def picks(bias):
    hop = dict(params["params"]["hop"])
    hop["before_gate"] = {**hop["before_gate"], "bias": jnp.full((1,), bias)}
    _, sims_BxHxE, _ = gated.apply({"params": {"hop": hop}}, query, mem, z, mask)
    return sims_BxHxE, np.asarray(jnp.argmax(sims_BxHxE, axis=-1))

  plain = hops_lib.HopOperator(hops, "nearest_content")
  ungated = {"hop": {k: v for k, v in params["params"]["hop"].items() if k != "before_gate"}}
  _, plain_sims, _ = plain.apply({"params": ungated}, query, mem, z, mask)
  open_sims, open_picks = picks(-30.0)
  np.testing.assert_allclose(open_sims, plain_sims, atol=1e-5)  # an open gate cuts nothing
  _, closed = picks(30.0)
  assert np.all(closed[:, 1:] <= closed[:, :-1]), closed
  assert np.any(open_picks[:, 1:] > open_picks[:, :-1]), open_picks  # the cut mattered


def test_with_skip_read_no_hop_reads_a_line_an_earlier_hop_read():
  b, e, c, hops = 8, 40, 16, 3
  z = jax.random.normal(jax.random.PRNGKey(2), (b, e, c))
  mask = jnp.ones((b, e), bool).at[0, 30:].set(False)
  mem = memory.write_chunked(z, mask, jnp.eye(12, c), lines_per_chunk=16)  # three chunks
  query = jax.random.normal(jax.random.PRNGKey(3), (b, c))

  def picks(skip_read):
    op = hops_lib.HopOperator(hops, "add", skip_read=skip_read)
    _, sims_BxHxE, _ = op.apply({}, query, mem, z, mask)
    return np.asarray(jnp.argmax(sims_BxHxE, axis=-1))

  # Adding readouts keeps the query near the first line read, so plain hops read it again.
  again = lambda p: [len(set(row)) < hops for row in p]
  assert any(again(picks(False)))
  skipping = picks(True)
  assert not any(again(skipping)), skipping
  assert np.all(skipping[0] < 30)  # padding is still never read


def test_the_before_gate_learns_from_the_read():
  b, e, c = 2, 10, 8
  z = jax.random.normal(jax.random.PRNGKey(2), (b, e, c))
  mask = jnp.ones((b, e), bool)
  mem = memory.write_chunked(z, mask, jnp.eye(12, c))
  query = jax.random.normal(jax.random.PRNGKey(3), (b, c))
  op = hops_lib.HopOperator(2, "nearest_content", before_gate=True)
  params = op.init(jax.random.PRNGKey(4), query, mem, z, mask)
  # A read loss on the second hop toward the first line, before any first-hop line.
  loss = lambda p: -jnp.mean(jax.nn.log_softmax(op.apply(p, query, mem, z, mask)[1][:, 1] / 0.1)[:, 0])
  grads = jax.grad(loss)(params)["params"]["hop"]["before_gate"]
  assert float(jnp.abs(grads["bias"]).sum()) > 0 and float(jnp.abs(grads["kernel"]).sum()) > 0


def test_nearest_content_updates_the_query_from_the_found_line_before_temporal_encoding():
  b, e, c = 2, 8, 16
  zt = jax.random.normal(jax.random.PRNGKey(2), (b, e, c))  # the written, temporal latents
  content = jax.random.normal(jax.random.PRNGKey(5), (b, e, c))
  mask = jnp.ones((b, e), bool)
  mem = memory.write_chunked(zt, mask, jnp.eye(12, c))
  query = jax.random.normal(jax.random.PRNGKey(3), (b, c))
  op = hops_lib.HopOperator(2, "nearest_content")
  params = op.init(jax.random.PRNGKey(4), query, mem, zt, mask, content_BxExC=content)
  run = lambda content_BxExC: op.apply(params, query, mem, zt, mask, content_BxExC=content_BxExC)
  _, sims, _ = run(content)
  found_B = jnp.argmax(sims[:, 0], axis=-1)
  other_B = (found_B + 1) % e
  rows = jnp.arange(b)
  # Another line's content changes nothing; the found line's changes the second read.
  _, sims_other, _ = run(content.at[rows, other_B].add(3.0))
  np.testing.assert_array_equal(sims_other, sims)
  _, sims_found, _ = run(content.at[rows, found_B].add(3.0))
  np.testing.assert_array_equal(sims_found[:, 0], sims[:, 0])
  assert np.abs(sims_found[:, 1] - sims[:, 1]).min() > 1e-4


def test_one_hop_is_one_read(tiny):
  model, params, batch = tiny
  one_hop = model_lib.MemReasoner(_config())
  params1 = one_hop.init(jax.random.PRNGKey(0), batch)
  r = jax.jit(one_hop.reason)(params1, batch)
  mem = memory.write(r.zt_BxExC, batch["line_mask_BxE"], params1["memory"]["prior"])
  readout, _ = memory.read(mem, r.query_BxC)
  np.testing.assert_allclose(r.readouts_BxHxC[:, 0], readout, atol=1e-5)


@pytest.mark.parametrize("condition", model_lib.CONDITIONS)
def test_kv_cache_decoding_matches_full_recompute(tiny, condition):
  _, _, batch = tiny
  model = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "decoder.condition": condition}))
  params = model.init(jax.random.PRNGKey(7), batch)
  tokens, logits, _ = jax.jit(lambda p, b: model.generate(p, b, 8))(params, batch)
  tokens_ref, logits_ref, _ = jax.jit(lambda p, b: model.generate(p, b, 8, use_cache=False))(
      params, batch)
  assert tokens.shape == (4, 8) and logits.shape == (4, 8, 260)
  np.testing.assert_array_equal(tokens, tokens_ref)
  np.testing.assert_allclose(logits, logits_ref, atol=1e-4)


@pytest.mark.parametrize("written", [False, True])
def test_copying_decodes_the_same_with_and_without_the_cache_and_trains_every_part(tiny, written):
  _, _, batch = tiny
  model = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "decoder.condition": "facts",
                                           "decoder.copy": True,
                                           "decoder.copy_written": written}))
  params = model.init(jax.random.PRNGKey(7), batch)
  assert set(params["copy"]) == {"key", "previous_key", "previous_token",
                                 "second_previous_token", "query", "pointed_token", "gate"} | (
                                     {"written_token", "second_written_token"} if written
                                     else set())
  tokens, logits, _ = jax.jit(lambda p, b: model.generate(p, b, 8))(params, batch)
  tokens_ref, logits_ref, _ = jax.jit(lambda p, b: model.generate(p, b, 8, use_cache=False))(
      params, batch)
  np.testing.assert_array_equal(tokens, tokens_ref)
  np.testing.assert_allclose(logits, logits_ref, atol=1e-4)
  # Log-probabilities: each position's distribution sums to one.
  np.testing.assert_allclose(np.exp(logits).sum(-1), 1.0, atol=1e-4)
  grads = jax.jit(jax.grad(lambda p: losses.loss_fn(model, p, batch, jax.random.PRNGKey(1), 0,
                                                    losses.loss_config())[0]))(params)
  chex.assert_tree_all_finite(grads)
  assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["copy"]))


def test_copy_head_puts_mass_only_on_the_text_of_the_source():
  ids = tokenizers.ByteTokenizer()
  text = ids.encode("to the cellar")
  line = [1] + text + [2, 0, 0]  # BOS text EOS PAD PAD
  source = copying.CopySource(jax.random.normal(jax.random.PRNGKey(0), (1, len(line), 8)),
                              jnp.array([line], jnp.int32))
  head = copying.CopyHead(width=8, vocab_size=260)
  hidden_Bx3xD = jax.random.normal(jax.random.PRNGKey(1), (1, 3, 16))
  logits_Bx3xV = jnp.zeros((1, 3, 260))
  params = head.init(jax.random.PRNGKey(2), hidden_Bx3xD, source)["params"]
  params["gate"]["bias"] = jnp.full((1,), -30.0)  # the gate closed: copying only
  pointer = head.apply({"params": params}, hidden_Bx3xD, source)
  probs_Bx3xV = np.exp(copying.mix(logits_Bx3xV, pointer, source.tokens_BxM))
  np.testing.assert_allclose(probs_Bx3xV.sum(-1), 1.0, atol=1e-5)
  others = np.setdiff1d(np.arange(260), text)
  assert probs_Bx3xV[..., others].max() < 1e-6  # no mass on BOS, EOS, PAD or absent bytes
  # The pointer term counts every copy of the target ("t" twice); EOS is never in the source,
  # so there only the gate is trained, towards generating.
  t, eos = ids.encode("t")[0], 2
  pointer_loss, gate_loss = copying.copy_terms(pointer, source.tokens_BxM,
                                               jnp.array([[t, eos, 0]]))
  mass_on_t = float(np.sum(np.where(np.array(line) == t, pointer.pointer_BxWxM[0, 0], 0.0)))
  np.testing.assert_allclose(pointer_loss[0, 0], -np.log(mass_on_t), rtol=1e-5)
  assert float(pointer_loss[0, 1]) == 0.0 and float(gate_loss[0, 1]) > 10  # closed gate: wrong
  # A source with no text leaves the decoder's own distribution (uniform here) unchanged.
  empty = copying.CopySource(source.states_BxMxD, jnp.zeros_like(source.tokens_BxM))
  pointer = head.apply({"params": params}, hidden_Bx3xD, empty)
  np.testing.assert_allclose(np.exp(copying.mix(logits_Bx3xV, pointer, empty.tokens_BxM)),
                             1 / 260, rtol=1e-4)


def test_gradients_finite_and_reach_every_parameter(tiny):
  model, params, batch = tiny
  # 20 lines > K = 16 slots, so the memory prior matters; two hops, so the update is used.
  grads = jax.jit(jax.grad(lambda p: losses.loss_fn(model, p, batch, jax.random.PRNGKey(1), 0,
                                                    losses.loss_config())[0]))(params)
  chex.assert_tree_all_finite(grads)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  dead = [jax.tree_util.keystr(path) for path, g in flat if not bool(jnp.any(g != 0))]
  assert not dead, f"parameters the loss does not reach: {dead}"

@pytest.mark.parametrize("temporal", [{"temporal.residual": True}, {"temporal.kind": "none"}])
def test_gradients_finite_with_padding_lines_reaching_the_similarities(temporal):
  # Here a padding line's zero latent reaches the cosine similarities without the BiGRU's mask in
  # between, so a NaN gradient of the norm at zero would reach the encoder.
  model = model_lib.MemReasoner(_config(**temporal))
  batch = toy_batches.qa1_batch(2, seed=3, lines=5, pad_lines=3)
  params = model.init(jax.random.PRNGKey(0), batch)
  grads = jax.jit(jax.grad(lambda p: losses.loss_fn(model, p, batch, jax.random.PRNGKey(1), 0,
                                                    losses.loss_config())[0]))(params)
  chex.assert_tree_all_finite(grads)



def test_train_loss_and_gradient_traces_once(tiny):
  model, params, _ = tiny
  cfg = losses.loss_config()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def grad_fn(p, b, step):
    return jax.grad(lambda q: losses.loss_fn(model, q, b, jax.random.PRNGKey(step), step, cfg)[0])(p)

  for step in range(3):
    grad_fn(params, toy_batches.qa1_batch(4, seed=10 + step, lines=20), step)


def test_remat_blocks_gives_the_same_gradients(tiny):
  model, params, batch = tiny
  remat = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "remat": "blocks"}))
  cfg = losses.loss_config()
  grad = lambda m: jax.jit(jax.grad(
      lambda p: losses.loss_fn(m, p, batch, jax.random.PRNGKey(3), 0, cfg)[0]))(params)
  chex.assert_trees_all_close(grad(remat), grad(model), atol=1e-6, rtol=1e-5)


def test_every_preset_builds_without_allocating_and_counts_match_known_sizes():
  # BERT without its pooler, GPT-2 with tied head (published sizes), plus our projections:
  # to_latent (D_enc x C + C) and W_M (C x L*D_dec).
  expected_bert = {"base": 108_891_648, "large": 334_092_288}
  expected_gpt2 = {"base": 124_439_808, "large": 774_030_080}
  for name in presets.PRESETS:
    cfg = presets.model_config(name)
    counts = model_lib.parameter_counts(cfg)
    assert all(v > 0 for k, v in counts.items() if k != "temporal" or cfg.temporal.kind != "none")
    c, enc, dec = cfg.latent_size, cfg.encoder, cfg.decoder
    if name in expected_bert:
      assert counts["encoder"] == expected_bert[name] + enc.d_model * c + c
      assert counts["decoder"] == expected_gpt2[name] + c * dec.num_layers * dec.d_model
      assert counts["memory"] == cfg.memory.num_slots * c
  assert sum(model_lib.parameter_counts(presets.model_config("large")).values()) > 1.1e9


def test_summary_command_prints_every_preset_and_a_finite_step():
  result = subprocess.run([sys.executable, "-m", "memreasoner_jax.tools.summary", "--preset=tiny",
                           "--batch_size=2"], capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  header, *rows, step = result.stdout.strip().splitlines()
  assert header.split()[0] == "preset" and len(rows) == len(presets.PRESETS)
  for name, row in zip(presets.PRESETS, rows):
    total = sum(model_lib.parameter_counts(presets.model_config(name)).values())
    assert row.split()[0] == name and row.split()[-1] == f"{total:,}"
  loss, grad_norm = re.match(r"tiny: loss (\S+) .*gradient norm (\S+),", step).groups()
  assert math.isfinite(float(loss)) and float(grad_norm) > 0


def test_tiny_model_overfits_a_small_batch():
  model = model_lib.MemReasoner(_config())
  batch = toy_batches.qa1_batch(8, seed=11, lines=4)
  params = model.init(jax.random.PRNGKey(8), batch)
  opt = optax.adam(3e-3)
  cfg = losses.loss_config()

  @jax.jit
  def step(p, s, i):
    (loss, metrics), g = jax.value_and_grad(
        lambda q: losses.loss_fn(model, q, batch, jax.random.PRNGKey(i), i, cfg), has_aux=True)(p)
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s, metrics

  state = opt.init(params)
  for i in range(250):
    params, state, metrics = step(params, state, i)
  assert float(metrics["answer_loss"]) < 0.05, metrics
  assert float(metrics["answer_exact"]) == 100.0


def test_bfloat16_compute_matches_float32(tiny):
  _, params, batch = tiny
  f32 = model_lib.MemReasoner(_config(**{"hops.num_hops": 2}))
  bf16 = model_lib.MemReasoner(_config(**{"hops.num_hops": 2, "dtype": "bfloat16"}))
  cfg = losses.loss_config()
  loss32 = jax.jit(lambda p, b: losses.loss_fn(f32, p, b, None, 0, cfg)[0])(params, batch)
  loss16 = jax.jit(lambda p, b: losses.loss_fn(bf16, p, b, None, 0, cfg)[0])(params, batch)
  assert loss16.dtype == jnp.float32
  np.testing.assert_allclose(loss16, loss32, rtol=3e-2)
  r32, r16 = jax.jit(f32.reason)(params, batch), jax.jit(bf16.reason)(params, batch)
  latent_error = jnp.linalg.norm(r16.z_BxExC.astype(jnp.float32) - r32.z_BxExC)
  assert float(latent_error / jnp.linalg.norm(r32.z_BxExC)) < 2e-2
  # The memory algebra stays float32: the bf16 run's readout is exactly the float32 read of
  # its own latents. (Against the float32 run it differs by the latents' error times the
  # conditioning of the least-squares read, which bf16 cannot bound tightly.)
  assert r16.readouts_BxHxC.dtype == jnp.float32
  mem = memory.write(r16.zt_BxExC, batch["line_mask_BxE"], params["memory"]["prior"])
  readout, _ = memory.read(mem, r16.query_BxC.astype(jnp.float32))
  np.testing.assert_allclose(r16.readouts_BxHxC[:, 0], readout, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("memory.num_slots", 0, "num_slots"),
    ("hops.num_hops", 0, "num_hops"),
    ("latent_size", 63, "even"),
    ("hops.update_rule", "sum", "update_rule"),
    ("memory.pinv", "qr", "pinv"),
    ("remat", "layers", "remat"),
])
def test_impossible_config_values_name_the_field(key, value, match):
  with pytest.raises(ValueError, match=match):
    model_lib.MemReasoner(_config(**{key: value}))


@pytest.mark.parametrize("kind", models.KINDS)
def test_float16_is_refused_for_bfloat16(kind):
  with pytest.raises(ValueError, match=r"model.dtype.*float16.*loss scaling.*bfloat16"):
    models.build(_config(kind=kind, dtype="float16"))


def test_batch_of_wrong_rank_names_the_array(tiny):
  model, params, batch = tiny
  bad = dict(batch, context_BxExT=batch["context_BxExT"][0])
  with pytest.raises(ValueError, match="context_BxExT"):
    model.reason(params, bad)
  bad = dict(batch, line_mask_BxE=batch["line_mask_BxE"][:, :3])
  with pytest.raises(ValueError, match="line_mask_BxE"):
    model.reason(params, bad)


def test_read_noise_kl_follows_its_cyclic_schedule_and_trains_the_noise_scale():
  model = model_lib.MemReasoner(_config(**{"memory.read_noise": True,
                                           "memory.write_noise_std": 0.1}))
  batch = toy_batches.qa1_batch(4, seed=13, lines=5)
  params = model.init(jax.random.PRNGKey(9), batch)
  cfg = losses.loss_config()
  cfg.kl_weight, cfg.kl_cycle_steps = 1.0, 100

  @jax.jit
  def run(p, step):
    return jax.value_and_grad(
        lambda q: losses.loss_fn(model, q, batch, jax.random.PRNGKey(2), step, cfg), has_aux=True)(p)

  (loss_start, metrics), _ = run(params, 0)  # the cycle starts with weight 0
  (loss_mid, metrics_mid), grads = run(params, 50)  # weight 1 from half a cycle on
  assert float(metrics["kl"]) > 0
  np.testing.assert_allclose(float(metrics_mid["kl"]), float(metrics["kl"]), rtol=1e-5)
  np.testing.assert_allclose(float(loss_mid - loss_start), float(metrics["kl"]), rtol=1e-4)
  noise_grad = grads["hops"]["hop"]["read_log_std"]["kernel"]
  assert bool(jnp.any(noise_grad != 0)) and bool(jnp.all(jnp.isfinite(noise_grad)))
  # Without an rng (evaluation) no noise is drawn and the KL is not counted.
  assert float(losses.loss_fn(model, params, batch, None, 50, cfg)[1]["kl"]) == 0.0


def test_straight_through_facts_train_the_read_without_supervision():
  # No example is supervised and the decoder reads each hop's argmax line: only the
  # straight-through gradient lets the answer loss reach the hop operator (its query update
  # shapes hop 2's read).
  batch = toy_batches.qa1_batch(4, seed=2, lines=5, pad_lines=3, supervised=0.0)
  cfg = losses.loss_config()
  results = {}
  for rule in model_lib.FACT_GRADIENTS:
    model = model_lib.MemReasoner(_config(**{"decoder.condition": "facts", "hops.num_hops": 2,
                                             "decoder.fact_gradient": rule}))
    params = model.init(jax.random.PRNGKey(0), batch)
    loss, grads = jax.jit(jax.value_and_grad(
        lambda p: losses.loss_fn(model, p, batch, None, 0, cfg)[0]))(params)
    chex.assert_tree_all_finite(grads)
    hop_grad = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["hops"]))
    results[rule] = (float(loss), hop_grad)
  # The forward pass is the argmax line either way; only the gradient differs.
  np.testing.assert_allclose(results["none"][0], results["straight_through"][0], rtol=1e-5)
  assert results["none"][1] == 0.0
  assert results["straight_through"][1] > 1e-6


@pytest.mark.parametrize("write_noise_std", [0.0, 0.1])
def test_read_noise_kl_and_loss_ignore_empty_chunks(write_noise_std):
  # Two line buckets of the same stories: 10 lines in 3 chunks of 4, or 17 lines in 5 chunks
  # (two of them all padding). The training noise and the KL must not see the difference.
  model = model_lib.MemReasoner(_config(**{
      "memory.mode": "chunked", "memory.lines_per_chunk": 4, "memory.read_noise": True,
      "memory.write_noise_std": write_noise_std}))
  plain = toy_batches.qa1_batch(2, seed=6, lines=10)
  padded = toy_batches.qa1_batch(2, seed=6, lines=10, pad_lines=7)
  params = model.init(jax.random.PRNGKey(1), plain)
  cfg = losses.loss_config()
  cfg.kl_weight = 1.0
  loss_fn = jax.jit(lambda b: losses.loss_fn(model, params, b, jax.random.PRNGKey(3), 500, cfg))
  (loss, metrics), (loss_pad, metrics_pad) = loss_fn(plain), loss_fn(padded)
  assert float(metrics["kl"]) > 0
  np.testing.assert_allclose(float(metrics_pad["kl"]), float(metrics["kl"]), rtol=1e-5)
  np.testing.assert_allclose(float(loss_pad), float(loss), rtol=1e-5)


def test_packed_lines_and_narrow_widths_give_the_latents_losses_and_answers_of_padded_ones():
  examples = data_fixtures.qa1_examples(6, max_lines=7)
  make = lambda **kw: batching.Batcher(batching.BatchShape(48, 32, 48, 1, **kw),
                                       tokenizers.ByteTokenizer())
  padded = make()(examples)
  packer = make(token_multiple=8, pack_lines=True)
  packed = packer(examples, shards=2)
  assert packed["context_BxExT"].shape[2] < padded["context_BxExT"].shape[2]
  assert packed["line_rows_SxM"].size < padded["line_mask_BxE"].size
  model = model_lib.MemReasoner(_config(**{"memory.mode": "chunked", "memory.lines_per_chunk": 4}))
  params = model.init(jax.random.PRNGKey(3), padded)
  reason = jax.jit(model.reason)
  r, r_packed = reason(params, padded), reason(params, packed)
  np.testing.assert_allclose(r_packed.z_BxExC, r.z_BxExC, atol=1e-5)
  np.testing.assert_allclose(r_packed.readouts_BxHxC, r.readouts_BxHxC, atol=1e-5)
  loss = jax.jit(lambda b: losses.loss_fn(model, params, b, jax.random.PRNGKey(0), 0,
                                          losses.loss_config()))
  (total, metrics), (total_packed, metrics_packed) = loss(padded), loss(packed)
  np.testing.assert_allclose(total_packed, total, rtol=1e-5)
  np.testing.assert_allclose(metrics_packed["ae_loss"], metrics["ae_loss"], rtol=1e-5)
  generate = jax.jit(model.generate, static_argnums=2)
  np.testing.assert_array_equal(generate(params, packed, 6).tokens_BxN,
                                generate(params, padded, 6).tokens_BxN)
