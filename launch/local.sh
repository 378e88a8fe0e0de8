#!/usr/bin/env bash
# One host, all its devices: trains with memreasoner_jax.main, every argument passed through.
#
#   launch/local.sh --config=configs/babi.py:qa1,tiny --workdir=/tmp/qa1_tiny [--config.k=v ...]
#
# --processes=N (before the main flags) starts N processes on this host that join one
# multi-process run over 127.0.0.1 (--port=P, default a free port): the multi-host code path on
# one machine. Each process sees every local device, so this is for CPU runs (set XLA_FLAGS
# --xla_force_host_platform_device_count for several CPU devices per process). Output lines of
# process I > 0 start with [I]; the first process to fail stops the others.
# A missing Python environment is created: see launch/env.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
processes=1
port=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes=*) processes="${1#*=}"; shift ;;
    --port=*) port="${1#*=}"; shift ;;
    *) break ;;
  esac
done

source "$REPO/launch/env.sh"
memreasoner_env "$REPO"
cd "$REPO"

if [[ "$processes" -eq 1 ]]; then
  exec python -m memreasoner_jax.main "$@"
fi

if [[ -z "$port" ]]; then
  port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
pids=()
stop_all() { kill "${pids[@]}" 2>/dev/null || true; }
trap stop_all EXIT INT TERM
for ((i = 0; i < processes; i++)); do
  flags=(--coordinator_address="127.0.0.1:$port" --num_processes="$processes" --process_id="$i")
  if [[ "$i" -eq 0 ]]; then
    python -m memreasoner_jax.main "${flags[@]}" "$@" &
  else
    python -m memreasoner_jax.main "${flags[@]}" "$@" > >(sed -u "s/^/[$i] /") 2>&1 &
  fi
  pids+=("$!")
done

# Wait for all; the first failure ends the rest (they would wait for it in a collective).
status=0
remaining=("${pids[@]}")
while [[ ${#remaining[@]} -gt 0 ]]; do
  still=()
  for pid in "${remaining[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$pid")
    elif ! wait "$pid"; then
      status=1
    fi
  done
  if [[ "$status" -ne 0 ]]; then
    echo "A process of the local multi-process run failed; stopping the others." >&2
    break
  fi
  remaining=("${still[@]+"${still[@]}"}")
  if [[ ${#remaining[@]} -gt 0 ]]; then
    sleep 1
  fi
done
exit "$status"
