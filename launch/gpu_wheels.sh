#!/usr/bin/env bash
# Downloads into .whl/ the wheels a GPU host without a package index needs to run
# launch/gpu_benchmark.sh. Run from the repository root on a machine that reaches PyPI:
#
#   launch/gpu_wheels.sh            # then copy the checkout, .whl/ included, to the GPU host
#
# The GPU image is assumed to hold Python 3.12 with jax (CUDA), flax, optax, orbax-checkpoint,
# chex, absl-py, numpy, tokenizers, pyyaml and the rest of setup.py's list except
# tensorflow-datasets, array-record and ml-collections. The two benchmarks
# (tools/benchmark_train.py, tools/benchmark_context.py) import none of TFDS, ArrayRecord, Grain
# or tensorboardX, so the only missing package is ml-collections (pure Python; it requires
# absl-py and PyYAML, both in the image). PYTHON (default python3) is the pip that downloads.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEST=".whl"
# name==version: one version of each, pinned so every GPU check runs the same code.
WHEELS=("ml-collections==1.1.0")

mkdir -p "$DEST"
for wheel in "${WHEELS[@]}"; do
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d "$DEST" "$wheel"
done

echo "Wheels in $DEST (and what each requires):"
for file in "$DEST"/*.whl; do
  printf '  %-60s %8s bytes\n' "$(basename "$file")" "$(stat -c %s "$file")"
  # Requires-Dist of each wheel: anything not in the GPU image must be added to WHEELS.
  "$PYTHON" - "$file" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
  meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
  for line in z.read(meta).decode().splitlines():
    if line.startswith("Requires-Dist:") and "extra ==" not in line:
      print("      " + line)
EOF
done
du -ch "$DEST"/*.whl | tail -1
