"""Lines padded on the device (`data.device_padding`): packed on the host, padded in the jitted
train step into exactly the host's arrays, by any number of workers and hosts, end to end."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import device_padding
from memreasoner_jax.data import pipeline
from memreasoner_jax.data import tokenizers
from memreasoner_jax import metric_writers
from memreasoner_jax import train
from tests import data_fixtures
from tests import train_testing

train_testing.use_compilation_cache()

SHAPE = batching.BatchShape(line_tokens=160, query_tokens=24, answer_tokens=40,
                            line_buckets=(4, 8, 16))
DATA = data_fixtures.qa1_examples(48)


class _OtherIds(tokenizers.ByteTokenizer):
  """A decoder tokenizer with its own special ids, so the batch carries recon_* too."""
  pad_id, bos_id, eos_id = 7, 5, 6

  @property
  def spec(self) -> str:
    return "other-ids"


def _both(batcher, examples, shards=1):
  """(the host-padded batch, the same batch padded on the device) of `examples`."""
  layout = batcher.layout(batcher.sizes(examples, tokenize=True), shards, device_padding=True)
  ragged = batcher.ragged(examples, layout, shards=shards)
  packed, line_tokens = device_padding.split_line_tokens(batcher.pack_lines(ragged))
  on_device = jax.jit(device_padding.pad_lines, static_argnums=1)(packed, line_tokens)
  return batcher.pad_lines(ragged), jax.device_get(on_device), packed


# The share of the host batch's bytes the packed lines hold at most: with lines of T = 160 mostly
# padding, and with T cut to the batch's longest line.
@pytest.mark.parametrize("shape, share", [
    (SHAPE, 1 / 4), (dataclasses.replace(SHAPE, token_multiple=4, pack_lines=True), 3 / 4)])
def test_device_pads_the_packed_lines_into_the_host_batch(shape, share):
  batcher = batching.Batcher(shape, tokenizers.ByteTokenizer(), _OtherIds())
  # Contexts of different lengths, one with an empty line (BOS and EOS alone).
  blank = dataclasses.replace(DATA[6], context=(DATA[6].context[0], "", *DATA[6].context[1:]),
                              support=tuple(i + 1 if i > 0 else i for i in DATA[6].support))
  examples = DATA[:5] + [blank, data_fixtures.QA2_STORY]
  host, device, packed = _both(batcher, examples, shards=7 if shape.pack_lines else 1)
  assert {"recon_BxExT", "recon_mask_BxExT"} <= host.keys()
  assert device.keys() == host.keys()
  for key, value in host.items():
    np.testing.assert_array_equal(device[key], value, err_msg=key)
  # What moves to the device: each example's tokens, not E x T slots of mostly padding.
  assert packed["context_ids_BxN"].nbytes < host["context_BxExT"].nbytes * share
  longest = packed["context_lengths_BxE"].sum(axis=1).max()
  assert longest < packed["context_ids_BxN"].shape[1] <= 1.125 * (longest + 1)


def test_sizes_without_context_tokens_are_refused():
  batcher = batching.Batcher(SHAPE, tokenizers.ByteTokenizer())
  with pytest.raises(ValueError, match="tokenize=True"):
    batcher.layout(batcher.sizes(DATA[:2]), device_padding=True)
  with pytest.raises(ValueError, match="device_padding=True"):
    batcher.pack_lines(batcher.ragged(DATA[:2]))


def test_workers_and_hosts_build_the_same_packed_batches():
  batcher = batching.Batcher(SHAPE, tokenizers.ByteTokenizer())
  train_iter = lambda i, n, **kw: pipeline.TrainIterator(
      DATA, batcher, 8, seed=3, process_index=i, process_count=n, device_padding=True, **kw)
  host_padded = pipeline.TrainIterator(DATA, batcher, 8, seed=3, process_index=0, process_count=1)
  single, with_workers = train_iter(0, 1, prefetch=0), train_iter(0, 1, workers=2, prefetch=1)
  halves = [train_iter(i, 2, prefetch=0) for i in range(2)]
  for step in range(4):
    whole = single.batch_at(step)
    assert whole[batching.LINE_TOKENS] == SHAPE.line_tokens and "context_BxExT" not in whole
    built = next(with_workers)
    assert built.keys() == whole.keys()
    a, b = (h.batch_at(step) for h in halves)
    for key, value in whole.items():
      np.testing.assert_array_equal(built[key], value, err_msg=key)
      if key != batching.LINE_TOKENS:  # N is sized from the whole global batch on each host
        np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), value, err_msg=key)
    arrays, line_tokens = device_padding.split_line_tokens(whole)
    padded = jax.device_get(device_padding.pad_lines(arrays, line_tokens))
    plain = host_padded.batch_at(step)
    assert padded.keys() == plain.keys()
    for key, value in plain.items():
      np.testing.assert_array_equal(padded[key], value, err_msg=key)
  with_workers.close()


def test_a_run_padded_on_the_device_trains_as_one_padded_on_the_host(tmp_path):
  runs = {}
  for padding in (False, True):
    config = babi.get_config("qa1,tiny,runlocal")
    config.training.num_steps, config.training.log_every = 6, 1
    config.data.eval_examples, config.data.global_batch = 0, 8
    config.data.device_padding = padding
    workdir = str(tmp_path / str(padding))
    train.train_and_evaluate(config, workdir)
    runs[padding] = metric_writers.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  losses = {p: [r["train/loss"] for r in records if "train/loss" in r]
            for p, records in runs.items()}
  assert len(losses[True]) == 6
  np.testing.assert_allclose(losses[True], losses[False], rtol=1e-6)
  # The token rate counts the same real tokens from the packed lengths.
  tokens = {p: [r["perf/tokens_per_sec"] / r["perf/examples_per_sec"] for r in records
                if "perf/tokens_per_sec" in r and r["step"] > 1] for p, records in runs.items()}
  np.testing.assert_allclose(tokens[True], tokens[False], rtol=1e-6)
