#!/usr/bin/env bash
# Submit the SecureAI Flower app to the running SuperLink and wait until it finished.
#   scripts/fl/run_app.sh PKI_DIR CONFIG.yml RUN_DIR
# `flwr run` exits 0 even when the run fails, so this polls `flwr ls --format json` and then
# checks RUN_DIR/fl_result.json for "status": "completed".
set -euo pipefail
PKI=$(cd "$1" && pwd); CONFIG=$2; RUN_DIR=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH" FLWR_HOME="$PKI/flwr-home" FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
# Run from the repository root: relative data paths in the config resolve against the working
# directory of the SuperLink and SuperNodes (`secureai fl deploy` makes them absolute for you).
mkdir -p "$RUN_DIR"; RUN_DIR=$(cd "$RUN_DIR" && pwd)
cp "$CONFIG" "$RUN_DIR/config.yaml"
RUN_ID=$(flwr run "$ROOT/federated/app" secureai --format json \
  --run-config "config-path=\"$RUN_DIR/config.yaml\"" --run-config "run-dir=\"$RUN_DIR\"" \
  | python -c "import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index('{'):])['run-id'])")
echo "run $RUN_ID"
while :; do
  STATUS=$(flwr ls secureai --run-id "$RUN_ID" --format json \
    | python -c "import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index('{'):])['runs'][0]['status'])")
  [[ $STATUS == finished* ]] && break
  sleep 3
done
echo "Flower status: $STATUS"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print('server status:', d['status']); sys.exit(d['status'] != 'completed')" \
  "$RUN_DIR/fl_result.json"
