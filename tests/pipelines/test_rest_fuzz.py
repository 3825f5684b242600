"""Fuzz the REST evaluator against its own OpenAPI spec with schemathesis (a real HTTP server).

``secureai serve-api`` runs as a subprocess on 127.0.0.1; schemathesis generates requests from
``/openapi.json`` (valid and invalid bodies, wrong methods, missing/invalid auth) and runs every
check: no 5xx, only documented status codes and content types, responses that match their
schemas (score records included), invalid data rejected, auth enforced. A short, seeded run.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines.test_rest_api import TOKEN, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("fuzz") / "api.yml"
    config.write_text(
        "inference: {engine: inprocess, repository: triton_model_repository, threads: 1}\n"
        "limits: {max_body_bytes: 262144, max_events: 64}\n"
    )
    port = free_port()
    env = {**os.environ, "SECUREAI_API_TOKEN": TOKEN}
    log = (tmp_path_factory.getbasetemp() / "serve-api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli_serve", "serve-api", "--config", str(config),
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "serve-api exited during start-up"
            assert time.monotonic() < deadline, "serve-api did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_schemathesis_finds_no_failures(served: str, tmp_path: Path) -> None:
    """All checks pass on a seeded run; the service scored events and never answered 5xx."""
    cmd = [
        str(SCHEMATHESIS), "run", f"{served}/openapi.json",
        "--checks", "all",
        "-H", f"Authorization: Bearer {TOKEN}",
        "--max-examples", "50",
        "--seed", "1",
        "--workers", "1",
        "--request-timeout", "20",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its working directory
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    tail = "\n".join((out.stdout + out.stderr).splitlines()[-60:])
    assert out.returncode == 0, tail
    assert "No issues found" in out.stdout, tail
    # It really exercised the scoring route (not only the health checks).
    assert "5 selected / 5 total" in out.stdout, tail

    # The service's own count: it scored events and answered 4xx, never 5xx.
    port = int(served.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    counts: dict[str, float] = {}
    server_errors = [ln for ln in text.splitlines() if re.search(r'status="5\d\d"', ln)]
    for line in text.splitlines():
        if line.startswith("secureai_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            status = labels.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(value)
    assert counts.get("200", 0) > 50, counts
    assert any(s.startswith("4") for s in counts), counts
    assert not server_errors, server_errors  # names the route
    scored = [
        ln for ln in text.splitlines() if ln.startswith('secureai_events_total{outcome="scored"}')
    ]
    assert scored and float(scored[0].rsplit(" ", 1)[1]) > 0
