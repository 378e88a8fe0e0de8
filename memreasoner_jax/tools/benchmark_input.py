"""Input-pipeline throughput: generation, ArrayRecord building, reading and batching per length,
and the Grain training pipeline with 0, 1 and 2 worker processes, its lines padded here or on the
device (`data.device_padding`, with the time the device takes to pad them), against what one
H100 would consume training `base` at 45% MFU (estimated from the train step's FLOP count).

  python -m memreasoner_jax.tools.benchmark_input --lengths=0k,4k,16k,128k --num=32 --out=pipeline.json

Prints one row per haystack length and writes the figures as JSON. Never fails on speed: the
numbers are for BUILD_NOTES and for checking the pipeline outpaces the train step (DESIGN 6).
"""

import collections
from collections.abc import Callable, Sequence
import dataclasses
import json
import os
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import tensorflow_datasets as tfds

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import device_padding
from memreasoner_jax.data import lines
from memreasoner_jax.data import pipeline
from memreasoner_jax.data import tfds_builder
from memreasoner_jax.data import tokenizers
from memreasoner_jax.tools import benchmark_train

H100_MFU = 0.45  # the train step's target (useful-token MFU)
# Each rate is timed over at least this long (a pass over a short length takes milliseconds).
_MIN_SECONDS = 2.0


def define_flags() -> None:
  """Defines the command's flags; only run as a command, so importing this module next
  to other commands (tests, notebooks) never defines a flag twice."""
  global _TASK, _LENGTHS, _NUM, _BATCH, _TOKENIZER, _WORKERS, _OUT
  _TASK = flags.DEFINE_string("task", "qa1", "Task to generate.")
  _LENGTHS = flags.DEFINE_list("lengths", ["0k", "4k", "16k", "128k"], "Haystack lengths.")
  _NUM = flags.DEFINE_integer("num", 32, "Examples per length.")
  _BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per batch (and per read).")
  _TOKENIZER = flags.DEFINE_string("tokenizer", "byte", "Encoder/decoder tokenizer spec.")
  _WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "Grain worker counts of the "
                               "training pipeline to measure (0: a thread of this process).")
  _OUT = flags.DEFINE_string("out", None, "Where to write the JSON results.")


def _timed(fn: Callable[[], object], min_seconds: float = 0.0,
           min_calls: int = 1) -> tuple[object, float]:
  """(fn's last result, seconds per call), calling it at least `min_calls` times and until
  `min_seconds` have passed: one pass over a short length is too brief to time alone."""
  start = time.perf_counter()
  calls = 0
  while calls < min_calls or time.perf_counter() - start < min_seconds:
    result = fn()
    calls += 1
  return result, (time.perf_counter() - start) / calls


def train_rate(source: pipeline.Source, batcher: batching.Batcher, batch_size: int,
               workers: int, steps: int, min_seconds: float = _MIN_SECONDS,
               pad_on_device: bool = False) -> float:
  """Examples per second of the training pipeline (Grain, `workers` worker processes) once
  running: the first batch, which starts the workers, is not counted. At least `steps` batches,
  `min_seconds`, and ten times the batches the pipeline holds ahead: those built while the
  first one was awaited come free, and at 128k (a batch a second) a short window was mostly
  them. `pad_on_device`: the batches of `data.device_padding` (their padding not timed here)."""
  prefetch = 2
  stream = pipeline.TrainIterator(source, batcher, batch_size, seed=0, process_index=0,
                                  process_count=1, prefetch=prefetch, workers=workers,
                                  device_padding=pad_on_device)
  ahead = prefetch * max(workers, 1)
  try:
    next(stream)
    _, seconds_per_batch = _timed(lambda: next(stream), min_seconds, max(steps, 10 * ahead))
  finally:
    stream.close()
  return batch_size / seconds_per_batch


def device_pad_seconds(source: pipeline.Source, batcher: batching.Batcher,
                       batch_size: int) -> float:
  """Seconds per batch the device (JAX's default backend) takes to pad one training batch of
  `data.device_padding`, compiled beforehand."""
  stream = pipeline.TrainIterator(source, batcher, batch_size, seed=0, process_index=0,
                                  process_count=1, device_padding=True)
  arrays, line_tokens = device_padding.split_line_tokens(stream.batch_at(0))
  arrays = jax.device_put(arrays)
  pad = jax.jit(device_padding.pad_lines, static_argnums=1)
  jax.block_until_ready(pad(arrays, line_tokens))
  _, seconds = _timed(lambda: jax.block_until_ready(pad(arrays, line_tokens)), _MIN_SECONDS, 3)
  return seconds


def measure(task: str, length: str, num: int, batch_size: int,
            tokenizer: tokenizers.Tokenizer, data_dir: str,
            workers: Sequence[int] = (0, 1, 2)) -> dict[str, float]:
  """Rates for one length: generate, build ArrayRecord, read it back, read + batch in one
  pass, and the training pipeline with each count of `workers`."""
  config = tfds_builder.task_config(task, length, splits=(("test", num),))
  config = dataclasses.replace(config, name=f"bench_{config.name}_{num}")
  builder = tfds_builder.MemreasonerTasks(data_dir=data_dir, config=config,
                                          file_format="array_record")
  examples, generate_s = _timed(lambda: builder.generate_split("test", num))
  examples = [lines.split_long_lines(ex, config.max_line_bytes) for ex in examples]
  _, build_s = _timed(builder.download_and_prepare)  # Generates again, then writes.
  source = tfds_builder.TfdsSource(builder, "test")

  index_chunks = np.array_split(np.arange(num), max(1, num // batch_size))
  _, read_s = _timed(lambda: [pipeline.read_examples(source, chunk) for chunk in index_chunks],
                     _MIN_SECONDS)
  shape = batching.BatchShape(
      line_tokens=config.max_line_bytes + 2, query_tokens=64, answer_tokens=128,
      line_buckets=batching.line_buckets(16, max(len(ex.context) for ex in examples)))
  # As a run without the read losses builds batches (the tables before they existed, too).
  batcher = batching.Batcher(shape, tokenizer, read_targets=False)
  one_pass = lambda: pipeline.eval_batches(source, batcher, batch_size, process_index=0,
                                           process_count=1)
  # Timed as training consumes batches, each dropped before the next is built: a pass kept in
  # a list holds a 128k pass's hundreds of megabytes alive and pays for the memory.
  _, load_s = _timed(lambda: collections.deque(one_pass(), maxlen=0), _MIN_SECONDS)
  chars = sum(len(line) for ex in examples for line in ex.context)
  # What one H100 would consume: `base` (byte tokens, its default) at 45% of the dense bf16
  # peak, on these examples' real tokens (benchmark_train's FLOP count). An untimed pass.
  base = babi.get_config(f"{task},base")
  tokens, useful_flops = 0, 0.0
  for b in one_pass():
    tokens += int(((b["context_BxExT"] != tokenizer.pad_id).sum((1, 2))
                   * b["example_weight_B"]).sum())
    useful_flops += (benchmark_train.train_step_flops(base, b, tokenizer.pad_id)
                     * float(b["example_weight_B"].mean()))
  h100_flops_per_s = H100_MFU * benchmark_train.PEAK_TFLOPS["H100"][0] * 1e12
  h100_examples_per_s = h100_flops_per_s * num / useful_flops
  # Two epochs' worth of batches (at least 4), the first of them not counted.
  steps = max(4, 2 * num // batch_size)
  train_rates = {f"train_{w}_workers{kind}_examples_per_s": train_rate(
      source, batcher, batch_size, w, steps, pad_on_device=kind == "_device_padded")
                 for kind in ("", "_device_padded") for w in workers}
  return {
      "length": length, "examples": num, "lines_per_example": float(np.mean(
          [len(ex.context) for ex in examples])), "chars_per_example": chars / num,
      "tokens_per_example": tokens / num,
      "generate_examples_per_s": num / generate_s, "generate_tokens_per_s": tokens / generate_s,
      "build_examples_per_s": num / build_s,
      "read_examples_per_s": num / read_s,
      "load_examples_per_s": num / load_s, "load_tokens_per_s": tokens / load_s,
      **train_rates,
      "device_pad_ms_per_batch": 1e3 * device_pad_seconds(source, batcher, batch_size),
      "device": jax.devices()[0].device_kind,
      "h100_base_examples_per_s": h100_examples_per_s,
  }


def main(argv: Sequence[str]) -> None:
  del argv
  logging.set_verbosity(logging.ERROR)  # TFDS logs every build; the table is the output.
  tfds.disable_progress_bar()
  # As the training pipeline does once it starts: set here, every rate of the run (the one pass
  # included) is timed under the same allocator, whichever length comes first.
  pipeline.keep_freed_memory()
  tokenizer = tokenizers.from_spec(_TOKENIZER.value)
  results = []
  with tempfile.TemporaryDirectory() as data_dir:
    for length in _LENGTHS.value:
      row = measure(_TASK.value, length, _NUM.value, _BATCH.value, tokenizer, data_dir,
                    [int(w) for w in _WORKERS.value])
      results.append(row)
      print(f"{row['length']:>5}  lines/ex {row['lines_per_example']:8.1f}  "
            f"tokens/ex {row['tokens_per_example']:10.0f} | generate {row['generate_examples_per_s']:9.1f} ex/s "
            f"{row['generate_tokens_per_s']:12.0f} tok/s | build {row['build_examples_per_s']:8.1f} ex/s | "
            f"read {row['read_examples_per_s']:9.1f} ex/s | read+batch "
            f"{row['load_examples_per_s']:9.1f} ex/s {row['load_tokens_per_s']:12.0f} tok/s | "
            "train ex/s by workers " + " ".join(
                f"{w}: {row[f'train_{w}_workers_examples_per_s']:.1f}" for w in _WORKERS.value)
            + " | padded on the device " + " ".join(
                f"{w}: {row[f'train_{w}_workers_device_padded_examples_per_s']:.1f}"
                for w in _WORKERS.value)
            + f" ({row['device_pad_ms_per_batch']:.2f} ms a batch on {row['device']})"
            + f" | one H100 on base needs {row['h100_base_examples_per_s']:.1f} ex/s",
            flush=True)
  report = {"task": _TASK.value, "tokenizer": tokenizer.spec, "batch_size": _BATCH.value,
            "cpus": os.cpu_count(), "results": results}
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
