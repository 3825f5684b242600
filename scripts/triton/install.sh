#!/usr/bin/env bash
# Install a CPU Triton Inference Server for local runs and `make test`, with no manual steps.
#
# Why this way: there is no Docker and no GPU here, but the PyPI wheel nvidia-pytriton==0.7.0
# ships a complete tritonserver binary (Triton 2.51.0 / r24.10) with the python backend. Its
# model code needs numpy<2, while the project uses numpy 2, so the server gets its own virtualenv
# (the way production gets its own NGC container). See /work/shared/notes/services.md.
#
# What it does (idempotent; a second run with unchanged inputs returns at once):
#   1. creates the venv ($TRITON_VENV, default <repo>/.triton-venv) with $TRITON_PYTHON
#      (default python3.11, which must be built with a shared libpython: the stub embeds it);
#   2. installs the pinned model environment (constraints.txt next to this script):
#      nvidia-pytriton, numpy 1.26.x, onnxruntime, tritonclient[grpc,http], protobuf;
#   3. if <repo>/pyproject.toml exists, installs the project with `pip install --no-deps -e .`
#      so python-backend models can import morpheus_ext. --no-deps keeps the project's own
#      numpy 2 pin out of this environment; the stamp includes pyproject.toml's hash, so the
#      step runs as soon as the file appears or changes;
#   4. builds <venv>/triton_backends/python/ (libtriton_python.so, triton_python_backend_utils.py
#      and the stub for this Python minor: the wheel's own layout does not put them together);
#   5. checks that no CUDA packages came in, that the stub's libraries resolve, and writes
#      <venv>/triton_layout.json (paths used by scripts/triton/triton_harness.py) and the stamp.
#
# Env: TRITON_VENV (venv path), TRITON_PYTHON (interpreter), TRITON_FORCE=1 (ignore the stamp),
# TRITON_PREINSTALLED=1 (steps 2-3 and the CUDA check are skipped: the venv's packages were put
# there by other means, e.g. scripts/gpu/prepare_device.sh on a GPU machine with no index).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${TRITON_VENV:-$REPO/.triton-venv}"
PYTHON="${TRITON_PYTHON:-python3.11}"
CONSTRAINTS="$HERE/constraints.txt"
STAMP="$VENV/.secureai-triton-installed"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Direct requirements; constraints.txt pins them and every transitive package again.
# tritonclient gets [grpc,http], not [all]: [all] pulls cuda-python (CUDA packages).
REQUIREMENTS=(
  "nvidia-pytriton==0.7.0"
  "numpy==1.26.4"
  "onnxruntime==1.23.2"
  "tritonclient[grpc,http]==2.73.0"
  "protobuf==6.33.6"
)

# The stamp records everything that changes the result; equal stamp = nothing to do.
stamp_of() {
  {
    cat "$HERE/install.sh" "$CONSTRAINTS"
    if [[ -f "$REPO/pyproject.toml" ]]; then cat "$REPO/pyproject.toml"; else echo "no-pyproject"; fi
    "$PYTHON" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

WANT="$(stamp_of)"
if [[ "${TRITON_FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "triton: $VENV is up to date"
  exit 0
fi

start=$SECONDS
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "triton: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
# Keep git, ruff and friends out of the venv (it lives inside the repository by default and
# carries .py files such as triton_python_backend_utils.py that are not ours to lint).
echo '*' > "$VENV/.gitignore"
PY="$VENV/bin/python"

PREINSTALLED="${TRITON_PREINSTALLED:-0}"
if [[ "$PREINSTALLED" == "1" ]]; then
  echo "triton: TRITON_PREINSTALLED=1: using the packages already in $VENV"
else
  echo "triton: installing the model environment"
  "$PY" -m pip install -q -c "$CONSTRAINTS" "${REQUIREMENTS[@]}"
fi

if [[ "$PREINSTALLED" == "1" ]]; then
  :
elif [[ -f "$REPO/pyproject.toml" ]]; then
  echo "triton: installing the project (editable, --no-deps) so models can import it"
  "$PY" -m pip install -q --no-deps -e "$REPO"
else
  echo "triton: $REPO/pyproject.toml not found; skipping the project install (rerun later)"
fi

# No CUDA wheels: the only nvidia-* distribution allowed is nvidia-pytriton itself.
extra_nvidia="$("$PY" -m pip list --format=freeze 2>/dev/null | grep -i '^nvidia-' \
  | grep -vi '^nvidia-pytriton==' || true)"
if [[ -n "$extra_nvidia" && "$PREINSTALLED" != "1" ]]; then
  echo "triton: CUDA packages were pulled into $VENV; check the pins:" >&2
  echo "$extra_nvidia" >&2
  exit 1
fi

# Backend directory: the python backend, its utils and the stub for this Python minor.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
WHEEL="$SITE/pytriton/tritonserver"
LIBS="$SITE/nvidia_pytriton.libs"
MINOR="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
PYLIBDIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
LDLIBRARY="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("INSTSONAME") or "")')"
STUB="$WHEEL/python_backend_stubs/$MINOR/triton_python_backend_stub"
BACKENDS="$VENV/triton_backends"

if [[ ! -f "$STUB" ]]; then
  echo "triton: the wheel has no python backend stub for Python $MINOR" >&2
  exit 1
fi
if [[ "$LDLIBRARY" != *.so* || ! -f "$PYLIBDIR/$LDLIBRARY" ]]; then
  echo "triton: $PYTHON has no shared libpython ($PYLIBDIR/$LDLIBRARY); the python backend" \
    "stub embeds it. Use a Python built with --enable-shared (pyenv:" \
    "PYTHON_CONFIGURE_OPTS=--enable-shared)." >&2
  exit 1
fi

rm -rf "$BACKENDS.tmp"
mkdir -p "$BACKENDS.tmp/python"
cp "$WHEEL/backends/python/libtriton_python.so" \
  "$WHEEL/backends/python/triton_python_backend_utils.py" "$BACKENDS.tmp/python/"
cp "$STUB" "$BACKENDS.tmp/python/triton_python_backend_stub"
chmod +x "$BACKENDS.tmp/python/triton_python_backend_stub"
rm -rf "$BACKENDS"
mv "$BACKENDS.tmp" "$BACKENDS"

# The stub must find the wheel's bundled libraries and libpython (notes: a stub that cannot
# start leaves the server hanging not-ready, so fail here instead).
missing="$(LD_LIBRARY_PATH="$LIBS:$PYLIBDIR" ldd "$BACKENDS/python/triton_python_backend_stub" \
  "$WHEEL/bin/tritonserver" | grep 'not found' || true)"
if [[ -n "$missing" ]]; then
  echo "triton: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
# The python backend stub runs Python in isolated mode (sys.flags.isolated=1), which ignores
# PYTHONDONTWRITEBYTECODE: its model.py imports then write __pycache__/ into the version
# directories, which changes their mtime, so a poll-mode server reloads every model once more
# after each load. This .pth (run by site at start-up, also in isolated mode) restores the
# variable's meaning; the harness sets it for the server.
cat > "$SITE/secureai_triton_bytecode.pth" <<'PTHEOF'
import os, sys; sys.dont_write_bytecode = sys.dont_write_bytecode or bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
PTHEOF

"$PY" -c 'import numpy, onnxruntime, tritonclient.grpc.model_config_pb2  # noqa
assert numpy.__version__.startswith("1."), numpy.__version__'

# Paths the harness needs, so it never has to import anything from this venv.
"$PY" - "$VENV" "$WHEEL" "$LIBS" "$PYLIBDIR" "$BACKENDS" <<'PYEOF'
import json
import sys
from importlib.metadata import version

venv, wheel, libs, pylibdir, backends = sys.argv[1:]
layout = {
    "venv": venv,
    "python": f"{venv}/bin/python",
    "tritonserver": f"{wheel}/bin/tritonserver",
    "backend_directory": backends,
    "cache_directory": f"{wheel}/caches",
    "ld_library_path": [libs, pylibdir],
    "path": [f"{venv}/bin"],
    "versions": {
        name: version(name)
        for name in ("nvidia-pytriton", "numpy", "onnxruntime", "tritonclient", "protobuf")
    },
}
with open(f"{venv}/triton_layout.json", "w") as fh:
    json.dump(layout, fh, indent=2)
PYEOF

echo "$WANT" > "$STAMP"
echo "triton: ready in $((SECONDS - start)) s: $VENV"
