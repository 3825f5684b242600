#!/usr/bin/env bash
# Smoke test of docker-compose.yml on a machine with Docker (docs/operations.md, "Compose").
#
#   scripts/compose_smoke.sh            # CPU
#   scripts/compose_smoke.sh --gpu      # Triton on one NVIDIA GPU (docker/compose.gpu.yml)
#   scripts/compose_smoke.sh --fl       # also one federated run (3 DP rounds, 2 sites; 5-10 min)
#   scripts/compose_smoke.sh --keep     # leave the stack running afterwards
#
# Steps: build + up, wait for Triton/pipeline/API, produce synthetic events (and poison) into
# Redpanda, wait for score records and dead letters, check metrics (pipeline, Triton,
# Prometheus, Grafana dashboards), score over REST, optionally run federated retraining, down.
# Exit status 0 only when every check passed; on failure the services' logs are printed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GPU=0 FL=0 KEEP=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --fl) FL=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "compose_smoke: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose)
else echo "compose_smoke: needs Docker with the compose plugin (or docker-compose)" >&2; exit 2
fi
docker info >/dev/null 2>&1 || { echo "compose_smoke: the Docker engine is not reachable" >&2; exit 2; }
for cmd in curl python3; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "compose_smoke: needs $cmd on the host" >&2; exit 2; }
done
# BuildKit reads the per-Dockerfile ignore files (docker/Dockerfile.*.dockerignore); compose v2
# always uses it, docker-compose 1.x only when asked.
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
FILES=(-f docker-compose.yml)
[[ "$GPU" == 1 ]] && FILES+=(-f docker/compose.gpu.yml)
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-secureai-smoke}"
rand() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
export SECUREAI_API_TOKEN="${SECUREAI_API_TOKEN:-$(rand 16)}"
export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-$(rand 12)}"
dc() { "${COMPOSE[@]}" "${FILES[@]}" "$@"; }

EVENTS="${SMOKE_EVENTS:-5000}"
START=$SECONDS
step() { printf '\n[%4ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
  echo "compose_smoke: FAILED: $*" >&2
  dc ps >&2 || true
  dc logs --no-color --tail=80 >&2 || true
  exit 1
}
cleanup() {
  if [[ "$KEEP" == 1 ]]; then
    echo "stack left running (project $COMPOSE_PROJECT_NAME); API token: $SECUREAI_API_TOKEN"
  else
    dc --profile fl down -v --remove-orphans >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 2 s until it succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "$what (waited ${limit}s)"
    sleep 2
  done
  echo "  ok: $what"
}
http_ok() { curl -fsS --max-time 5 "$@" >/dev/null; }
metric() {  # metric URL NAME{labels} -> its value (0 when absent)
  curl -fsS --max-time 5 "$1" | awk -v m="$2" 'index($0, m) == 1 {print $NF; found=1} END {if (!found) print 0}' | head -1
}
positive() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)" "$1"; }

step "build and start (project $COMPOSE_PROJECT_NAME)"
dc config -q
dc build
dc up -d
wait_for 300 "Triton ready" http_ok http://127.0.0.1:8000/v2/health/ready
wait_for 180 "pipeline metrics endpoint" http_ok http://127.0.0.1:9108/metrics
wait_for 120 "REST evaluator ready" http_ok http://127.0.0.1:8080/readyz

step "produce $EVENTS synthetic events and 3 poison messages"
dc exec -T pipeline secureai produce --config /etc/secureai/pipeline.yml \
  --topic security-events --events "$EVENTS" --no-progress
dc exec -T redpanda bash -c \
  "printf '%s\n' '{not json' '[1,2,3]' '{\"event_id\":\"no-timestamp\"}' \
   | rpk topic produce security-events -X brokers=redpanda:9092"

step "wait for score records and dead letters"
count_topic() {  # count_topic TOPIC MIN: at least MIN records readable from the start
  local n
  # rpk waits for -n records; `timeout` stops it when fewer exist yet (retried by wait_for).
  n=$(dc exec -T redpanda timeout 20 rpk topic consume "$1" -X brokers=redpanda:9092 -o start \
        -n "$2" --format '%o\n' 2>/dev/null | wc -l)
  (( n >= $2 ))
}
wait_for 240 "$EVENTS score records on security-scores" count_topic security-scores "$EVENTS"
wait_for 60 "3 dead letters on security-events-dlq" count_topic security-events-dlq 3
record=$(dc exec -T redpanda rpk topic consume security-scores -X brokers=redpanda:9092 \
           -o start -n 1 --format '%v')
python3 -c "import json, sys; r = json.loads(sys.argv[1]); assert {'event_id', 'anomaly_score', 'reasons', 'model'} <= set(r), r" "$record" \
  || fail "a score record lacks its fields: $record"
echo "  ok: score record shape ($(echo "$record" | head -c 120)...)"

step "metrics"
scored=$(metric http://127.0.0.1:9108/metrics 'secureai_events_total{outcome="scored"}')
positive "$scored" || fail "pipeline reports no scored events"
echo "  ok: pipeline secureai_events_total{outcome=\"scored\"} = $scored"
rejected=$(metric http://127.0.0.1:9108/metrics 'secureai_events_total{outcome="rejected"}')
positive "$rejected" || fail "pipeline reports no rejected events"
echo "  ok: pipeline rejected = $rejected"
received=$(metric http://127.0.0.1:9108/metrics 'secureai_events_received_total')
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) + 3 else 1)" \
  "$received" "$EVENTS" || fail "pipeline took in $received events, fewer than $EVENTS + 3"
echo "  ok: pipeline secureai_events_received_total = $received"
triton=$(metric http://127.0.0.1:8002/metrics 'nv_inference_request_success{model="dfp_ensemble"')
positive "$triton" || fail "Triton reports no successful dfp_ensemble requests"
echo "  ok: Triton nv_inference_request_success (dfp_ensemble) = $triton"
prom_query() {
  curl -fsS --max-time 5 --get http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$1" \
    | python3 -c "import json, sys; r = json.load(sys.stdin)['data']['result']; sys.exit(0 if r and float(r[0]['value'][1]) > 0 else 1)"
}
wait_for 60 "Prometheus scraped the pipeline" prom_query 'sum(secureai_events_total)'
wait_for 60 "Prometheus scraped Triton" prom_query 'sum(nv_inference_request_success)'
grafana_dashboards() {
  curl -fsS --max-time 5 -u "admin:$GRAFANA_ADMIN_PASSWORD" \
    'http://127.0.0.1:3000/api/search?tag=secureai' \
    | python3 -c "import json, sys; uids = {d['uid'] for d in json.load(sys.stdin)}; sys.exit(0 if {'secureai-inference', 'secureai-fedmetrics'} <= uids else 1)"
}
wait_for 90 "Grafana provisioned both dashboards" grafana_dashboards

step "REST evaluator"
status=$(curl -sS -o /tmp/secureai-smoke-score.json -w '%{http_code}' --max-time 30 \
  -H "Authorization: Bearer $SECUREAI_API_TOKEN" -H 'Content-Type: application/json' \
  -d '{"events": [{"event_id": "smoke-1", "timestamp": "2026-11-08T03:14:00Z", "event_type": "auth", "user": "alice", "src_ip": "10.0.0.7", "result": "failure", "country": "KP"}, "poison"]}' \
  http://127.0.0.1:8080/v1/score)
[[ "$status" == 200 ]] || fail "POST /v1/score answered $status: $(cat /tmp/secureai-smoke-score.json)"
python3 -c "import json; d = json.load(open('/tmp/secureai-smoke-score.json')); assert d['counts'] == {**d['counts'], 'scored': 1, 'rejected': 1}, d" \
  || fail "unexpected /v1/score answer: $(cat /tmp/secureai-smoke-score.json)"
echo "  ok: POST /v1/score scored 1, rejected 1"
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:8080/v1/models)
[[ "$status" == 401 ]] || fail "GET /v1/models without a token answered $status, not 401"
http_ok -H "Authorization: Bearer $SECUREAI_API_TOKEN" http://127.0.0.1:8080/v1/models \
  || fail "GET /v1/models failed"
echo "  ok: GET /v1/models (401 without the token)"

if [[ "$FL" == 1 ]]; then
  step "federated run (SuperLink + 2 SuperNodes over TLS)"
  dc --profile fl run --rm fl-run || fail "the federated run did not finish:completed"
fi

step "all checks passed in $((SECONDS - START))s"
