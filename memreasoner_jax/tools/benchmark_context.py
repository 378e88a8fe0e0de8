"""Long-context speed: seconds per question for MemReasoner and the full-attention baseline.

  python -m memreasoner_jax.tools.benchmark_context --preset=tiny --lengths=1k,4k,16k,64k,128k \
      --out=context.json

For each length one held-out haystack (tasks.registry, builtin distractors) is batched once and
answered greedily (`generate`, max_new_tokens answer tokens, batch 1) by both models of the same
preset with random weights: MemReasoner encodes every line, writes and reads its memory and
decodes; the baseline reads the whole context with causal full attention and decodes. Lengths are
counted in the models' own decoder tokens (byte tokens for tiny and small), so at "128k" the
baseline reads about 128,000 positions. Compilation is timed apart; the figure is the median of
the timed runs. The baseline is skipped where its attention blocks cannot fit --memory_budget_gib
even at the smallest block, or where its run would exceed --baseline_max_seconds (predicted from
the previous length, quadratically); its time there is extrapolated from the last two measured
lengths. Prints a table with the ratios and the growth exponents, and writes JSON.
"""

import functools
import json
import math
import os
import statistics
import time
from typing import Any, Callable

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import lines as lines_lib
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import baseline
from memreasoner_jax.models import presets
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import registry

_PRESET = flags.DEFINE_enum("preset", "tiny", presets.PRESETS, "Model preset of both models.")
_TASK = flags.DEFINE_string("task", "qa1", "Task of the haystacks.")
_LENGTHS = flags.DEFINE_list("lengths", "1k,4k,16k,64k,128k", "Haystack lengths (decoder tokens).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per model and length (median taken).")
_MAX_POINT_S = flags.DEFINE_float("max_point_seconds", 120.0, "Stop repeating a measurement "
                                  "once its timed runs took this long (at least one run).")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 16, "Answer tokens generated per question.")
_MEMORY_MODE = flags.DEFINE_enum("memory_mode", "chunked", ["single", "chunked"],
                                 "MemReasoner memory (chunked is the long-context setting).")
_CHUNK = flags.DEFINE_integer("chunk", 512, "Baseline query positions per attention block "
                              "(halved until the block fits --memory_budget_gib).")
_MIN_CHUNK = flags.DEFINE_integer("min_chunk", 64, "Smallest baseline block tried.")
_BUDGET_GIB = flags.DEFINE_float("memory_budget_gib", 8.0, "Memory the baseline may use.")
_BASELINE_MAX_S = flags.DEFINE_float("baseline_max_seconds", 1800.0, "Skip a baseline length "
                                     "whose predicted run time exceeds this.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Compute dtype of both models.")
_SEED = flags.DEFINE_integer("seed", 1, "Haystack generation seed (held-out split).")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def make_config(preset: str, task: str, dtype: str, memory_mode: str) -> ml_collections.ConfigDict:
  cfg = babi.get_config(f"{task},{preset}").copy_and_resolve_references()
  cfg.model.dtype = dtype
  cfg.model.memory.mode = memory_mode
  return cfg


def haystack(cfg: ml_collections.ConfigDict, length: str, seed: int) -> Example:
  """One held-out example at `length` decoder tokens, lines split to fit `line_tokens`."""
  tok = input_lib.make_batcher(cfg.data).decoder_tokenizer
  count = lambda text: len(tok.encode(text))
  example = registry.generate(cfg.data.tasks, "test", 1, seed, length=length, count=count)[0]
  return lines_lib.split_long_lines(example, cfg.data.line_tokens - 2)


def sequence_tokens(cfg: ml_collections.ConfigDict, example: Example) -> int:
  """The baseline's sequence length: BOS + context + prompt + answer + EOS."""
  tok = input_lib.make_batcher(cfg.data).decoder_tokenizer
  texts = batching.split_at_space(tok, batching.context_prompt(example), example.answer)
  return sum(len(tok.encode(text)) for text in texts) + 2


def make_batch(cfg: ml_collections.ConfigDict, example: Example) -> dict[str, np.ndarray]:
  """A batch of one with exactly the example's lines and sequence (no padding to time)."""
  data = cfg.data.copy_and_resolve_references()
  data.sequence_tokens = sequence_tokens(cfg, example)
  batcher = input_lib.make_batcher(data)
  layout = batcher.layout(batcher.sizes([example]), num_lines=len(example.context))
  return batcher([example], layout)


def baseline_bytes(model_cfg: ml_collections.ConfigDict, length: int, chunk: int) -> int:
  """Peak bytes of a baseline read: a block's attention scores (logits, mask, exponentials,
  probabilities), the KV cache and the parameters."""
  dec = model_cfg.decoder
  block = 4 * dec.num_heads * min(chunk, length) * length * 4
  cache = 2 * dec.num_layers * length * dec.d_model * 4
  params = (dec.vocab_size + dec.max_len) * dec.d_model * 4 + dec.num_layers * (
      4 * dec.d_model ** 2 + 2 * dec.d_model * dec.d_ff) * 4
  return block + cache + params


def fit_chunk(model_cfg: ml_collections.ConfigDict, length: int) -> int | None:
  """The largest block (halving from --chunk) that fits the memory budget; None if none does."""
  chunk = _CHUNK.value
  while chunk >= _MIN_CHUNK.value:
    if baseline_bytes(model_cfg, length, chunk) <= _BUDGET_GIB.value * 2 ** 30:
      return chunk
    chunk //= 2
  return None


def measure(generate: Callable, params: Any, batch: dict[str, np.ndarray]) -> dict[str, Any]:
  """Compile time, then timed runs (median) of one jitted generate."""
  start = time.perf_counter()
  compiled = jax.jit(generate).lower(params, batch).compile()
  compile_s = time.perf_counter() - start
  times = []
  while len(times) < _REPEATS.value and (not times or sum(times) < _MAX_POINT_S.value):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, batch))
    times.append(time.perf_counter() - start)
  return {"compile_s": compile_s, "times_s": times, "median_s": statistics.median(times)}


def exponent(lengths: list[int], seconds: list[float]) -> float | None:
  """Slope of log(time) against log(length): 1 is linear growth, 2 quadratic."""
  if len(lengths) < 2:
    return None
  return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def extrapolate(points: list[tuple[int, float]], length: int) -> float | None:
  """Time at `length` from the growth between the last two measured lengths (a lower estimate
  while that local exponent is still rising toward 2)."""
  if len(points) < 2:
    return None
  (l0, t0), (l1, t1) = points[-2:]
  return t1 * (length / l1) ** (math.log(t1 / t0) / math.log(l1 / l0))


def run(preset: str, task: str, lengths: list[str]) -> dict[str, Any]:
  """Both models at every length; the results as one JSON-able dict."""
  load_before = os.getloadavg()[0]
  cfg = make_config(preset, task, _DTYPE.value, _MEMORY_MODE.value)
  examples = {name: haystack(cfg, name, _SEED.value) for name in lengths}
  batches = {name: make_batch(cfg, ex) for name, ex in examples.items()}
  new = _MAX_NEW.value
  longest = max(b["sequence_BxL"].shape[1] for b in batches.values())
  base_cfg = cfg.model.copy_and_resolve_references()
  base_cfg.kind = "baseline"
  base_cfg.decoder.max_len = max(base_cfg.decoder.max_len, longest + new)
  mem_model = models.build(cfg.model)
  first = batches[lengths[0]]
  mem_params = mem_model.init(jax.random.key(0), first)
  base_params = models.build(base_cfg).init(jax.random.key(0), first)
  mem_generate = functools.partial(mem_model.generate, max_new_tokens=new)

  rows, measured = [], []
  for name in lengths:
    batch = batches[name]
    tokens = int(batch["sequence_BxL"].shape[1])
    row = {"length": name, "tokens": tokens, "lines": len(examples[name].context)}
    row["memreasoner"] = measure(mem_generate, mem_params, batch)
    chunk = fit_chunk(base_cfg, tokens)
    predicted = None if not measured else measured[-1][1] * (tokens / measured[-1][0]) ** 2
    if chunk is None:
      row["baseline_skipped"] = (f"attention blocks exceed --memory_budget_gib="
                                 f"{_BUDGET_GIB.value} even at {_MIN_CHUNK.value} positions")
    elif predicted is not None and predicted > _BASELINE_MAX_S.value:
      row["baseline_skipped"] = (f"predicted {predicted:.0f}s (quadratic from the previous "
                                 f"length) exceeds --baseline_max_seconds={_BASELINE_MAX_S.value:.0f}")
    else:
      model = baseline.Baseline(base_cfg, chunk=chunk)
      row["baseline"] = {**measure(functools.partial(model.generate, max_new_tokens=new),
                                   base_params, batch), "chunk": chunk}
      measured.append((tokens, row["baseline"]["median_s"]))
    if "baseline" in row:
      row["ratio"] = row["baseline"]["median_s"] / row["memreasoner"]["median_s"]
    else:
      estimate = extrapolate(measured, tokens)
      row["baseline_extrapolated_s"] = estimate
      row["ratio_extrapolated"] = (None if estimate is None
                                   else estimate / row["memreasoner"]["median_s"])
    rows.append(row)
    print_row(row, header=len(rows) == 1)

  mem_points = [(r["tokens"], r["memreasoner"]["median_s"]) for r in rows]
  growth = {"memreasoner": _growth(mem_points), "baseline": _growth(measured)}
  print(f"growth exponent (time ~ tokens^k): MemReasoner {_fmt(growth['memreasoner'])}, "
        f"baseline {_fmt(growth['baseline'])}")
  device = jax.devices()[0]
  return {"preset": preset, "task": task, "device": device.device_kind,
          "platform": device.platform, "dtype": _DTYPE.value, "memory_mode": _MEMORY_MODE.value,
          "max_new_tokens": new, "repeats": _REPEATS.value, "rows": rows, "growth": growth,
          # Other work on the machine slows both models (1-minute load average, start and end).
          "load_average": [load_before, os.getloadavg()[0]], "cpu_count": os.cpu_count()}


def _growth(points: list[tuple[int, float]]) -> dict[str, float | None]:
  """Fitted exponent over all lengths and between the last two (asymptotic trend)."""
  lengths, seconds = [p[0] for p in points], [p[1] for p in points]
  return {"all": exponent(lengths, seconds), "last_two": exponent(lengths[-2:], seconds[-2:])}


def _fmt(growth: dict[str, float | None]) -> str:
  show = lambda k: "n/a" if k is None else f"{k:.2f}"
  return f"{show(growth['all'])} overall, {show(growth['last_two'])} between the last two"


def print_row(row: dict[str, Any], header: bool) -> None:
  if header:
    print("| length | tokens | lines | MemReasoner s/q | compile s | baseline s/q | compile s | "
          "baseline / MemReasoner |")
    print("|---|---|---|---|---|---|---|---|")
  mem = row["memreasoner"]
  if "baseline" in row:
    base = row["baseline"]
    base_cols = f"{base['median_s']:.4g} | {base['compile_s']:.1f} | {row['ratio']:.1f}x"
  else:
    est = row["baseline_extrapolated_s"]
    ratio = row["ratio_extrapolated"]
    base_cols = ("skipped | - | -" if est is None else
                 f"~{est:.4g} (extrapolated) | - | ~{ratio:.0f}x (extrapolated)")
  print(f"| {row['length']} | {row['tokens']:,} | {row['lines']:,} | {mem['median_s']:.4g} | "
        f"{mem['compile_s']:.1f} | {base_cols} |", flush=True)
  if "baseline_skipped" in row:
    print(f"  baseline skipped at {row['length']}: {row['baseline_skipped']}", flush=True)


def main(argv):
  del argv
  result = run(_PRESET.value, _TASK.value, _LENGTHS.value)
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
