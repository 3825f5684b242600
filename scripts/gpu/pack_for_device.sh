#!/usr/bin/env bash
# Pack what a GPU machine with no package index needs to run the `gpu` tests and bench_triton's
# CUDA shared-memory rows: wheels for its Python (3.12) and the Triton server from our own
# .triton-venv (the nvidia-pytriton wheel's tritonserver links libcudart 12.6, so it serves CUDA
# shared memory on a GPU). Output: <repo>/.device/ (git-ignored), ~58 MB, carried to the machine
# and unpacked there by scripts/gpu/prepare_device.sh.
#
# Why not the whole wheel set: the device image already has torch, onnxruntime, pandas, pyarrow,
# grpcio, protobuf, cuda-bindings and pytest; only what it lacks travels (a carry limit applies).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="$REPO/.device"
PYVER="${DEVICE_PYTHON_VERSION:-3.12}"
SITE="$REPO/.triton-venv/lib/python3.11/site-packages"
[[ -d "$SITE/pytriton" ]] || { echo "pack: run scripts/triton/install.sh first" >&2; exit 1; }
mkdir -p "$OUT/wheels"
# numpy 1.26 is for the Triton model environment (its python backend needs numpy<2).
WHEELS=(numpy==1.26.4 tritonclient==2.73.0 pydantic==2.14.3 pydantic_core==2.50.4 orjson==3.11.4
  annotated-types==0.8.0 typing-inspection==0.4.5 geventhttpclient==2.6.1 gevent==26.9.0
  greenlet==3.3.2 python-rapidjson==1.25 zope.interface==8.7 zope.event==6.2 brotli==1.2.1)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT/wheels" "${WHEELS[@]}"
# The server, its bundled libraries and the stub for the device's Python (the 3.13 libpython
# the wheel bundles for its 3.13 stub is left out).
MINOR="${PYVER}"
tar -C "$SITE" --exclude='libpython3-*.13.so*' -cf - pytriton/tritonserver/bin pytriton/tritonserver/backends \
  pytriton/tritonserver/caches "pytriton/tritonserver/python_backend_stubs/$MINOR" \
  nvidia_pytriton-0.7.0.dist-info nvidia_pytriton.libs | xz -T2 -6 > "$OUT/triton.tar.xz"
du -sh "$OUT"
