#!/usr/bin/env bash
# The GPU check: the train-step benchmark (tiny, small, base in bfloat16) and the long-context
# benchmark (1k..128k), each under its own timeout, all of it within GPU_BENCHMARK_BUDGET_S
# (default 450 s). Run from the repository root on a host with one GPU and no package index,
# with .whl/ from launch/gpu_wheels.sh copied along:
#
#   launch/gpu_benchmark.sh [RESULTS_DIR]     # default $OUT if set, else ./gpu_results
#
# Writes into RESULTS_DIR each benchmark's JSON and log, device.json, nvidia_smi.txt and
# gpu_results.json: the device kind and, per benchmark, its status (ok, failed, timeout or
# skipped), every attempt (batch, exit status, seconds, log tail on failure) and its result.
# A train benchmark that fails (other than by its timeout, e.g. out of memory) is retried once
# with half the batch; a failed benchmark does not stop the others. Exits 1 if any did not
# finish, after writing gpu_results.json.
#
# Environment: PYTHON (default python3); GPU_BATCH_TINY, GPU_BATCH_SMALL, GPU_BATCH_BASE (global
# batches, default each preset's configured one); GPU_TRAIN_DTYPE (bfloat16);
# GPU_CONTEXT_PRESET (tiny), GPU_CONTEXT_DTYPE (float32, as the CPU figures in BUILD_NOTES.md);
# GPU_BENCHMARK_WHEELS (.whl; no wheels there: nothing is installed) and GPU_BENCHMARK_SITE
# (/tmp/site, where they are installed); GPU_BENCHMARK_SMOKE=1 shrinks every benchmark to
# seconds (tiny only, batch 2, 1 step, float32; 1k context, 1 run) to check the script on CPU.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="${1:-${OUT:-./gpu_results}}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
SMOKE="${GPU_BENCHMARK_SMOKE:-0}"
WHEELS="${GPU_BENCHMARK_WHEELS:-.whl}"
SITE="${GPU_BENCHMARK_SITE:-/tmp/site}"
BUDGET="${GPU_BENCHMARK_BUDGET_S:-450}"
ATTEMPTS="$RESULTS/attempts.tsv"
: > "$ATTEMPTS"
start_time="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# 1. The wheels the image lacks (launch/gpu_wheels.sh), installed apart from the image's packages.
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  echo "Installing $(ls "$WHEELS"/*.whl | xargs -n1 basename | tr '\n' ' ')into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl || echo "Installing the wheels failed (exit $?)"
  export PYTHONPATH="$SITE:$PWD"
else
  echo "No wheels in $WHEELS: using the installed packages"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. The device, and each preset's configured global batch.
if command -v nvidia-smi > /dev/null; then
  nvidia-smi 2>&1 | tee "$RESULTS/nvidia_smi.txt"
else
  echo "nvidia-smi: not found" | tee "$RESULTS/nvidia_smi.txt"
fi
probe="$(timeout 120 "$PYTHON" - "$RESULTS/device.json" <<'EOF'
import json, sys
import jax
devices = jax.devices()
print("jax", jax.__version__, devices)
from memreasoner_jax.configs import babi
batches = {p: babi.get_config(f"qa1,{p}").data.global_batch for p in ("tiny", "small", "base")}
with open(sys.argv[1], "w", encoding="utf-8") as f:
  json.dump({"device_kind": devices[0].device_kind, "platform": devices[0].platform,
             "num_devices": len(devices), "devices": [str(d) for d in devices],
             "jax_version": jax.__version__, "python": sys.version.split()[0],
             "configured_batches": batches}, f, indent=2)
print("batches", batches["tiny"], batches["small"], batches["base"])
EOF
)" || echo "device probe failed (exit $?)"
echo "$probe"
batches="$(grep '^batches ' <<< "$probe" || echo "batches 32 64 256")"  # fallback: babi.py's
read -r _ cfg_tiny cfg_small cfg_base <<< "$batches"

# 3. The benchmarks. remaining RESERVE: seconds left of the budget after keeping RESERVE.
remaining() { echo $(( BUDGET - SECONDS - $1 )); }

# attempt NAME BATCH TIMEOUT COMMAND...: runs once, logging to NAME[.retry].log, writing NAME.json.
attempt() {
  local name="$1" batch="$2" limit="$3"; shift 3
  local log="$name.log"
  [[ -f "$RESULTS/$log" ]] && grep -q "^$name	" "$ATTEMPTS" && log="$name.retry.log"
  rm -f "$RESULTS/$name.json"
  echo "=== $name (batch $batch, timeout ${limit}s): $*"
  local began=$SECONDS
  timeout --kill-after=10 "$limit" "$@" --out="$RESULTS/$name.json" 2>&1 | tee "$RESULTS/$log"
  local rc="${PIPESTATUS[0]}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$batch" "$rc" "$(( SECONDS - began ))" "$log" "$*" \
      >> "$ATTEMPTS"
  return "$rc"
}

# train NAME PRESET BATCH STEPS TIMEOUT RESERVE: the train benchmark, once more at half the batch
# if it fails before its timeout and the budget (keeping RESERVE s for what follows) allows.
train() {
  local name="$1" preset="$2" batch="$3" steps="$4" limit="$5" reserve="$6" left rc
  for try in 1 2; do
    left="$(remaining "$reserve")"
    (( left < limit )) && limit="$left"
    if (( limit < 20 )); then
      printf '%s\t%s\tskipped\t0\t\tout of time (budget %ss)\n' "$name" "$batch" "$BUDGET" \
          >> "$ATTEMPTS"
      return
    fi
    attempt "$name" "$batch" "$limit" "$PYTHON" -m memreasoner_jax.tools.benchmark_train \
        --preset="$preset" --batch="$batch" --steps="$steps" --dtype="$TRAIN_DTYPE"
    rc=$?
    if (( rc == 0 || rc == 124 || rc == 137 || batch < 2 )); then
      return
    fi
    batch=$(( batch / 2 ))
    echo "$name failed (exit $rc): retrying with batch $batch"
  done
}

context() {
  local name="$1" limit="$2"; shift 2
  local left; left="$(remaining 0)"
  (( left < limit )) && limit="$left"
  if (( limit < 20 )); then
    printf '%s\t\tskipped\t0\t\tout of time (budget %ss)\n' "$name" "$BUDGET" >> "$ATTEMPTS"
    return
  fi
  attempt "$name" 1 "$limit" "$PYTHON" -m memreasoner_jax.tools.benchmark_context "$@"
}

CONTEXT_PRESET="${GPU_CONTEXT_PRESET:-tiny}"
CONTEXT_DTYPE="${GPU_CONTEXT_DTYPE:-float32}"
if [[ "$SMOKE" == 1 ]]; then
  # float32: XLA's CPU backend compiles the bfloat16 step more slowly.
  TRAIN_DTYPE="${GPU_TRAIN_DTYPE:-float32}"
  train train_tiny tiny "${GPU_BATCH_TINY:-2}" 1 300 0
  context "context_$CONTEXT_PRESET" 300 --preset="$CONTEXT_PRESET" --dtype="$CONTEXT_DTYPE" \
      --lengths=1k --repeats=1 --max_new_tokens=2
else
  TRAIN_DTYPE="${GPU_TRAIN_DTYPE:-bfloat16}"
  # Planned seconds: 60 + 75 + 150 + 150 (each includes imports, compilation and data).
  train train_tiny tiny "${GPU_BATCH_TINY:-$cfg_tiny}" 20 60 375
  train train_small small "${GPU_BATCH_SMALL:-$cfg_small}" 20 75 300
  train train_base base "${GPU_BATCH_BASE:-$cfg_base}" 10 150 150
  # The baseline stops repeating after 20 s a length and skips (extrapolated) past 60 s.
  context "context_$CONTEXT_PRESET" 150 --preset="$CONTEXT_PRESET" --dtype="$CONTEXT_DTYPE" \
      --lengths=1k,4k,16k,64k,128k --memory_budget_gib=60 --baseline_max_seconds=60 \
      --max_point_seconds=20
fi

# 4. Everything in one gpu_results.json.
"$PYTHON" - "$RESULTS" "$start_time" "$SECONDS" "$BUDGET" "$SMOKE" <<'EOF'
import json, os, sys

results, start_time, elapsed, budget, smoke = sys.argv[1:]
path = lambda name: os.path.join(results, name)

def load(name):
  try:
    with open(path(name), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None

def tail(name, chars=2000):
  try:
    with open(path(name), encoding="utf-8", errors="replace") as f:
      return f.read()[-chars:]
  except OSError:
    return ""

device = load("device.json") or {}
merged = {"device_kind": device.get("device_kind"), "device": device, "smoke": smoke == "1",
          "started": start_time, "elapsed_s": int(elapsed), "budget_s": int(budget),
          "nvidia_smi": tail("nvidia_smi.txt", 4000), "benchmarks": {}}
with open(path("attempts.tsv"), encoding="utf-8") as f:
  rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
for name, batch, rc, seconds, log, command in rows:
  bench = merged["benchmarks"].setdefault(name, {"attempts": []})
  run = {"batch": int(batch) if batch else None, "exit": None if rc == "skipped" else int(rc),
         "seconds": int(seconds), "log": log or None, "command": command}
  if rc not in ("0", "skipped"):
    run["log_tail"] = tail(log)
  bench["attempts"].append(run)
for name, bench in merged["benchmarks"].items():
  last = bench["attempts"][-1]
  bench["result"] = load(f"{name}.json") if last["exit"] == 0 else None
  bench["status"] = ("skipped" if last["exit"] is None else "timeout" if last["exit"] in (124, 137)
                     else "ok" if bench["result"] is not None else "failed")
  if merged["device_kind"] is None and bench["result"]:
    merged["device_kind"] = bench["result"].get("device")
if merged["device_kind"] is None:
  merged["device_kind"] = "unknown (the device probe and every benchmark failed)"
with open(path("gpu_results.json"), "w", encoding="utf-8") as f:
  json.dump(merged, f, indent=2)

print(f"\nGPU check on {merged['device_kind']} ({merged['elapsed_s']} s): "
      f"{path('gpu_results.json')}")
for name, bench in merged["benchmarks"].items():
  r, line = bench["result"] or {}, f"  {name}: {bench['status']}"
  if name.startswith("train") and r:
    mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
    mem = r.get("peak_memory_gib")
    line += (f", batch {r['global_batch']}, step {1000 * r['step_s']:.1f} ms, "
             f"{r['examples_per_s']:.0f} examples/s, compile {r['compile_s']:.1f} s, MFU {mfu}"
             + ("" if mem is None else f", peak {mem:.1f} GiB"))
  elif r:
    for row in r["rows"]:
      ratio = row.get("ratio", row.get("ratio_extrapolated"))
      line += (f"\n    {row['length']}: MemReasoner {row['memreasoner']['median_s']:.4g} s/q, "
               f"baseline / MemReasoner {'n/a' if ratio is None else f'{ratio:.1f}x'}"
               + ("" if "ratio" in row else " (extrapolated)"))
  print(line)
sys.exit(0 if all(b["status"] == "ok" for b in merged["benchmarks"].values()) else 1)
EOF
