#!/usr/bin/env bash
# Install the operations tools the tests and local runs use, from Debian packages (no Docker):
#   prometheus      2.42 (+ promtool): a real Prometheus for the dashboard test (run as a plain
#                   process on 127.0.0.1 by scripts/ops/prometheus.py; no service is started)
#   docker-compose  1.29: validates docker-compose.yml offline (`docker-compose config -q`)
#   ShellCheck      0.9: lints scripts/compose_smoke.sh and scripts/ops/*.sh
#
# Idempotent: returns at once when both are already installed. Needs root (or sudo) for apt.
# Env: OPS_SKIP_APT_UPDATE=1 skips `apt-get update`.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [[ ${#need[@]} -eq 0 ]]; then
  echo "ops tools: up to date ($(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3)," \
    "docker-compose $(docker-compose version --short 2>/dev/null), $(shellcheck --version | sed -n 2p))"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ops tools: installing ${need[*]} needs root (apt-get); run this script as root" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ops tools: apt-get not found; install ${need[*]} with your package manager" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [[ "${OPS_SKIP_APT_UPDATE:-0}" != "1" ]]; then
  $SUDO apt-get update -qq
fi
# --no-install-recommends: docker-compose would otherwise recommend the whole engine.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package enables a prometheus service on :9090 where systemd runs; the tests start
# their own process on a free loopback port and never use it.
echo "ops tools: installed ${need[*]}"
