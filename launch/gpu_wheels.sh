#!/usr/bin/env bash
# Downloads into .whl/ the wheels a GPU host without a package index needs to run
# launch/gpu_benchmark.sh and training runs (memreasoner_jax.main, tools/reproduce). Run from the
# repository root on a machine that reaches PyPI:
#
#   launch/gpu_wheels.sh            # then copy the checkout, .whl/ included, to the GPU host
#
# The GPU image is assumed to hold Python 3.12 with jax (CUDA), flax, optax, orbax-checkpoint,
# chex, absl-py, numpy, tokenizers, pyyaml, cloudpickle, etils and protobuf (checked on an H200
# image with jax 0.11.2). The benchmarks need only ml-collections; training also reads its
# batches through Grain (which needs array-record, dm-tree, more-itertools and portpicker) and
# writes TensorBoard files through tensorboardX. TensorFlow Datasets is imported only by `tfds:`
# sources and the TFDS builder, so it is not in the list. PYTHON (default python3) is the pip
# that downloads.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEST=".whl"
# name==version: one version of each, pinned so every GPU check runs the same code.
WHEELS=("ml-collections==1.1.0" "grain==0.2.18" "array-record==0.8.6" "dm-tree==0.1.10"
        "more-itertools==11.2.1" "portpicker==1.6.0" "tensorboardX==2.6.5")

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
