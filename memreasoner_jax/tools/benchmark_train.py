"""Train-step benchmark: step time, examples/s, tokens/s, compile time, peak memory and MFU.

  python -m memreasoner_jax.tools.benchmark_train --preset=tiny --batch=32 --steps=10 --out=bench.json

The step is the real one (train.make_train_step over a data-parallel mesh of every local device)
on a fixed batch of generated qa1 stories. Model FLOPs are counted analytically (matmuls and
attention of the encoder over every line and the query, the decoder over the answer and the
autoencoded lines, x3 for forward + backward); XLA's own count is printed beside it. MFU is
model FLOPs per second over the device's peak, from a table of dense bf16/fp32 peaks or
--peak_tflops, counted two ways: padded MFU over the padded shapes (the work the device does)
and useful MFU over the real tokens only (non-padding line, query and decoder-target tokens),
with the padding fraction beside them. With `data.device_padding` (on for `base` and `large`;
--device_padding overrides it) the step is fed the packed lines and pads them itself, as in
training; the FLOP and token counts are those of the padded batch either way. Prints one table
row and writes JSON.
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
from memreasoner_jax.data import device_padding
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import losses
from memreasoner_jax.models import presets
from memreasoner_jax import optimizer as optimizer_lib
from memreasoner_jax import sharding as sharding_lib
from memreasoner_jax import train


def define_flags() -> None:
  """Defines the command's flags; only run as a command, so importing this module next to other
  commands (tests) never defines a flag twice."""
  global _PRESET, _TASK, _OPTIONS, _BATCH, _STEPS, _DTYPE, _PEAK, _OUT, _TOKENIZER, _MULTIPLE
  global _PACK, _ATTENTION, _DEVICE_PADDING
  _PRESET = flags.DEFINE_enum("preset", "tiny", presets.PRESETS, "Model preset.")
  _TASK = flags.DEFINE_string("task", "qa1", "Task whose stories fill the batch.")
  _OPTIONS = flags.DEFINE_list("options", [], "configs/babi.py options, e.g. long.")
  _BATCH = flags.DEFINE_integer("batch", 0, "Global batch (0: the config's).")
  _STEPS = flags.DEFINE_integer("steps", 10, "Timed steps after the compiling one.")
  _DTYPE = flags.DEFINE_string("dtype", "", "Compute dtype override (float32, bfloat16).")
  _PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s per device (0: from the table).")
  _OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")
  _TOKENIZER = flags.DEFINE_string("encoder_tokenizer", "", "data.encoder_tokenizer override "
                                   "(e.g. a BERT tokenizer directory for WordPiece lines).")
  _MULTIPLE = flags.DEFINE_integer("token_multiple", None, "data.token_multiple override.")
  _PACK = flags.DEFINE_bool("pack_lines", None, "data.pack_lines override.")
  _ATTENTION = flags.DEFINE_string("attention", "", "model.attention override (xla, cudnn).")
  _DEVICE_PADDING = flags.DEFINE_bool("device_padding", None, "data.device_padding override.")


# Dense peak TFLOP/s per device by device_kind substring: (bfloat16, float32).
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5),
               "TPU v4": (275.0, 275.0 / 4), "TPU v5 lite": (197.0, 197.0 / 4),
               "TPU v5p": (459.0, 459.0 / 4), "TPU v6": (918.0, 918.0 / 4)}


def transformer_flops(layers: int, d: int, ff: int, lengths_N: np.ndarray, prefix: int = 0,
                      vocab: int = 0) -> float:
  """Forward FLOPs of sequences of the given lengths: projections, MLP, attention (+ prefix
  slots), head."""
  n = np.asarray(lengths_N, np.float64)
  per_token = layers * (2 * 4 * d * d + 2 * 2 * d * ff) + 2 * d * vocab
  attention = layers * 2 * 2 * d * n * (n + prefix)
  return float(np.sum(n * per_token + attention))


def sequence_lengths(cfg: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
                     pad_id: int | None) -> dict[str, np.ndarray]:
  """Tokens per sequence of each part of a train step: padded (pad_id None) or real.

  Parts: encoder lines (every slot, or the packed ones) and queries, decoder answer targets
  (answer_BxA[:, 1:]) and autoencoded line targets. The autoencoder decodes min(ae_lines, real lines) random real
  lines per example, once where the memory reads a written line back exactly
  (`losses.reads_back`), else twice (from the latent and from the read); their real length is
  counted as the example's mean real line length.
  """
  context_BxExT, query_BxQ = batch["context_BxExT"], batch["query_BxQ"]
  b, e, t = context_BxExT.shape
  ae_lines = min(cfg.loss.ae_lines, e)
  decodes = 1 if losses.reads_back(models.build(cfg.model), e) else 2
  if pad_id is None:
    full = lambda n, length: np.full(n, length)
    # Packed lines: the encoder reads the S x M listed slots, not every B x E one.
    encoded = batch["line_rows_SxM"].size if "line_rows_SxM" in batch else b * e
    return {"lines": full(encoded, t), "query": full(b, query_BxQ.shape[1]),
            "answer": full(b, batch["answer_BxA"].shape[1] - 1),
            "ae": full(decodes * b * ae_lines, t - 1)}
  line_len_BxE = np.count_nonzero(context_BxExT != pad_id, axis=-1)
  real_lines_B = np.count_nonzero(line_len_BxE, axis=1)
  mean_target_B = np.maximum(line_len_BxE.sum(axis=1) / np.maximum(real_lines_B, 1) - 1, 0)
  return {"lines": line_len_BxE.reshape(-1), "query": np.count_nonzero(query_BxQ != pad_id, 1),
          "answer": np.count_nonzero(batch["answer_BxA"][:, 1:] != pad_id, axis=1),
          "ae": np.repeat(mean_target_B, decodes * np.minimum(real_lines_B, ae_lines))}


def train_step_flops(cfg: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
                     pad_id: int | None = None) -> float:
  """Model FLOPs of one train step on `batch`: padded shapes (pad_id None) or real tokens."""
  m = cfg.model
  lengths = sequence_lengths(cfg, batch, pad_id)
  enc, dec = m.encoder, m.decoder
  num_latents = len(lengths["lines"]) + len(lengths["query"])
  encoder = (transformer_flops(enc.num_layers, enc.d_model, enc.d_ff, lengths["lines"])
             + transformer_flops(enc.num_layers, enc.d_model, enc.d_ff, lengths["query"])
             + 2.0 * num_latents * enc.d_model * m.latent_size)
  prefix = m.hops.num_hops * (2 if m.decoder.condition == "both" else 1)
  decoder = (transformer_flops(dec.num_layers, dec.d_model, dec.d_ff, lengths["answer"], prefix,
                               dec.vocab_size)
             + transformer_flops(dec.num_layers, dec.d_model, dec.d_ff, lengths["ae"], 1,
                                 dec.vocab_size))
  return 3.0 * (encoder + decoder)


def step_tokens(cfg: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
                pad_id: int | None = None) -> float:
  """Tokens one train step processes: padded (pad_id None) or real (non-padding)."""
  return float(sum(np.sum(n) for n in sequence_lengths(cfg, batch, pad_id).values()))


def peak_tflops(device: jax.Device, dtype: str) -> float | None:
  if _PEAK.value:
    return _PEAK.value
  for kind, (bf16, fp32) in PEAK_TFLOPS.items():
    if kind in device.device_kind:
      return bf16 if dtype == "bfloat16" else fp32
  return None


def main(argv):
  del argv
  cfg = babi.get_config(",".join([_TASK.value, _PRESET.value, *_OPTIONS.value]))
  if _BATCH.value:
    cfg.data.global_batch = _BATCH.value
  if _DTYPE.value:
    cfg.model.dtype = _DTYPE.value
  if _ATTENTION.value:
    cfg.model.attention = _ATTENTION.value
  if _TOKENIZER.value:
    cfg.data.encoder_tokenizer = _TOKENIZER.value
  if _MULTIPLE.value is not None:
    cfg.data.token_multiple = _MULTIPLE.value
  if _PACK.value is not None:
    cfg.data.pack_lines = _PACK.value
  if _DEVICE_PADDING.value is not None:
    cfg.data.device_padding = _DEVICE_PADDING.value
  cfg.data.train_examples = max(cfg.data.global_batch, 64)

  mesh = sharding_lib.make_mesh(cfg.mesh, jax.local_devices())
  sharding_lib.check_global_batch(cfg.data.global_batch, mesh, "--batch")
  batcher = input_lib.make_batcher(cfg.data)
  examples = input_lib.train_examples(cfg.data)
  chosen = (examples * cfg.data.global_batch)[:cfg.data.global_batch]
  shards = sharding_lib.local_batch_shards(mesh)
  # One tokenizing for both: the padded batch is what the counts below read, the packed one
  # what the step is fed under data.device_padding.
  layout = batcher.layout(batcher.sizes(chosen, tokenize=cfg.data.device_padding), shards,
                          device_padding=cfg.data.device_padding)
  ragged = batcher.ragged(chosen, layout, shards=shards)
  local = batcher.pad_lines(ragged)
  fed, line_tokens = local, 0
  if cfg.data.device_padding:
    fed, line_tokens = device_padding.split_line_tokens(batcher.pack_lines(ragged))
  model = models.build(cfg.model)
  tx, schedule = optimizer_lib.make_optimizer(cfg.optimizer, cfg.training.num_steps)
  init_fn = lambda: train.init_state(model, tx, jax.random.key(0), local)
  sharding = sharding_lib.state_shardings(jax.eval_shape(init_fn), mesh, cfg.mesh.fsdp_min_size)
  state = jax.jit(init_fn, out_shardings=sharding)()
  batch = sharding_lib.global_batch(fed, mesh)
  step = train.jit_train_step(
      train.make_train_step(model, cfg.loss, tx, schedule, jax.random.key(1)), mesh, sharding)

  start = time.perf_counter()
  compiled = step.lower(state, batch, line_tokens).compile()
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
  pad_id = batcher.encoder_tokenizer.pad_id
  flops, useful_flops = train_step_flops(cfg, local), train_step_flops(cfg, local, pad_id)
  padded_tokens, useful_tokens = step_tokens(cfg, local), step_tokens(cfg, local, pad_id)
  cost = compiled.cost_analysis()
  # The compiled module is one device's program: its count is that device's share of the batch.
  xla_flops = (cost[0] if isinstance(cost, list) else cost or {}).get("flops")
  peak = peak_tflops(device, cfg.model.dtype)
  tokens = train.count_tokens(local, pad_id)
  mfu = lambda f: None if peak is None else f / step_s / (peak * 1e12 * mesh.devices.size)
  result = {
      "preset": _PRESET.value, "task": _TASK.value, "options": _OPTIONS.value,
      "attention": cfg.model.attention, "device": device.device_kind,
      "num_devices": mesh.devices.size, "dtype": cfg.model.dtype,
      "global_batch": cfg.data.global_batch, "batch_shape": {k: list(v.shape) for k, v in local.items()},
      "device_padding": bool(line_tokens),
      "compile_s": compile_s, "step_s": step_s,
      "examples_per_s": cfg.data.global_batch / step_s, "tokens_per_s": tokens / step_s,
      "model_tflops_per_step": flops / 1e12,
      "useful_model_tflops_per_step": useful_flops / 1e12,
      "xla_tflops_per_step": (None if xla_flops is None
                              else float(xla_flops) * mesh.devices.size / 1e12),
      "peak_memory_gib": None if peak_bytes is None else peak_bytes / 2**30,
      "host_max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      "peak_tflops_per_device": peak,
      "padded_mfu": mfu(flops), "useful_mfu": mfu(useful_flops),
      "padded_tokens_per_step": padded_tokens, "useful_tokens_per_step": useful_tokens,
      # Share of the processed tokens that are padding, and padded tokens per real one.
      "padding_fraction": 1.0 - useful_tokens / padded_tokens,
      "padded_tokens_per_useful_token": padded_tokens / useful_tokens,
      "loss": float(metrics["loss"]),
  }
  print("| preset | device | batch | compile s | step ms | examples/s | tokens/s | peak GiB | "
        "padding | padded MFU | useful MFU |")
  mem = result["peak_memory_gib"] if peak_bytes is not None else result["host_max_rss_gib"]
  pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
  print(f"| {_PRESET.value} | {device.device_kind} x{mesh.devices.size} | "
        f"{cfg.data.global_batch} | {compile_s:.1f} | {1000 * step_s:.1f} | "
        f"{result['examples_per_s']:.1f} | {result['tokens_per_s']:.0f} | {mem:.2f} | "
        f"{pct(result['padding_fraction'])} | {pct(result['padded_mfu'])} | "
        f"{pct(result['useful_mfu'])} |")
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
