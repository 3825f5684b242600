#!/usr/bin/env bash
# Register N SuperNode keys with the SuperLink and start one SuperNode per site (background).
#   scripts/fl/start_supernodes.sh PKI_DIR N [PORT]
# Site i gets `--node-config "partition-id=i num-partitions=N"`; logs and pids go to PKI_DIR.
# Stop them with: kill $(cat PKI_DIR/supernode-*.pid)
set -euo pipefail
PKI=$(cd "$1" && pwd); N=$2; PORT=${3:-9093}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH" FLWR_HOME="$PKI/flwr-home" FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
for ((i = 0; i < N; i++)); do
  flwr supernode register "$PKI/supernode-$i""_key.pub" secureai
  FLWR_HOME="$PKI/flwr-home-supernode-$i" nohup flower-supernode \
    --superlink "127.0.0.1:$PORT" --root-certificates "$PKI/ca.crt" \
    --auth-supernode-private-key "$PKI/supernode-$i""_key" \
    --port $((PORT + 100 + i)) \
    --node-config "partition-id=$i num-partitions=$N" > "$PKI/supernode-$i.log" 2>&1 &
  echo $! > "$PKI/supernode-$i.pid"
done
flwr supernode list secureai
