"""The pipeline against a real Triton server (CPU harness): same records, outages, bad models."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline, run_batches
from morpheus_ext.prometheus_metrics import pipeline_metrics
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.inference.triton import RetryPolicy, TritonEngine, TritonEngineError
from morpheus_ext.stages.input.sources import RawBatch, frame_source
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.cli import main
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT, triton_harness

pytestmark = pytest.mark.integration
SPEC = load_spec("security_events")
REPOSITORY = REPO_ROOT / "triton_model_repository"


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic import write_events

    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    return write_events(generate(SyntheticConfig(n_events=6000, seed=9, population_seed=0)), path)


def _score(argv: list[str], out: Path) -> dict[str, dict[str, Any]]:
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return {r["event_id"]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_triton_and_in_process_give_the_same_records(
    triton_server: Any, events_file: Path, tmp_path: Path, protocol: str
) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_address
    local = _score(
        ["score", "--events", str(events_file), "--model-repository", str(REPOSITORY)],
        tmp_path / "local.jsonl",
    )
    served = _score(
        ["score", "--events", str(events_file), "--triton", url, "--protocol", protocol],
        tmp_path / "triton.jsonl",
    )
    assert local.keys() == served.keys() and len(local) == 6000
    for event_id, a in local.items():
        b = served[event_id]
        assert abs(a["anomaly_score"] - b["anomaly_score"]) <= 1e-5
        assert [r["field"] for r in a["reasons"]] == [r["field"] for r in b["reasons"]]
        assert a["model"] == b["model"] and a["is_anomaly"] == b["is_anomaly"]


def test_batches_larger_than_max_batch_size_are_split(triton_server: Any) -> None:
    engine = TritonEngine(triton_server.grpc_url, SPEC.spec_hash, max_in_flight=3)
    engine.info = engine.info.__class__(engine.info.name, engine.info.spec_hash, 1000)
    tensor = np.asarray(Featurizer(SPEC).transform(generate(SyntheticConfig(n_events=2500))).tensor)
    out = engine.infer(tensor)
    local = InProcessEngine(REPOSITORY, SPEC.spec_hash).infer(tensor)
    assert out["ANOMALY_SCORE"].shape == (2500, 1)
    np.testing.assert_allclose(out["ANOMALY_SCORE"], local["ANOMALY_SCORE"], atol=1e-5)
    engine.close()


def test_triton_metrics_are_scraped(triton_server: Any) -> None:
    engine = TritonEngine(triton_server.grpc_url, SPEC.spec_hash)
    engine.infer(np.zeros((8, 256), np.float32))
    engine.close()
    text = urllib.request.urlopen(triton_server.metrics_url, timeout=5).read().decode()
    lines = [
        ln
        for ln in text.splitlines()
        if ln.startswith("nv_inference_request_success") and 'model="dfp_ensemble"' in ln
    ]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) >= 1
    assert "nv_inference_request_duration_us" in text


def test_unreachable_server_and_wrong_spec_are_one_clear_line(triton_server: Any) -> None:
    with pytest.raises(TritonEngineError, match="feature spec mismatch"):
        TritonEngine(triton_server.grpc_url, "0123456789abcdef")
    with pytest.raises(TritonEngineError, match=r"input EVENT_TENSOR|takes inputs"):
        TritonEngine(triton_server.grpc_url, SPEC.spec_hash, model="dfp_autoencoder")
    th = triton_harness()
    port = th.free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "score",
            "--events",
            "README.md",
            "--triton",
            f"127.0.0.1:{port}",
            "--connect-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is unreachable" in lines[0], proc.stderr


def _slow_source(n_batches: int, batch: int, pause: float) -> Iterator[RawBatch]:
    frame = generate(SyntheticConfig(n_events=n_batches * batch, seed=21, population_seed=0))
    for raw in frame_source(frame, batch):
        time.sleep(pause)
        yield raw


@pytest.mark.slow
def test_server_outage_mid_stream_delays_but_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton stopped for 10 s mid-stream, then started again on the same ports."""
    th = triton_harness()
    ports = {
        "http_port": th.free_port(),
        "grpc_port": th.free_port(),
        "metrics_port": th.free_port(),
    }
    server = th.TritonServer(REPOSITORY, tmp_path / "a", **ports).start(timeout=120)
    engine = TritonEngine(
        server.grpc_url,
        SPEC.spec_hash,
        retry=RetryPolicy(initial_s=0.1, max_s=1.0, max_outage_s=120),
    )
    pipeline = ScoringPipeline(Featurizer(SPEC), engine)
    errors_before = _counter("secureai_inference_errors_total")
    records: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    result: dict[str, Any] = {}

    def run() -> None:
        result["stats"] = run_batches(
            pipeline, _slow_source(40, 250, 0.5), records.extend, dead.extend, progress=False
        )

    caplog.set_level(logging.INFO, logger="morpheus_ext.stages.inference.triton")
    worker = threading.Thread(target=run)
    worker.start()
    restarted = None
    try:
        time.sleep(4)  # mid-stream
        assert worker.is_alive()
        server.stop()
        time.sleep(10)
        restarted = th.TritonServer(REPOSITORY, tmp_path / "b", **ports).start(timeout=120)
        worker.join(timeout=180)
        assert not worker.is_alive()
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
        engine.close()
    ids = [r["event_id"] for r in records]
    assert len(ids) == 40 * 250 and len(set(ids)) == len(ids) and not dead
    assert result["stats"].scored == 40 * 250
    assert _counter("secureai_inference_errors_total") > errors_before
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable" in m for m in messages) and any("back after" in m for m in messages)


def _counter(name: str) -> float:
    from prometheus_client import REGISTRY

    pipeline_metrics()
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == name:
                total += sample.value
    return total


def test_pipeline_exports_inference_latency_and_in_flight(triton_server: Any) -> None:
    engine = TritonEngine(triton_server.grpc_url, SPEC.spec_hash)
    before = _counter("secureai_inference_latency_seconds_count")
    engine.infer(np.zeros((4, 256), np.float32))
    engine.close()
    assert _counter("secureai_inference_latency_seconds_count") == before + 1
    assert _counter("secureai_inference_inflight_requests") == 0
