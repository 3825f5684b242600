"""Cross-site correlation on a real broker: two sites' pipelines and the correlator service.

The same campaign (attacker IPs + user agent) hits both sites (one at-least-once, one
exactly-once); each site's pipeline sends only
keyed hashes to the correlation topic, the correlator joins them, and each site raises the
severity of its own incident from the notice. The correlation topic carries no raw value.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from morpheus_ext.stages.input.sources import frame_source
from pipelines.correlate import CorrelatorConfig, CorrelatorService
from pipelines.kafka.config import PipelineConfig
from pipelines.kafka.runner import KafkaScoringRunner, build_pipeline
from scripts.kafka.broker import KafkaBroker
from synthetic import SyntheticConfig, generate

from ..kafka_fixtures import (
    HANG_GUARD_S,
    ensure_topics,
    kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    read_until,
    unique,
)

pytestmark = [pytest.mark.integration]
__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name

KEY_ENV = "SECUREAI_TEST_CORRELATION_KEY"
SITES = ("site-0", "site-1")


def _site_config(
    broker: KafkaBroker, repository: Path, site: str, shared: dict[str, str], tmp: Path
) -> PipelineConfig:
    topics = make_topics(broker, partitions=1)
    # site-1 runs exactly-once: its indicator messages ride in each batch's transaction
    exactly_once = site == SITES[1]
    base = pipeline_config(
        broker, topics, repository, batch_size=1024, exactly_once=exactly_once, **shared
    )
    doc: dict[str, Any] = base.model_dump(mode="json")
    doc["incidents"] = {
        "enabled": True,
        "site": site,
        "gap_s": 30 * 86400.0,  # the stream is replayed in seconds: keep its incidents open
        "max_span_s": 30 * 86400.0,
        "checkpoint_path": str(tmp / f"incidents-{site}.json"),
    }
    doc["correlation"] = {"enabled": True, "key_env": KEY_ENV, "window_s": 7 * 86400.0}
    return PipelineConfig.model_validate(doc)


def test_campaign_at_two_sites_raises_both_sites_incidents(
    kafka_broker: KafkaBroker,
    model_repository: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "integration-test-key-0123456789abcdef")
    shared = {
        "incidents_topic": unique("incidents"),
        "correlation_topic": unique("correlation"),
        "campaigns_topic": unique("campaigns"),
    }
    ensure_topics(kafka_broker.bootstrap, {t: 1 for t in shared.values()})
    frame = generate(
        SyntheticConfig(
            n_events=6000,
            anomaly_rate=0.02,
            n_sites=2,
            seed=4,
            days=1,
            anomaly_kinds=["campaign"],
        )
    )
    assert frame.loc[frame["campaign_id"].notna(), "site"].nunique() == 2

    correlator = CorrelatorService(
        CorrelatorConfig.model_validate(
            {
                "kafka": {
                    "bootstrap_servers": kafka_broker.bootstrap,
                    "group_id": unique("correlator"),
                    "correlation_topic": shared["correlation_topic"],
                    "campaigns_topic": shared["campaigns_topic"],
                    "poll_timeout_s": 0.05,
                    "consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000},
                },
                "correlation": {"enabled": True, "window_s": 7 * 86400.0},
            }
        )
    )
    threads = [threading.Thread(target=correlator.run, daemon=True)]
    runners = []
    for site in SITES:
        config = _site_config(kafka_broker, model_repository, site, shared, tmp_path)
        pipeline, _engine = build_pipeline(config)
        runner = KafkaScoringRunner(config, pipeline)
        runners.append(runner)
        threads.append(threading.Thread(target=runner.run, daemon=True))
        events = frame[frame["site"] == site]
        values = [v for raw in frame_source(events, 4096) for v in raw.values]
        produce(kafka_broker, config.kafka.topics[0], values)
    for t in threads:
        t.start()

    def raised_at_both(messages: list[Any]) -> bool:
        return {m.json()["site"] for m in messages if m.json()["campaign"]} == set(SITES)

    try:
        emitted = read_until(kafka_broker, [shared["incidents_topic"]], raised_at_both)
    finally:
        for runner in runners:
            runner.request_stop()
        correlator.stop.set()
        deadline = time.monotonic() + HANG_GUARD_S
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a service did not drain"

    revisions = [m.json() for m in emitted]
    raised = [r for r in revisions if r["campaign"]]
    for r in raised:
        before = [
            x
            for x in revisions
            if x["incident_id"] == r["incident_id"]
            and not x["campaign"]
            and x["revision"] < r["revision"]
        ]
        assert before, "a campaign revision follows the incident's own"
        prev = max(before, key=lambda x: x["revision"])
        order = ("low", "medium", "high", "critical")
        assert order.index(r["severity"]) == min(order.index(prev["severity"]) + 1, 3)
        assert r["campaign"]["sites"] == 2
    assert len({r["campaign"]["campaign_id"] for r in raised}) >= 1
    assert sum(r.notices_applied for r in (x.correlation for x in runners) if r) >= 2

    # What left the sites: keyed hashes, times and ids; no raw value of any event.
    shared_msgs = read_until(kafka_broker, [shared["correlation_topic"]], lambda m: len(m) > 0)
    text = b"\n".join(m.value for m in shared_msgs).decode()
    raw_values = set()
    for col in ("src_ip", "user_agent", "user", "src_host", "dst_app"):
        raw_values |= {str(v) for v in frame[col].dropna().unique()}
    assert not [v for v in raw_values if v in text]
    for m in shared_msgs:
        msg = orjson.loads(m.value)
        assert set(msg) == {"site", "incident_id", "first_seen", "last_seen", "indicators"}
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in msg["indicators"])
    assert correlator.notices_out >= 2


def test_secureai_correlate_joins_two_sites_and_drains_on_sigterm(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """The service as ``secureai correlate`` runs it: notices out, offsets committed after
    their delivery, SIGTERM -> exit 0 with its summary."""
    import signal
    import subprocess
    import sys

    import yaml
    from confluent_kafka import Producer

    from morpheus_ext.stages.postprocess.correlation import indicator_message

    from ..kafka_fixtures import REPO_ROOT, committed

    correlation, campaigns, group = unique("correlation"), unique("campaigns"), unique("corr")
    ensure_topics(kafka_broker.bootstrap, {correlation: 1, campaigns: 1})
    key = b"subprocess-test-key-0123456789ab"
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for site, iid in (("paris", "inc-1"), ("tokyo", "inc-2"), ("oslo", "inc-3")):
        ip = "9.9.9.9" if site == "oslo" else "45.33.12.7"
        incident = {
            "site": site,
            "incident_id": iid,
            "first_seen": "2026-11-08T10:00:00Z",
            "last_seen": "2026-11-08T10:05:00Z",
            "values": {"src_ip": [ip]},
        }
        producer.produce(correlation, orjson.dumps(indicator_message(incident, key, ["src_ip"])))
    assert producer.flush(30) == 0
    config = tmp_path / "correlator.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": kafka_broker.bootstrap,
                    "group_id": group,
                    "correlation_topic": correlation,
                    "campaigns_topic": campaigns,
                    "consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000},
                },
                "correlation": {"enabled": True},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "correlate", "--config", str(config)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        notices = read_until(kafka_broker, [campaigns], lambda m: len(m) >= 2)
        deadline = time.monotonic() + HANG_GUARD_S
        while committed(kafka_broker, group, correlation, 1).get(0) != 3:
            assert time.monotonic() < deadline, "hang guard: offsets never committed"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b'"notices_out": 2' in out and b'"campaigns": 1' in out
    got = sorted((m.key, m.json()["incident_id"], m.json()["campaign"]["sites"]) for m in notices)
    assert got == [(b"paris", "inc-1", 2), (b"tokyo", "inc-2", 2)]
