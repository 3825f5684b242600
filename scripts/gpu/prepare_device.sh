#!/usr/bin/env bash
# On a GPU machine with no package index: unpack what scripts/gpu/pack_for_device.sh packed into
# .device/ so that `pytest -m gpu` and bench_triton's CUDA rows run there.
#   - the carried wheels go to $DEVICE_SITE (default /tmp/site; export PYTHONPATH=$DEVICE_SITE:.)
#     for the test process, which uses the image's python3 (numpy 2, torch, onnxruntime);
#   - .triton-venv is made with that python: numpy 1.26 inside it, the image's packages and the
#     carried wheels after it (a .pth), the Triton server unpacked into it, then
#     scripts/triton/install.sh finishes it with TRITON_PREINSTALLED=1 (backends, checks, layout).
# --wheels-only stops after the first step: enough for scripts/gpu/bench_featurize_infer.py and
# the `gpu` tests that need no Triton (seconds instead of building .triton-venv).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DEV="$REPO/.device"
DEVICE_SITE="${DEVICE_SITE:-/tmp/site}"
PY="${DEVICE_PYTHON:-python3}"
mkdir -p "$DEVICE_SITE"
WHEELS=()
for wheel in "$DEV"/wheels/*.whl; do
  [[ "$(basename "$wheel")" == numpy-* ]] || WHEELS+=("$wheel")  # numpy 1.26: model env only
done
"$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$DEVICE_SITE" \
  "${WHEELS[@]}"
if [[ "${1:-}" == "--wheels-only" ]]; then
  exit 0
fi
IMAGE_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VENV="$REPO/.triton-venv"
"$PY" -m venv "$VENV"
VSITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile "$DEV"/wheels/numpy-*.whl
printf '%s\n' "$REPO" "$DEVICE_SITE" "$IMAGE_SITE" > "$VSITE/secureai_device.pth"
tar -C "$VSITE" -xJf "$DEV/triton.tar.xz"
TRITON_PYTHON="$VENV/bin/python" TRITON_PREINSTALLED=1 TRITON_FORCE=1 \
  bash "$REPO/scripts/triton/install.sh"
