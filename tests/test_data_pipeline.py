"""Iterators: per-host slices cover the data once, state resumes exactly, eval pads with weight 0."""

import copy
import dataclasses
import json
import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest

from memreasoner_jax.data import batching
from memreasoner_jax.data import pipeline
from memreasoner_jax.data import tokenizers
from tests import data_fixtures

SHAPE = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40,
                            line_buckets=(4, 8, 16))
BATCHER = batching.Batcher(SHAPE, tokenizers.ByteTokenizer())
DATA = data_fixtures.qa1_examples(48)


def _train(process_index=0, process_count=1, **kw):
  return pipeline.TrainIterator(DATA, BATCHER, 8, seed=3, process_index=process_index,
                                process_count=process_count, **kw)


def _index_of(batch) -> list[str]:
  """Identifies each example of a batch by its decoded query and first line."""
  decode = tokenizers.ByteTokenizer().decode
  return [decode(q) + "|" + decode(c[0]) for q, c in zip(batch["query_BxQ"],
                                                           batch["context_BxExT"])]


def test_two_hosts_read_disjoint_slices_covering_each_epoch():
  hosts = [_train(i, 2) for i in range(2)]
  steps_per_epoch = len(DATA) // 8
  for epoch in range(2):
    seen = [np.concatenate([h.indices(epoch * steps_per_epoch + s)[1]
                            for s in range(steps_per_epoch)]) for h in hosts]
    assert len(set(seen[0]) & set(seen[1])) == 0
    assert sorted(np.concatenate(seen).tolist()) == list(range(len(DATA)))
  # Both hosts' shares concatenated are the single-host global batch.
  single = _train()
  for step in range(3):
    assert np.concatenate([h.indices(step)[1] for h in hosts]).tolist() == \
        single.indices(step)[0].tolist()


def test_hosts_agree_on_line_bucket_and_share_shapes():
  hosts = [_train(i, 2, prefetch=0) for i in range(2)]
  for step in range(6):
    a, b = (h.batch_at(step) for h in hosts)
    assert a["context_BxExT"].shape == b["context_BxExT"].shape
    assert a["query_BxQ"].shape == (4, 24)


def test_epochs_are_reshuffled_and_seeded():
  it = _train()
  first = [it.indices(s)[0] for s in range(12)]
  assert sorted(np.concatenate(first[:6]).tolist()) == list(range(48))
  assert np.concatenate(first[:6]).tolist() != np.concatenate(first[6:]).tolist()
  assert _train().indices(5)[0].tolist() == first[5].tolist()
  other = pipeline.TrainIterator(DATA, BATCHER, 8, seed=4, process_index=0, process_count=1)
  assert other.indices(0)[0].tolist() != first[0].tolist()


@pytest.mark.parametrize("prefetch, workers", [(0, 0), (2, 0), (1, 2)])
def test_state_round_trip_resumes_exactly(prefetch, workers):
  it = _train(prefetch=prefetch, workers=workers)
  for _ in range(7):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  assert (state["epoch"], state["position"], state["workers"]) == (1, 8, workers)
  expected = [_index_of(next(it)) for _ in range(3)]
  it.close()
  resumed = _train(prefetch=prefetch, workers=workers)
  resumed.set_state(state)
  assert [_index_of(next(resumed)) for _ in range(3)] == expected
  resumed.close()
  # Another worker count cannot take Grain's state: it restarts at the saved step instead.
  other = _train(prefetch=prefetch, workers=1 if workers == 0 else 0)
  other.set_state(state)
  assert [_index_of(next(other)) for _ in range(3)] == expected
  other.close()


def test_worker_processes_yield_the_batches_of_the_step_function():
  it = _train(1, 2, workers=2, prefetch=1)
  reference = _train(1, 2, prefetch=0)
  for step in range(8):  # past an epoch's end (6 steps)
    batch = next(it)
    for key, value in reference.batch_at(step).items():
      np.testing.assert_array_equal(batch[key], value, err_msg=f"step {step}, {key}")
  it.close()


def test_worker_copy_hands_over_ragged_lines_that_pad_to_the_same_batch():
  shape = dataclasses.replace(SHAPE, line_tokens=160, line_buckets=(16,))
  stream = pipeline._Stream(DATA, batching.Batcher(shape, tokenizers.ByteTokenizer()), 8,
                            seed=3, shuffle=True, process_index=0, process_count=1, shards=1)
  worker = copy.copy(stream)
  worker.ragged = True
  plain, ragged = stream(1), worker(1)
  assert "context_BxExT" not in ragged
  # Only the real lines' tokens travel: a fraction of the padded array's bytes.
  assert ragged["context_ids_X"].nbytes < plain["context_BxExT"].nbytes / 4
  padded = stream.batcher.pad_lines(ragged)
  assert padded.keys() == plain.keys()
  for key, value in plain.items():
    np.testing.assert_array_equal(padded[key], value, err_msg=key)


_HEAP_CHECK = """
import ctypes, sys
import numpy as np
from memreasoner_jax.data import pipeline
class Info(ctypes.Structure):  # glibc's struct mallinfo2
  _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
              "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
info = ctypes.CDLL("libc.so.6").mallinfo2
info.restype = Info
if sys.argv[1] == "keep":
  pipeline.keep_freed_memory()
if sys.argv[1] == "train":  # the training process's pipeline sets it when it starts
  from memreasoner_jax.data import batching, tokenizers
  from tests import data_fixtures
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40,
                              line_buckets=(16,))
  train = pipeline.TrainIterator(data_fixtures.qa1_examples(8), batching.Batcher(
      shape, tokenizers.ByteTokenizer()), 8, process_index=0, process_count=1, prefetch=0)
  next(train)
block = np.ones(64 << 20, np.uint8)  # over glibc's largest self-tuned mapping size (32 MiB)
mapped = info().hblkhd
del block
print(mapped, info().arena)
"""


def test_batch_building_processes_keep_freed_batch_memory_in_the_heap():
  """A block as large as a long batch's temporaries comes from the heap and stays there when
  freed, instead of being mapped afresh (and faulted in zeroed) for every batch: in the worker
  processes (`keep_freed_memory`, their setup) and in the training process once its pipeline
  starts."""
  if platform.libc_ver()[0] != "glibc":
    pytest.skip("keep_freed_memory tunes glibc's malloc only")

  def run(mode):  # a fresh process each: the setting is process-wide
    out = subprocess.run([sys.executable, "-c", _HEAP_CHECK, mode], capture_output=True,
                         text=True, check=True, cwd=pathlib.Path(__file__).parents[1]).stdout
    return [int(v) for v in out.split()]

  default_mapped, _ = run("default")
  kept_mapped, kept_heap = run("keep")
  assert default_mapped >= 64 << 20  # glibc's default: mapped on its own
  assert kept_mapped < 64 << 20
  assert kept_heap >= 64 << 20  # freed, still held for the next batch
  train_mapped, train_heap = run("train")
  assert train_mapped < 64 << 20 and train_heap >= 64 << 20


def test_state_from_another_dataset_is_rejected():
  state = _train().get_state()
  other = pipeline.TrainIterator(DATA[:40], BATCHER, 8, seed=3, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="num_examples"):
    other.set_state(state)


def test_over_long_example_is_refused_before_the_first_batch():
  # At index 30, an example of 20 lines: past the largest line bucket (16).
  data = DATA[:30] + data_fixtures.qa1_examples(20, max_lines=20)[19:] + DATA[31:]
  with pytest.raises(ValueError, match=r"1 of 48 examples .* qa1\[19\] at index 30 with 20 lines"):
    pipeline.TrainIterator(data, BATCHER, 8, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="more than 16 lines"):
    next(pipeline.eval_batches(data, BATCHER, 8, process_index=0, process_count=1))


def test_global_batch_must_divide():
  with pytest.raises(ValueError, match="multiple of process_count=3"):
    _train(0, 3)


def test_eval_pass_pads_last_batch_on_every_host():
  data = DATA[:21]
  per_host = [list(pipeline.eval_batches(data, BATCHER, 8, process_index=i, process_count=2))
              for i in range(2)]
  assert [len(b) for b in per_host] == [3, 3]
  weights = [np.concatenate([b["example_weight_B"] for b in batches]) for batches in per_host]
  assert weights[0].sum() + weights[1].sum() == 21
  assert per_host[0][-1]["example_weight_B"].tolist() == [1, 1, 1, 1]  # Positions 16..19.
  assert per_host[1][-1]["example_weight_B"].tolist() == [1, 0, 0, 0]  # Only 20 exists.
  for a, b in zip(*per_host):
    assert a["context_BxExT"].shape == b["context_BxExT"].shape
  real = [name for batches, w in zip(per_host, weights)
          for name, keep in zip(sum((_index_of(b) for b in batches), []), w) if keep]
  assert sorted(real) == sorted(_index_of(BATCHER(data)))


def test_hosts_agree_on_token_widths_and_packed_slots_and_split_the_single_host_batch():
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40,
                              line_buckets=(4, 8, 16), token_multiple=4, pack_lines=True,
                              sequence_tokens=1024, sequence_multiple=64)
  batcher = batching.Batcher(shape, tokenizers.ByteTokenizer())
  train = lambda i, n, shards: pipeline.TrainIterator(DATA, batcher, 8, seed=3, process_index=i,
                                                      process_count=n, prefetch=0, shards=shards)
  hosts, single = [train(i, 2, 2) for i in range(2)], train(0, 1, 4)
  for step in range(6):
    a, b = (h.batch_at(step) for h in hosts)
    whole = single.batch_at(step)
    assert whole["sequence_BxL"].shape[1] % 64 == 0 and whole["sequence_BxL"].shape[1] < 1024
    for key in whole:
      assert a[key].shape == b[key].shape
      np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), whole[key])
  # Evaluation: the padded last batch's layout counts the copies of example 0 on every host.
  per_host = [list(pipeline.eval_batches(DATA[:21], batcher, 8, process_index=i,
                                         process_count=2, shards=2)) for i in range(2)]
  for a, b in zip(*per_host):
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
