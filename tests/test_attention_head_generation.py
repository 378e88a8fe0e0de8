"""The shared attention, the output layer at loss positions, the single-decode autoencoding term,
prefill generation and the one-read evaluation each equal the plain computation they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import attention
from memreasoner_jax.models import decoder as decoder_lib
from memreasoner_jax.models import losses
from memreasoner_jax.models import memory
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets
from memreasoner_jax.tasks import registry
from tests import toy_batches


def reference_attention(q, k, v, visible_BxTxS):
  """Plain einsum-softmax attention over the visible keys."""
  logits = jnp.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
  logits = jnp.where(visible_BxTxS[:, None], logits, -jnp.inf)
  return jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(logits, axis=-1), v)


@pytest.mark.parametrize("case", ["masked", "causal", "prefix", "cache"])
def test_attention_equals_einsum_softmax(case):
  b, t, s, n, h, d = 3, 5, 5, 2, 2, 8
  q, k, v, slots = (jax.random.normal(jax.random.PRNGKey(i), (b, l, h, d))
                    for i, l in enumerate((t, s, s, n)))
  keep_BxS = jnp.arange(s)[None] < jnp.array([5, 3, 1])[:, None]
  causal_TxS = jnp.arange(s)[None] <= jnp.arange(t)[:, None]
  if case == "masked":
    out = attention.attend(q, k, v, keep_BxS=keep_BxS)
    ref = reference_attention(q, k, v, jnp.broadcast_to(keep_BxS[:, None], (b, t, s)))
  elif case == "causal":
    out = attention.attend(q, k, v, query_pos_BxT=jnp.broadcast_to(jnp.arange(t), (b, t)))
    ref = reference_attention(q, k, v, jnp.broadcast_to(causal_TxS, (b, t, s)))
  elif case == "prefix":
    out = attention.attend(q, k, v, query_pos_BxT=jnp.broadcast_to(jnp.arange(t), (b, t)),
                           prefix_BxNxHxK=slots)
    visible = jnp.concatenate([jnp.ones((t, n), bool), causal_TxS], axis=1)
    ref = reference_attention(q, jnp.concatenate([slots, k], 1), jnp.concatenate([slots, v], 1),
                              jnp.broadcast_to(visible, (b, t, n + s)))
  else:
    # One query per example at its own position in a cache of 9: it sees slots and keys 0..pos.
    cache_k, cache_v = (jax.random.normal(jax.random.PRNGKey(9 + i), (b, 9, h, d)) for i in (0, 1))
    pos_Bx1 = jnp.array([[0], [4], [8]])
    out = attention.attend(q[:, :1], cache_k, cache_v, query_pos_BxT=pos_Bx1, prefix_BxNxHxK=slots)
    visible = jnp.concatenate([jnp.ones((b, 1, n), bool),
                               (jnp.arange(9)[None, None] <= pos_Bx1[..., None])], axis=2)
    ref = reference_attention(q[:, :1], jnp.concatenate([slots, cache_k], 1),
                              jnp.concatenate([slots, cache_v], 1), visible)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_odd_lengths_padded_for_the_fused_kernel_leave_the_attention_unchanged():
  # cuDNN's masked kernel needs even lengths; the padding is checked here with XLA's attention.
  b, t, s, h, d = 2, 5, 7, 2, 8
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (b, l, h, d))
             for i, l in enumerate((t, s, s)))
  visible_BxTxS = jnp.arange(s)[None, None] <= jnp.arange(t)[None, :, None] + jnp.array(
      [[[0]], [[2]]])
  padded = attention.even_lengths(q, k, v, visible_BxTxS)
  assert [x.shape[1] for x in padded[:3]] == [6, 8, 8] and padded[3].shape == (b, 6, 8)

  def padded_attention(q):
    q, k_pad, v_pad, visible = attention.even_lengths(q, k, v, visible_BxTxS)
    return jax.nn.dot_product_attention(q, k_pad, v_pad, mask=visible[:, None])[:, :t]

  out = padded_attention(q)
  np.testing.assert_allclose(out, reference_attention(q, k, v, visible_BxTxS), atol=1e-5)
  grad = jax.grad(lambda q: jnp.sum(padded_attention(q)))(q)
  ref_grad = jax.grad(lambda q: jnp.sum(reference_attention(q, k, v, visible_BxTxS)))(q)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-5)


def test_unknown_attention_names_the_field():
  cfg = presets.model_config("tiny")
  cfg.attention = "flash"
  with pytest.raises(ValueError, match="model.attention"):
    model_lib.MemReasoner(cfg)


def _full_head_loss(model, params, batch, cfg):
  """The answer and autoencoding terms with logits at every position, both terms decoded."""
  r = model.reason(params, batch)
  example_B = batch["example_weight_B"]
  logits = model.decode(params, batch["answer_BxA"][:, :-1], r.cond_BxNxC)
  answer_loss, _ = losses.answer_terms(logits, batch["answer_BxA"][:, 1:],
                                       batch["answer_mask_BxA"][:, 1:] * example_B[:, None],
                                       example_B)
  idx_BxR = losses._sample_lines(jax.random.PRNGKey(0), batch["line_mask_BxE"], cfg.ae_lines)
  lines_NxT = jnp.take_along_axis(batch["context_BxExT"], idx_BxR[..., None], axis=1).reshape(
      -1, batch["context_BxExT"].shape[-1])
  latents_BxRxC = jnp.take_along_axis(r.zt_BxExC, idx_BxR[..., None], axis=1)
  readouts_BxRxC = jax.vmap(lambda u: memory.read_chunked(r.mem, u)[0], 1, 1)(latents_BxRxC)
  ae = []
  for cond_BxRxC in (latents_BxRxC, readouts_BxRxC):
    logits = model.decode(params, lines_NxT[:, :-1], cond_BxRxC.reshape(-1, 1, cond_BxRxC.shape[-1]))
    ae.append(losses.token_cross_entropy(logits, lines_NxT[:, 1:], lines_NxT[:, 1:] != 0))
  return answer_loss, ae[0], ae[1]


@pytest.mark.parametrize("mode", ["single", "chunked"])
def test_losses_equal_the_full_head_and_both_autoencoding_decodes(mode):
  cfg = presets.model_config("tiny")
  cfg.memory.mode, cfg.memory.lines_per_chunk = mode, 4
  model = model_lib.MemReasoner(cfg)
  batch = toy_batches.qa1_batch(4, seed=3, lines=10)  # 10 lines <= K = 16 slots
  assert losses.reads_back(model, 10)
  params = model.init(jax.random.PRNGKey(0), batch)
  loss_cfg = losses.loss_config()
  loss_cfg.answer_positions = 12  # the longest answer and its EOS fit
  _, metrics = jax.jit(lambda p, b: model.loss(p, b, None, 0, loss_cfg))(params, batch)
  answer, ae, ae_memory = jax.jit(lambda p, b: _full_head_loss(model, p, b, loss_cfg))(params,
                                                                                      batch)
  np.testing.assert_allclose(metrics["answer_loss"], answer, rtol=1e-6)
  np.testing.assert_allclose(metrics["ae_loss"], ae, rtol=1e-6)
  assert metrics["ae_memory_loss"] == metrics["ae_loss"]
  np.testing.assert_allclose(ae_memory, ae, rtol=1e-4)


def _stepwise_generate(model, params, batch, max_new_tokens):
  """Greedy decoding one position at a time from position 0 through the prompt, with the cache
  (MemReasoner's generation before prefill)."""
  cond_BxNxC = model.reason(params, batch).cond_BxNxC
  prompt_len_B = batch["prompt_len_B"]
  b, p = batch["answer_BxA"].shape
  length = p + max_new_tokens
  buffer_BxL = jnp.pad(batch["answer_BxA"], ((0, 0), (0, max_new_tokens)))
  dec = {"params": params["decoder"]}

  def step(carry, pos):
    buffer_BxL, cache = carry
    logits_Bx1xV, cache = model.decoder.apply(dec, buffer_BxL[:, pos, None], cond_BxNxC, cache, pos)
    pred_B = jnp.argmax(logits_Bx1xV[:, 0], axis=-1).astype(buffer_BxL.dtype)
    nxt_B = jnp.where(pos + 1 >= prompt_len_B, pred_B, buffer_BxL[:, pos + 1])
    return (buffer_BxL.at[:, pos + 1].set(nxt_B), cache), logits_Bx1xV[:, 0]

  cache = decoder_lib.init_cache(model.config.decoder, b, length)
  (buffer_BxL, _), logits_LxBxV = jax.lax.scan(step, (buffer_BxL, cache), jnp.arange(length - 1))
  offsets_BxN = prompt_len_B[:, None] + jnp.arange(max_new_tokens)[None]
  logits_BxNxV = jnp.take_along_axis(jnp.swapaxes(logits_LxBxV, 0, 1),
                                     (offsets_BxN - 1)[..., None], axis=1)
  return jnp.take_along_axis(buffer_BxL, offsets_BxN, axis=1), logits_BxNxV


def test_prefill_generation_equals_stepwise_generation():
  model = model_lib.MemReasoner(presets.model_config("tiny"))
  batch = toy_batches.qa1_batch(4, seed=1, lines=6)
  params = model.init(jax.random.PRNGKey(3), batch)
  tokens, logits, _ = jax.jit(model.generate, static_argnums=2)(params, batch, 8)
  tokens_ref, logits_ref = jax.jit(_stepwise_generate, static_argnums=(0, 3))(model, params,
                                                                               batch, 8)
  np.testing.assert_array_equal(tokens, tokens_ref)
  np.testing.assert_allclose(logits, logits_ref, atol=1e-4)


@pytest.mark.parametrize("kind", ["memreasoner", "baseline"])
def test_loss_and_generate_equals_loss_then_generate(kind):
  config = babi.get_config("qa1,tiny" + (",baseline" if kind == "baseline" else ""))
  batch = input_lib.make_batcher(config.data)(registry.generate("qa1", "test", 3, seed=0))
  model = models.build(config.model)
  params = model.init(jax.random.key(0), batch)
  n = config.eval.max_new_tokens
  total, metrics, generated = jax.jit(
      lambda p, b: model.loss_and_generate(p, b, config.loss, n))(params, batch)
  total_ref, metrics_ref = jax.jit(lambda p, b: model.loss(p, b, None, 0, config.loss))(params,
                                                                                       batch)
  generated_ref = jax.jit(lambda p, b: model.generate(p, b, n))(params, batch)
  np.testing.assert_allclose(total, total_ref, rtol=1e-6)
  for key, value in metrics_ref.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
  np.testing.assert_array_equal(generated.tokens_BxN, generated_ref.tokens_BxN)
  np.testing.assert_allclose(generated.logits_BxNxV, generated_ref.logits_BxNxV, atol=1e-5)
