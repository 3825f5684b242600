"""The REST evaluator over real HTTP (uvicorn on 127.0.0.1 in a thread of the test process).

Every request goes through a socket: auth, limits, error bodies, the pipeline's own records and
rejects, ``/v1/models`` against the publisher's listing, readiness while Triton is unreachable,
metrics, and that event contents never reach the log.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import uvicorn

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import list_versions
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.postprocess.records import score_record_schema
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.rest import ApiConfig, ApiConfigError, create_app, load_api_config
from synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"
MARKER = "SECRET-MARKER-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """A running app: ``request`` speaks raw HTTP/1.1 so bodies and headers are exactly ours."""

    def __init__(self, config: ApiConfig) -> None:
        self.app = create_app(config)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="info", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Api:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def post_json(self, path: str, doc: Any, token: str | None = TOKEN) -> tuple[int, Any]:
        status, _, data = self.request(
            "POST", path, orjson.dumps(doc), {"Content-Type": "application/json"}, token
        )
        return status, orjson.loads(data)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.request("GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "API not ready"
            time.sleep(0.05)


def api_config(repository: Path, **overrides: Any) -> ApiConfig:
    doc: dict[str, Any] = {
        "inference": {"engine": "inprocess", "repository": str(repository), "threads": 1},
        "limits": {"max_body_bytes": 64 * 1024, "max_events": 50},
        "engine_retry_s": 0.2,
    }
    doc.update(overrides)
    return ApiConfig.model_validate(doc)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("api-models") / "triton_model_repository"
    shutil.copytree(REPO_ROOT / "triton_model_repository", dest)
    return dest


@pytest.fixture(scope="module")
def api(repository: Path) -> Iterator[Api]:
    os.environ["SECUREAI_API_TOKEN"] = TOKEN
    try:
        with Api(api_config(repository)) as running:
            running.wait_ready()
            yield running
    finally:
        os.environ.pop("SECUREAI_API_TOKEN", None)


def synthetic_events(n: int, seed: int = 5) -> list[dict[str, Any]]:
    frame = generate(SyntheticConfig(n_events=n, anomaly_rate=0.1, seed=seed))
    return [orjson.loads(v) for raw in frame_source(frame, n) for v in raw.values]


# --------------------------------------------------------------------------- config
def test_shipped_config_validates_and_binds_loopback() -> None:
    config = load_api_config(REPO_ROOT / "configs" / "api.yml")
    assert config.host == "127.0.0.1"
    assert config.auth.enabled and config.auth.token_env == "SECUREAI_API_TOKEN"


def test_config_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "api.yml"
    bad.write_text("limits: {max_events: 10, max_evnts: 5}\n")
    with pytest.raises(ApiConfigError, match=r"limits\.max_evnts: Extra inputs"):
        load_api_config(bad)
    monkeypatch.delenv("SECUREAI_API_TOKEN", raising=False)
    with pytest.raises(ApiConfigError, match="no API token: set environment variable"):
        ApiConfig().auth.resolve_token()
    monkeypatch.setenv("SECUREAI_API_TOKEN", "short")
    with pytest.raises(ApiConfigError, match="shorter than 16"):
        ApiConfig().auth.resolve_token()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = ApiConfig.model_validate({"auth": {"token_file": str(token_file)}})
    assert config.auth.resolve_token() == TOKEN


# --------------------------------------------------------------------------- scoring
def test_score_matches_the_pipeline_and_every_event_is_accounted_for(
    api: Api, repository: Path
) -> None:
    events: list[Any] = synthetic_events(40)
    poison: dict[int, Any] = {
        3: "not an event",
        7: {"event_id": "no-time"},  # misses required fields
        11: None,
        19: [1, 2, 3],
    }
    for i, bad in poison.items():
        events[i] = bad
    small = events
    status, doc = api.post_json("/v1/score", {"events": small})
    assert status == 200, doc
    n = len(small)
    scored = {s["index"] for s in doc["scored"]}
    rejected = {r["index"] for r in doc["rejected"]}
    assert scored.isdisjoint(rejected) and scored | rejected == set(range(n))
    assert doc["counts"] == {
        "events": n,
        "scored": len(scored),
        "rejected": len(rejected),
        "anomalies": sum(s["record"]["is_anomaly"] for s in doc["scored"]),
    }
    assert rejected == {3, 7, 11, 19}
    reasons = {r["index"]: (r["stage"], r["reason"]) for r in doc["rejected"]}
    assert reasons[3] == ("decode", "expected a JSON object, got str")
    assert reasons[7][0] == "featurize" and "required" in reasons[7][1]
    schema = score_record_schema()
    for s in doc["scored"]:
        jsonschema.validate(s["record"], schema)
        assert s["record"]["event_id"] == small[s["index"]]["event_id"]
    assert doc["counts"]["anomalies"] > 0

    # The same events through the pipeline directly: the same scores.
    spec = load_spec("security_events")
    pipeline = ScoringPipeline(Featurizer(spec), InProcessEngine(repository, spec.spec_hash))
    from pipelines.rest.scoring import score_events

    direct = score_events(pipeline, small)
    assert [s["index"] for s in direct["scored"]] == [s["index"] for s in doc["scored"]]
    for a, b in zip(direct["scored"], doc["scored"], strict=True):
        assert a["record"]["anomaly_score"] == pytest.approx(b["record"]["anomaly_score"])
        assert a["record"]["reasons"] == b["record"]["reasons"]


def test_oversized_single_event_is_rejected_with_a_reason(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECUREAI_API_TOKEN", TOKEN)
    config = api_config(repository, limits={"max_body_bytes": 1 << 20, "max_event_bytes": 2048})
    with Api(config) as api:
        api.wait_ready()
        events: list[Any] = synthetic_events(3)
        events[1] = {**events[1], "user_agent": "x" * 5000}
        status, doc = api.post_json("/v1/score", {"events": events})
    assert status == 200
    assert [r["index"] for r in doc["rejected"]] == [1]
    assert "exceeds the 2048-byte limit" in doc["rejected"][0]["reason"]


# --------------------------------------------------------------------------- auth + errors
def test_bearer_token_is_required_on_v1_only(api: Api) -> None:
    body = orjson.dumps({"events": [{}]})
    json_h = {"Content-Type": "application/json"}
    for token in (None, "", "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]):
        status, headers, data = api.request("POST", "/v1/score", body, json_h, token=token)
        assert status == 401, token
        assert headers["www-authenticate"].startswith("Bearer")
        assert orjson.loads(data)["error"]["code"] == "unauthorized"
        assert api.request("GET", "/v1/models", token=token)[0] == 401
    basic = {"Authorization": f"Basic {TOKEN}"}
    status, _, data = api.request("GET", "/v1/models", headers=basic, token=None)
    assert status == 401
    assert api.request("POST", "/v1/score", body, json_h)[0] == 200
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert api.request("GET", path, token=None)[0] == 200, path


def test_errors_are_json_with_stable_codes(api: Api) -> None:
    json_h = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b"{not json", json_h, 400, "invalid_json"),
        (b"", json_h, 400, "invalid_json"),
        (b'{"events": [1]}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"events": [1]}', {}, 415, "unsupported_media_type"),
        (b"[1, 2]", json_h, 422, "invalid_request"),
        (b'{"events": []}', json_h, 422, "invalid_request"),
        (b'{"events": {"a": 1}}', json_h, 422, "invalid_request"),
        (b'{"events": [1], "extra": true}', json_h, 422, "invalid_request"),
        (orjson.dumps({"events": [{}] * 51}), json_h, 422, "too_many_events"),
    ]
    for body, headers, want, code in cases:
        status, h, data = api.request("POST", "/v1/score", body, headers)
        assert status == want, (body[:40], status, data)
        assert h["content-type"].startswith("application/json")
        err = orjson.loads(data)["error"]
        assert err["code"] == code and err["message"], err
    status, _, data = api.request("GET", "/v1/nope")
    assert status == 404 and orjson.loads(data)["error"]["code"] == "not_found"
    status, h, data = api.request("DELETE", "/v1/score")
    assert status == 405 and "POST" in h["allow"]
    assert orjson.loads(data)["error"]["code"] == "method_not_allowed"


def test_body_limit_answers_413_by_header_and_while_streaming(api: Api) -> None:
    limit = api.app.state.config.limits.max_body_bytes
    big = orjson.dumps({"events": [{"pad": "x" * (limit + 10)}]})
    status, _, data = api.request("POST", "/v1/score", big, {"Content-Type": "application/json"})
    assert status == 413
    assert orjson.loads(data)["error"]["code"] == "payload_too_large"
    # Chunked upload (no Content-Length): counted while it streams in.
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    conn.putrequest("POST", "/v1/score")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    status = 0
    try:
        for _ in range(200):
            chunk = b" " * 4096
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before the upload ends
    resp = conn.getresponse()
    status = resp.status
    assert status == 413, resp.read()
    conn.close()


# --------------------------------------------------------------------------- models
def test_models_lists_versions_like_the_publisher(tmp_path: Path) -> None:
    """The API, ``secureai model list`` and the publisher read one function; a rollback's pin is
    read whatever its whitespace (two parsers once disagreed here)."""
    from federated.publish import rollback

    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "triton_model_repository", repo)
    v2 = repo / "dfp_autoencoder" / "2"
    shutil.copytree(repo / "dfp_autoencoder" / "1", v2)
    manifest = json.loads((v2 / "manifest.json").read_text())
    manifest.update(
        version=2, parent_version=1, rounds=3, dp={"epsilon_spent": {"site-0": 2.5, "site-1": 2.9}}
    )
    (v2 / "manifest.json").write_text(json.dumps(manifest))

    assert [r["served"] for r in list_versions(repo)] == [False, True]
    assert list_versions(repo)[1]["epsilon"] == 2.9
    rollback(repo, version=1)
    assert [r["served"] for r in list_versions(repo)] == [True, False]
    config = repo / "dfp_autoencoder" / "config.pbtxt"
    spaced = config.read_text().replace("specific: { versions: [1]", "specific :{versions:[ 1 ]")
    assert "versions:[ 1 ]" in spaced
    config.write_text(spaced)
    assert [r["served"] for r in list_versions(repo)] == [True, False]

    os.environ["SECUREAI_API_TOKEN"] = TOKEN
    try:
        with Api(api_config(repo)) as api:
            api.wait_ready()
            status, _, data = api.request("GET", "/v1/models")
            doc = orjson.loads(data)
            # the in-process engine serves the pinned version too
            _, scored = api.post_json("/v1/score", {"events": synthetic_events(2)})
    finally:
        os.environ.pop("SECUREAI_API_TOKEN", None)
    assert status == 200
    assert doc["served_version"] == 1 and doc["model"] == "dfp_autoencoder"
    assert [v["version"] for v in doc["versions"]] == [1, 2]
    assert doc["versions"][1]["manifest"]["parent_version"] == 1
    assert doc["spec_hash"] == load_spec("security_events").spec_hash
    assert {s["record"]["model"]["version"] for s in scored["scored"]} == {1}


# --------------------------------------------------------------------------- readiness
def test_not_ready_while_triton_is_unreachable(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECUREAI_API_TOKEN", TOKEN)
    dead = free_port()  # nothing listens there
    config = api_config(
        repository,
        inference={"engine": "triton", "url": f"127.0.0.1:{dead}", "connect_timeout_s": 0.2},
    )
    with Api(config) as api:
        assert api.request("GET", "/healthz")[0] == 200
        deadline = time.monotonic() + 30  # the first connect attempt, slow on a loaded machine
        while True:
            status, _, data = api.request("GET", "/readyz")
            ready = orjson.loads(data)
            if ready.get("reason") != "starting" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 503 and ready["status"] == "not ready"
        assert "unreachable" in ready["reason"]
        status, headers, data = api.request(
            "POST",
            "/v1/score",
            orjson.dumps({"events": [{}]}),
            {"Content-Type": "application/json"},
        )
        assert status == 503 and "retry-after" in headers
        assert orjson.loads(data)["error"]["code"] == "not_ready"


# --------------------------------------------------------------------------- metrics + logs
def test_metrics_count_requests_and_events(api: Api) -> None:
    api.post_json("/v1/score", {"events": [*synthetic_events(5), "bad"]})
    _, headers, data = api.request("GET", "/metrics", token=None)
    text = data.decode()
    assert headers["content-type"].startswith("text/plain")
    for name in (
        'secureai_api_requests_total{route="/v1/score",status="200"}',
        "secureai_api_request_duration_seconds_bucket",
        'secureai_events_total{outcome="scored"}',
        'secureai_events_total{outcome="rejected"}',
        'secureai_inference_latency_seconds_count{engine="inprocess"}',
    ):
        assert name in text, name


def test_event_contents_never_reach_the_log(api: Api) -> None:
    """Every logger the service writes to (ours, uvicorn's access and error logs) at DEBUG."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    names = ["", "uvicorn", "uvicorn.access", "uvicorn.error", "pipelines", "morpheus_ext"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        events: list[Any] = synthetic_events(3)
        events[0]["user"] = MARKER
        events.append({"event_id": MARKER})  # rejected
        events.append(MARKER)  # rejected at decode
        status, doc = api.post_json("/v1/score", {"events": events})
        assert status == 200 and doc["counts"]["rejected"] == 2
        broken = b'{"events": ["' + MARKER.encode()
        api.request("POST", "/v1/score", broken, {"Content-Type": "application/json"})
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert any("/v1/score" in line for line in lines), lines  # the access log was captured
    assert not [line for line in lines if MARKER in line]


def test_a_secret_in_a_posted_event_is_masked_and_never_echoed(api: Api) -> None:
    """The leakage detector runs in the API too (``leakage`` on by default): a scored event
    carrying a key says so (``is_leak``, the type and the field), a rejected one is rejected
    with the secret masked, and the secret is nowhere in the response."""
    key, token = "AKIAIOSFODNN7EXAMPLE", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
    events: list[Any] = synthetic_events(4)
    events[1]["user_agent"] = f"deploy with {key} now"
    events[2] = {"event_id": "bad", "user_agent": f"git/2.43 token {token}"}  # misses fields
    status, doc = api.post_json("/v1/score", {"events": events})
    assert status == 200, doc
    body = json.dumps(doc)
    assert key not in body and token not in body
    record = next(s["record"] for s in doc["scored"] if s["index"] == 1)
    assert record["is_leak"] is True
    assert {"type": "aws_access_key", "field": "user_agent"} in record["leakage"]
    assert [r["index"] for r in doc["rejected"]] == [2]
    others = [s["record"] for s in doc["scored"] if s["index"] != 1]
    assert others and not any(r.get("is_leak") for r in others)


# --------------------------------------------------------------------------- spec, CLI, lean import
def test_openapi_documents_auth_limits_and_errors(api: Api) -> None:
    _, _, data = api.request("GET", "/openapi.json", token=None)
    spec = orjson.loads(data)
    score = spec["paths"]["/v1/score"]["post"]
    assert set(score["responses"]) >= {"200", "400", "401", "413", "415", "422", "503"}
    body = score["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["events"]["maxItems"] == 50
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert score["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_api_imports_no_torch() -> None:
    code = (
        "import sys; import pipelines.cli_serve, pipelines.rest.app, "
        "morpheus_ext.model_repository; "
        "from pipelines.rest import ApiConfig, create_app; "
        "create_app(ApiConfig.model_validate({'auth': {'enabled': False}})); "
        "bad = sorted(m for m in ('torch', 'flwr', 'opacus', 'federated') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_serves_on_loopback_and_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SECUREAI_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "pipelines.cli_serve", "serve-api"]
    out = subprocess.run(
        [*cli, "--config", str(tmp_path / "missing.yml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"secureai: error: config file not found: {tmp_path / 'missing.yml'}"
    ]
    # The lean image has no torch: errors must still be one line there.
    lean = (
        "import sys; sys.modules['torch'] = None; from pipelines import cli_serve; "
        f"sys.exit(cli_serve.main(['serve-api', '--config', {str(tmp_path / 'x.yml')!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", lean], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    no_token = {k: v for k, v in env.items() if k != "SECUREAI_API_TOKEN"}
    out = subprocess.run(
        [*cli], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=no_token
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "no API token" in out.stderr

    port = free_port()
    proc = subprocess.Popen(
        [*cli, "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve-api did not become ready"
            time.sleep(0.1)
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
        if listening:  # ss is there: the socket is on loopback only
            assert {line.split()[3] for line in listening.splitlines()} == {f"127.0.0.1:{port}"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_extra_metrics_port_serves_the_same_registry(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``metrics_port``: prometheus_client's own HTTP server next to the API, on
    ``metrics_host`` (loopback by default, whatever ``host`` is)."""
    from tests.ops.test_ops_metrics import listening

    monkeypatch.setenv("SECUREAI_API_TOKEN", TOKEN)
    port = free_port()
    with Api(api_config(repository, metrics_port=port)) as api:
        api.wait_ready()
        assert listening(port) == {"127.0.0.1"}
        api.post_json("/v1/score", {"events": synthetic_events(2)})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    assert 'secureai_api_requests_total{route="/v1/score",status="200"}' in text
    assert 'secureai_events_total{outcome="scored"}' in text


def test_metrics_tell_a_server_failure_from_a_client_that_left() -> None:
    """The request counter's status: 500 when our app failed before answering, 499 when the
    client went away first (a cancelled request), never a 5xx for the client's own leaving.
    The ASGI apps here are named fakes standing in for the real app (unit test of the
    middleware's own logic)."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from pipelines.rest import middleware
    from pipelines.rest.prometheus_metrics import ApiMetrics

    async def fake_failing_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def fake_app_cancelled_by_disconnect(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    async def no_send(message: Any) -> None:
        return None

    metrics = ApiMetrics(CollectorRegistry())
    scope = {"type": "http", "path": "/v1/score"}
    for app, raised in (
        (fake_failing_app, RuntimeError),
        (fake_app_cancelled_by_disconnect, asyncio.CancelledError),
    ):
        wrapped = middleware.MetricsMiddleware(app)
        wrapped.metrics = metrics
        with pytest.raises(raised):
            asyncio.run(wrapped(scope, no_send, no_send))
    counted = {
        s.labels["status"]: s.value
        for m in metrics.requests.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert counted == {"500": 1.0, "499": 1.0}, counted
