#!/usr/bin/env bash
# Start a SuperLink on 127.0.0.1 with TLS and SuperNode authentication (foreground).
#   scripts/fl/start_superlink.sh PKI_DIR [PORT]
# PKI_DIR comes from scripts/fl/gen_certs.py. Never without
# --disable-runtime-dependency-installation: the SuperLink would `uv sync` the app and pull a
# CUDA build of torch. FLWR_HOME is kept under PKI_DIR; telemetry and update checks are off.
set -euo pipefail
PKI=$(cd "$1" && pwd); PORT=${2:-9093}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH" FLWR_HOME="$PKI/flwr-home" FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "secureai"

[superlink.secureai]
address = "127.0.0.1:$PORT"
root-certificates = "$PKI/ca.crt"
TOML
exec flower-superlink --host 127.0.0.1 --port "$PORT" \
  --ssl-ca-certfile "$PKI/ca.crt" --ssl-certfile "$PKI/server.pem" --ssl-keyfile "$PKI/server.key" \
  --enable-supernode-auth --disable-runtime-dependency-installation \
  --database "$FLWR_HOME/state.db"
