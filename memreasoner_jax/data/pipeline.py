"""Per-host batch iterators: an endless shuffled stream for training, one padded pass for eval.

The stream is laid out globally and independently of the number of hosts: epoch e is a seeded
permutation of the dataset, epochs follow each other, and global batch k is stream positions
[k*G, (k+1)*G). Host i of P takes its contiguous share [k*G + i*G/P, k*G + (i+1)*G/P), so every
host reads only its own examples, the hosts of one step together read each position once, and a
run resumed on a different number of hosts sees the same global batches. A step's layout (line
bucket E, and with the batcher's options the token widths and packed lines) is chosen from the
sizes of the whole global batch's examples, computed once per dataset on every host (known
without reading the other hosts' records), so all hosts build the same shapes.
"""

from collections.abc import Iterator
import copy
from typing import Any, Protocol

import numpy as np

from memreasoner_jax.data import batching
from memreasoner_jax.tasks.example import Example


class Source(Protocol):
  """Random access to a split's Examples (an in-memory list or a TFDS ArrayRecord source)."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Example: ...


def read_examples(source: Source, indices: np.ndarray) -> list[Example]:
  """The Examples at `indices`, read one by one: TFDS's batched read (`__getitems__`) starts a
  pool of threads on every call, which costs more than it saves on local files (measured in
  BUILD_NOTES.md, most in worker processes)."""
  return [source[int(i)] for i in indices]


def example_sizes(source: Source, batcher: batching.Batcher, chunk: int = 4096,
                  tokenize: bool = False) -> np.ndarray:
  """`batcher.sizes` of every example (N x C, C: SIZE_COLUMNS). Line counts alone are in TFDS
  metadata; token widths (`token_multiple`, `sequence_multiple`) and context tokens (`tokenize`)
  need one pass over the source, `chunk` examples at a time."""
  stored = getattr(source, "num_lines_N", None)
  if stored is not None and batcher.fixed_widths and not tokenize:
    sizes_NxC = batcher.fixed_sizes(stored)
  else:
    parts = [batcher.sizes(read_examples(source, np.arange(start, min(start + chunk, len(source)))),
                           tokenize)
             for start in range(0, len(source), chunk)]
    sizes_NxC = (np.concatenate(parts) if parts
                 else np.zeros((0, len(batching.SIZE_COLUMNS)), np.int64))
  _check_lines(source, sizes_NxC, batcher.shape.line_buckets[-1])
  return sizes_NxC


def _check_lines(source: Source, sizes_NxC: np.ndarray, max_lines: int) -> None:
  """An example longer than the largest line bucket is an error before the first step, rather
  than when (hours in) its batch comes up."""
  over = np.flatnonzero(sizes_NxC[:, 0] > max_lines)
  if over.size:
    worst = int(over[sizes_NxC[over, 0].argmax()])
    raise ValueError(
        f"{over.size} of {len(source)} examples have more than {max_lines} lines (the largest "
        f"line bucket, data.max_lines), the longest being example "
        f"{batching.example_name(source[worst])} at index {worst} with {sizes_NxC[worst, 0]} "
        "lines; raise data.max_lines or shorten those contexts")


def host_share(global_batch: int, process_index: int, process_count: int) -> tuple[int, int]:
  """(start, size) of this host's part of every global batch."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
  if global_batch < 1 or global_batch % process_count:
    raise ValueError(
        f"global_batch={global_batch} must be a positive multiple of process_count="
        f"{process_count} (each host takes an equal share)")
  size = global_batch // process_count
  return process_index * size, size


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only when the caller leaves them out)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


class _Stream:
  """This host's batch of every global step, as a pure function of the step (the map that the
  Grain pipeline runs, in worker processes too: it pickles)."""

  def __init__(self, source: Source, batcher: batching.Batcher, global_batch: int, seed: int,
               shuffle: bool, process_index: int, process_count: int, shards: int,
               device_padding: bool = False):
    self._start, self._size = host_share(global_batch, process_index, process_count)
    self.source = source
    self.batcher = batcher
    self.global_batch = global_batch
    self.seed = seed
    self._shuffle = shuffle
    # Padding lines on the device needs every example's context tokens: all hosts size N alike.
    self._sizes_NxC = example_sizes(source, batcher, tokenize=device_padding)
    self._shards = shards  # this host's parts of a batch (devices) for packed lines
    self._global_shards = shards * process_count
    self._permutations: dict[int, np.ndarray] = {}
    self.device_padding = device_padding
    # Set on the copy that worker processes run when the training process pads the lines
    # (`Batcher.pad_lines`): they hand them over ragged, a fraction of the bytes to move.
    self.ragged = False

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      n = len(self.source)
      perm = (np.random.default_rng([self.seed, epoch]).permutation(n) if self._shuffle
              else np.arange(n))
      self._permutations = {e: p for e, p in self._permutations.items() if e >= epoch - 1}
      self._permutations[epoch] = perm
    return self._permutations[epoch]

  def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(self.source)
    positions = step * self.global_batch + np.arange(self.global_batch)
    epochs, offsets = np.divmod(positions, n)
    global_indices = np.empty(self.global_batch, np.int64)
    for epoch in np.unique(epochs):
      here = epochs == epoch
      global_indices[here] = self._permutation(int(epoch))[offsets[here]]
    return global_indices, global_indices[self._start:self._start + self._size]

  def __call__(self, step: int) -> batching.Batch:
    global_indices, mine = self.indices(step)
    layout = self.batcher.layout(self._sizes_NxC[global_indices], self._global_shards,
                                 device_padding=self.device_padding)
    examples = read_examples(self.source, mine)
    ragged = self.batcher.ragged(examples, layout, shards=self._shards)
    if self.device_padding:
      return self.batcher.pack_lines(ragged)
    return ragged if self.ragged else self.batcher.pad_lines(ragged)


# Steps of the endless stream: a Grain range this long never ends in practice.
_ENDLESS = 2**62
# Worker batches' arrays from this size on travel through shared memory; smaller ones are
# pickled, which costs less than a block of their own up to a few MiB (measured in
# BUILD_NOTES.md): all of a packed or ragged batch up to 16k, the line tokens from 128k.
MIN_SHARED_BYTES = 1 << 22
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
  """glibc keeps the memory a batch frees for the next batch, in this process.

  By default glibc maps blocks over a threshold afresh (128 KiB, raised as such blocks are
  freed, never past 32 MiB) and trims a thread's heap on free, so each batch's megabytes of
  token temporaries and padded arrays fault in zeroed pages again: a worker built a 16k batch
  1.6 times slower than the training process does, and the training process padded a 128k batch
  twice as slowly (BUILD_NOTES.md). A process holds a few batches' worth at most, so keeping
  them costs little. Elsewhere than glibc this does nothing.
  """
  import ctypes  # pylint: disable=import-outside-toplevel
  import ctypes.util  # pylint: disable=import-outside-toplevel
  name = ctypes.util.find_library("c")
  mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
  if mallopt is not None:
    mallopt(_M_MMAP_THRESHOLD, 1 << 30)
    mallopt(_M_TRIM_THRESHOLD, 1 << 31)


def _worker_setup(worker_index: int, worker_count: int) -> None:
  """Grain's setup of each worker process."""
  del worker_index, worker_count
  keep_freed_memory()


class TrainIterator:
  """Endless, seeded, shuffled per-host batches through Grain, with a checkpointable position.

  The stream is laid out as the module docstring says (the same batches for any number of hosts
  or workers); Grain runs it: a MapDataset over the global steps, mapped to this host's batch,
  `prefetch` batches built ahead in a thread, or with `workers` > 0 in that many worker
  processes (`mp_prefetch`; tokenizing long contexts takes more than one core). With
  `device_padding` a batch holds its lines packed per example (`Batcher.pack_lines`) for the
  train step to pad on the device, and its static T under `batching.LINE_TOKENS`.

  `get_state()` is a JSON-able dict holding Grain's iterator state and the step; `set_state()`
  resumes at that step, so a restored run reads exactly the batches the uninterrupted run would
  have, with or without workers.
  """

  def __init__(self, source: Source, batcher: batching.Batcher, global_batch: int, *,
               seed: int = 0, shuffle: bool = True, process_index: int | None = None,
               process_count: int | None = None, prefetch: int = 2, workers: int = 0,
               shards: int = 1, device_padding: bool = False):
    if len(source) == 0:
      raise ValueError("TrainIterator needs a non-empty source")
    if workers < 0 or prefetch < 0:
      raise ValueError(f"workers and prefetch must be >= 0, got {workers} and {prefetch}")
    process_index, process_count = _processes(process_index, process_count)
    self._stream = _Stream(source, batcher, global_batch, seed, shuffle, process_index,
                           process_count, shards, device_padding)
    self._prefetch = prefetch
    self._workers = workers
    self._step = 0
    self._first_step = 0  # the step Grain's range starts at (its state counts from there)
    self._iter = None  # Grain's iterator, started by the first batch (or by set_state)

  def _grain_iterator(self, first_step: int):
    self._first_step = first_step
    # Imported here: Grain starts its own machinery on import, which batch_at alone needs not.
    import grain  # pylint: disable=import-outside-toplevel
    from absl import flags  # pylint: disable=import-outside-toplevel

    if not flags.FLAGS.is_parsed():
      # Grain reads its settings from absl flags; outside an absl program (a notebook, a
      # library caller) none were parsed, and Grain's defaults are what is wanted.
      flags.FLAGS.mark_as_parsed()
    # This process builds every batch without workers, and with them pads each on the host.
    keep_freed_memory()
    stream = self._stream
    # Workers hand over lines ragged for this process to pad, or packed for the device.
    pad_here = self._workers and not stream.device_padding
    if pad_here:
      stream = copy.copy(stream)
      stream.ragged = True
    steps = grain.MapDataset.range(first_step, _ENDLESS).map(stream)
    # Our batches are built from examples in memory: one reading thread (none without
    # prefetch), as Grain advises for in-memory data. None in worker processes either: their
    # queues hold the batches ahead, and a thread there only contends for the worker's GIL
    # (measured in BUILD_NOTES.md).
    read = grain.ReadOptions(num_threads=1 if self._prefetch and not self._workers else 0,
                             prefetch_buffer_size=max(self._prefetch, 1))
    dataset = steps.to_iter_dataset(read)
    if self._workers:
      # Arrays under this size are pickled to the training process: a shared-memory block
      # each costs more than copying them (measured in BUILD_NOTES.md).
      dataset = grain.experimental.WithOptionsIterDataset(
          dataset, grain.experimental.DatasetOptions(min_shm_size=MIN_SHARED_BYTES))
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self._workers, per_worker_buffer_size=max(self._prefetch, 1)),
          worker_init_fn=_worker_setup)
    if pad_here:
      dataset = dataset.map(stream.batcher.pad_lines)
    return iter(dataset)

  def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset indices of the whole global batch of `step`, those of this host's share)."""
    return self._stream.indices(step)

  def batch_at(self, step: int) -> batching.Batch:
    """This host's batch of global step `step` (a pure function of the step)."""
    return self._stream(step)

  def __iter__(self) -> Iterator[batching.Batch]:
    return self

  def __next__(self) -> batching.Batch:
    if self._iter is None:
      self._iter = self._grain_iterator(self._step)
    batch = next(self._iter)
    self._step += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    """Where the stream stands (the next batch starts at `position` of `epoch`), and Grain's
    iterator state with the worker count it belongs to."""
    epoch, position = divmod(self._step * self._stream.global_batch, len(self._stream.source))
    return {"epoch": int(epoch), "position": int(position), "step": self._step,
            "seed": self._stream.seed, "num_examples": len(self._stream.source),
            "global_batch": self._stream.global_batch, "workers": self._workers,
            "grain_first_step": self._first_step,
            "grain": None if self._iter is None else self._iter.get_state()}

  def set_state(self, state: dict[str, Any]) -> None:
    """Resumes at a position from `get_state()`; a different dataset or batch is an error.

    Grain's state is restored where it was saved with the same worker count; otherwise (or from
    a state saved before Grain) the stream restarts at the saved step, which is the same batch.
    """
    mine = {"seed": self._stream.seed, "num_examples": len(self._stream.source),
            "global_batch": self._stream.global_batch}
    mismatched = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
    if mismatched:
      raise ValueError(f"Data iterator state does not fit this pipeline (saved, now): {mismatched}")
    self._step = int(state["step"])
    self.close()
    if state.get("grain") is not None and state.get("workers") == self._workers:
      self._iter = self._grain_iterator(int(state["grain_first_step"]))
      self._iter.set_state(state["grain"])
    # Otherwise the next batch starts Grain's range at the saved step.

  def close(self) -> None:
    """Stops the prefetch thread or worker processes."""
    close = getattr(self._iter, "close", None)
    if close is not None:
      close()
    self._iter = None


def eval_batches(source: Source, batcher: batching.Batcher, global_batch: int, *,
                 process_index: int | None = None,
                 process_count: int | None = None,
                 shards: int = 1) -> Iterator[batching.Batch]:
  """One in-order pass; the last global batch is padded with weight-0 copies of example 0.

  Every host yields the same number of batches of the same shapes (a collective per batch
  needs it), even when the dataset ends inside another host's share.
  """
  process_index, process_count = _processes(process_index, process_count)
  start, size = host_share(global_batch, process_index, process_count)
  n = len(source)
  if n == 0:
    return
  sizes_NxC = example_sizes(source, batcher)
  for first in range(0, n, global_batch):
    # Past the end every host reads example 0 (weight 0), so the layout counts it there too.
    global_positions = first + np.arange(global_batch)
    layout = batcher.layout(sizes_NxC[np.where(global_positions < n, global_positions, 0)],
                            shards * process_count)
    positions = global_positions[start:start + size]
    real = positions < n
    examples = read_examples(source, np.where(real, positions, 0))
    yield batcher(examples, layout, example_weight_B=real.astype(np.float32), shards=shards)

