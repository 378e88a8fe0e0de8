#!/usr/bin/env bash
# Cloud TPU VM pod: copies this checkout's committed files to every worker and starts the same
# training command on all of them at once; jax.distributed finds the other workers itself.
#
#   TPU_NAME=my-v5p-32 ZONE=us-east5-a launch/tpu_pod.sh --config=configs/babi.py:qa1,large \
#       --workdir=/mnt/shared/qa1_large [--config.k=v ...]
#
# Every argument goes to memreasoner_jax.main (through launch/local.sh on each worker, which
# installs the project with jax[tpu] into ~/$REMOTE_DIR/.venv on first use). Needs gcloud,
# authenticated, with ssh access to the TPU VM; the workdir must be storage every worker sees
# (a Filestore or gcsfuse mount), since every worker writes its part of each checkpoint.
#
# Variables:
#   TPU_NAME, ZONE   the TPU VM and its zone (required)
#   PROJECT          the Google Cloud project (default: gcloud's configured one)
#   REMOTE_DIR       the checkout on each worker, relative to its home (default memreasoner_jax)
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remote_dir="${REMOTE_DIR:-memreasoner_jax}"
tpu_vm=(gcloud compute tpus tpu-vm)
where=(--zone="$ZONE" ${PROJECT:+--project="$PROJECT"})

archive="$(mktemp -d)/memreasoner_jax.tar.gz"
git -C "$REPO" archive --format=tar.gz -o "$archive" HEAD
"${tpu_vm[@]}" scp "$archive" "$TPU_NAME:/tmp/memreasoner_jax.tar.gz" --worker=all "${where[@]}"

printf -v main_args '%q ' "$@"
command="mkdir -p ~/$remote_dir && tar -xzf /tmp/memreasoner_jax.tar.gz -C ~/$remote_dir"
command+=" && cd ~/$remote_dir && MEMREASONER_EXTRA=tpu bash launch/local.sh $main_args"
"${tpu_vm[@]}" ssh "$TPU_NAME" --worker=all "${where[@]}" --command="$command"
