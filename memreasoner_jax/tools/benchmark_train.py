"""Train-step benchmark: step time, examples/s, tokens/s, compile time, peak memory and MFU.

  python -m memreasoner_jax.tools.benchmark_train --preset=tiny --batch=32 --steps=10 --out=bench.json

The step is the real one (train.make_train_step over a data-parallel mesh of every local device)
on a fixed batch of generated qa1 stories. Model FLOPs are counted analytically (matmuls and
attention of the encoder over every line and the query, the decoder over the answer and the
autoencoded lines, x3 for forward + backward); XLA's own count is printed beside it. MFU is
model FLOPs per second over the device's peak, from a table of dense bf16/fp32 peaks or
--peak_tflops. Prints one table row and writes JSON.
"""

import json
import resource
import time

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from memreasoner_jax.configs import babi
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import presets
from memreasoner_jax import optimizer as optimizer_lib
from memreasoner_jax import sharding as sharding_lib
from memreasoner_jax import train

_PRESET = flags.DEFINE_enum("preset", "tiny", presets.PRESETS, "Model preset.")
_TASK = flags.DEFINE_string("task", "qa1", "Task whose stories fill the batch.")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch (0: the config's).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps after the compiling one.")
_DTYPE = flags.DEFINE_string("dtype", "", "Compute dtype override (float32, bfloat16).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s per device (0: from the table).")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

# Dense peak TFLOP/s per device by device_kind substring: (bfloat16, float32).
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5),
               "TPU v4": (275.0, 275.0 / 4), "TPU v5 lite": (197.0, 197.0 / 4),
               "TPU v5p": (459.0, 459.0 / 4), "TPU v6": (918.0, 918.0 / 4)}


def transformer_flops(layers: int, d: int, ff: int, seq: int, num_seqs: int,
                      prefix: int = 0, vocab: int = 0) -> float:
  """Forward FLOPs of `num_seqs` sequences: projections, MLP, attention (+ prefix slots), head."""
  per_token = layers * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * (seq + prefix) * d)
  return float(num_seqs * seq * (per_token + 2 * d * vocab))


def train_step_flops(cfg: ml_collections.ConfigDict, batch: dict[str, np.ndarray]) -> float:
  """Model FLOPs of one train step on `batch` (padded shapes: the work the device does)."""
  m = cfg.model
  b, e, t = batch["context_BxExT"].shape
  q, a = batch["query_BxQ"].shape[1], batch["answer_BxA"].shape[1]
  enc, dec = m.encoder, m.decoder
  encoder = (transformer_flops(enc.num_layers, enc.d_model, enc.d_ff, t, b * e)
             + transformer_flops(enc.num_layers, enc.d_model, enc.d_ff, q, b)
             + 2.0 * (b * e + b) * enc.d_model * m.latent_size)
  ae_seqs = 2 * b * min(cfg.loss.ae_lines, e)  # lines decoded from their latent and its read
  prefix = m.hops.num_hops * (2 if m.decoder.condition == "both" else 1)
  decoder = (transformer_flops(dec.num_layers, dec.d_model, dec.d_ff, a - 1, b, prefix,
                               dec.vocab_size)
             + transformer_flops(dec.num_layers, dec.d_model, dec.d_ff, t - 1, ae_seqs, 1,
                                 dec.vocab_size))
  return 3.0 * (encoder + decoder)


def peak_tflops(device: jax.Device, dtype: str) -> float | None:
  if _PEAK.value:
    return _PEAK.value
  for kind, (bf16, fp32) in PEAK_TFLOPS.items():
    if kind in device.device_kind:
      return bf16 if dtype == "bfloat16" else fp32
  return None


def main(argv):
  del argv
  cfg = babi.get_config(f"{_TASK.value},{_PRESET.value}")
  if _BATCH.value:
    cfg.data.global_batch = _BATCH.value
  if _DTYPE.value:
    cfg.model.dtype = _DTYPE.value
  cfg.data.train_examples = max(cfg.data.global_batch, 64)

  mesh = sharding_lib.make_mesh(cfg.mesh, jax.local_devices())
  sharding_lib.check_global_batch(cfg.data.global_batch, mesh, "--batch")
  batcher = input_lib.make_batcher(cfg.data)
  examples = input_lib.train_examples(cfg.data)
  local = batcher((examples * cfg.data.global_batch)[:cfg.data.global_batch])
  model = models.build(cfg.model)
  tx, schedule = optimizer_lib.make_optimizer(cfg.optimizer, cfg.training.num_steps)
  init_fn = lambda: train.init_state(model, tx, jax.random.key(0), local)
  sharding = sharding_lib.state_shardings(jax.eval_shape(init_fn), mesh, cfg.mesh.fsdp_min_size)
  state = jax.jit(init_fn, out_shardings=sharding)()
  batch = sharding_lib.global_batch(local, mesh)
  step = train.jit_train_step(
      train.make_train_step(model, cfg.loss, tx, schedule, jax.random.key(1)), mesh, sharding)

  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / _STEPS.value

  device = jax.local_devices()[0]
  stats = device.memory_stats() or {}
  peak_bytes = stats.get("peak_bytes_in_use")
  flops = train_step_flops(cfg, local)
  cost = compiled.cost_analysis()
  # The compiled module is one device's program: its count is that device's share of the batch.
  xla_flops = (cost[0] if isinstance(cost, list) else cost or {}).get("flops")
  peak = peak_tflops(device, cfg.model.dtype)
  tokens = train.count_tokens(local, batcher.encoder_tokenizer.pad_id)
  result = {
      "preset": _PRESET.value, "task": _TASK.value, "device": device.device_kind,
      "num_devices": mesh.devices.size, "dtype": cfg.model.dtype,
      "global_batch": cfg.data.global_batch, "batch_shape": {k: list(v.shape) for k, v in local.items()},
      "compile_s": compile_s, "step_s": step_s,
      "examples_per_s": cfg.data.global_batch / step_s, "tokens_per_s": tokens / step_s,
      "model_tflops_per_step": flops / 1e12,
      "xla_tflops_per_step": (None if xla_flops is None
                              else float(xla_flops) * mesh.devices.size / 1e12),
      "peak_memory_gib": None if peak_bytes is None else peak_bytes / 2**30,
      "host_max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      "peak_tflops_per_device": peak,
      "mfu": None if peak is None else flops / step_s / (peak * 1e12 * mesh.devices.size),
      "loss": float(metrics["loss"]),
  }
  print("| preset | device | batch | compile s | step ms | examples/s | tokens/s | peak GiB | MFU |")
  mem = result["peak_memory_gib"] if peak_bytes is not None else result["host_max_rss_gib"]
  mfu = "n/a" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
  print(f"| {_PRESET.value} | {device.device_kind} x{mesh.devices.size} | "
        f"{cfg.data.global_batch} | {compile_s:.1f} | {1000 * step_s:.1f} | "
        f"{result['examples_per_s']:.1f} | {result['tokens_per_s']:.0f} | {mem:.2f} | {mfu} |")
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
