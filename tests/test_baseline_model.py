"""The full-attention baseline: block-wise reading, KV-cache generation and its batch field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import tokenizers
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import baseline
from memreasoner_jax.tasks import registry


@pytest.fixture(scope="module")
def setup():
  config = babi.get_config("qa1,tiny,baseline")
  config.data.sequence_multiple = 0  # every batch L = sequence_tokens
  examples = registry.generate("qa1", "test", 3, seed=0)
  batch = input_lib.make_batcher(config.data)(examples)
  model = models.build(config.model)
  params = model.init(jax.random.key(0), batch)
  return config, examples, batch, params


def test_sequence_field_is_the_context_then_the_answer_prompt(setup):
  config, examples, batch, _ = setup
  tok = tokenizers.from_spec("byte")
  for b, ex in enumerate(examples):
    prompt_len = batch["sequence_prompt_len_B"][b]
    prompt, _ = batching.split_at_space(tok, batching.context_prompt(ex), ex.answer)
    assert tok.decode_sequence(batch["sequence_BxL"][b, :prompt_len]) == prompt
    answer = batch["sequence_BxL"][b][batch["sequence_mask_BxL"][b]]
    assert tok.decode(answer) == ex.answer
  assert batch["sequence_BxL"].shape == (3, config.data.sequence_tokens)


def test_block_size_changes_nothing(setup):
  config, _, batch, params = setup
  whole = models.build(config.model)  # one block holds the whole sequence
  blocks = baseline.Baseline(config.model, chunk=96)  # 6 blocks, the last overlapping
  loss_whole, _ = whole.loss(params, batch, None, 0, config.loss)
  loss_blocks, _ = blocks.loss(params, batch, None, 0, config.loss)
  np.testing.assert_allclose(loss_blocks, loss_whole, rtol=1e-5)
  tokens_whole, logits_whole, _ = whole.generate(params, batch, 6)
  tokens_blocks, logits_blocks, _ = blocks.generate(params, batch, 6)
  np.testing.assert_array_equal(tokens_blocks, tokens_whole)
  np.testing.assert_allclose(logits_blocks, logits_whole, atol=2e-4)


def test_cached_generation_equals_full_recompute(setup):
  config, _, batch, params = setup
  model = baseline.Baseline(config.model, chunk=128)
  max_new = 5
  tokens_BxN, logits_BxNxV, _ = jax.jit(model.generate, static_argnums=2)(params, batch, max_new)
  # Reference: the whole growing sequence through the decoder at every step, no cache (causal
  # attention: what follows a position does not change its logits).
  apply = jax.jit(lambda t: model.decoder.apply({"params": params["decoder"]}, t,
                                                jnp.zeros((t.shape[0], 0, 1)))[0])
  prompt_len_B = batch["sequence_prompt_len_B"]
  rows_B = np.arange(len(prompt_len_B))
  seq_BxW = np.pad(batch["sequence_BxL"], ((0, 0), (0, max_new)))
  for n in range(max_new):
    logits_BxV = np.asarray(apply(jnp.asarray(seq_BxW)))[rows_B, prompt_len_B - 1 + n]
    np.testing.assert_allclose(logits_BxNxV[:, n], logits_BxV, atol=2e-4)
    seq_BxW[rows_B, prompt_len_B + n] = logits_BxV.argmax(-1)
    np.testing.assert_array_equal(tokens_BxN[:, n], seq_BxW[rows_B, prompt_len_B + n])


def test_padding_after_the_answer_changes_nothing(setup):
  config, examples, batch, params = setup
  data = config.data.copy_and_resolve_references()
  data.sequence_multiple = 64  # L: the smallest multiple of 64 holding the longest sequence
  batcher = input_lib.make_batcher(data)
  longest = int(batcher.sizes(examples)[:, batching.SIZE_COLUMNS.index("sequence_tokens")].max())
  assert longest == max(len(batching.context_prompt(ex) + " " + ex.answer) + 2 for ex in examples)
  narrow = batcher(examples)
  width = narrow["sequence_BxL"].shape[1]
  assert width == -(-longest // 64) * 64 < data.sequence_tokens
  np.testing.assert_array_equal(narrow["sequence_BxL"], batch["sequence_BxL"][:, :width])
  assert (batch["sequence_BxL"][:, width:] == tokenizers.from_spec("byte").pad_id).all()
  model = models.build(config.model)
  loss, _ = model.loss(params, batch, None, 0, config.loss)
  loss_narrow, _ = model.loss(params, narrow, None, 0, config.loss)
  np.testing.assert_allclose(loss_narrow, loss, rtol=1e-5)
  np.testing.assert_array_equal(model.generate(params, narrow, 4)[0],
                                model.generate(params, batch, 4)[0])


def test_missing_sequence_and_short_table_are_clear_errors(setup):
  config, examples, batch, params = setup
  plain = {k: v for k, v in batch.items() if k not in baseline.SEQUENCE_KEYS}
  with pytest.raises(ValueError, match="data.sequence_tokens"):
    models.build(config.model).init(jax.random.key(0), plain)
  with pytest.raises(ValueError, match="max_new_tokens 100 exceeds model.decoder.max_len"):
    models.build(config.model).generate(params, batch, 100)
  with pytest.raises(ValueError, match="model.kind"):
    cfg = config.model.copy_and_resolve_references()
    cfg.kind = "transformer"
    models.build(cfg)


@pytest.mark.parametrize("task", ["qa1", "qa2", "vt1", "vt2"])
def test_baseline_sequence_holds_every_training_and_held_out_story(task):
  data = babi.get_config(f"{task},tiny,baseline").data
  batcher = input_lib.make_batcher(data)
  column = batching.SIZE_COLUMNS.index("sequence_tokens")
  for split, seed in (("train", data.train_seed), ("test", data.eval_seed)):
    examples = registry.generate(task, split, data.eval_examples, seed)
    assert batcher.sizes(examples)[:, column].max() <= data.sequence_tokens, (task, split)
