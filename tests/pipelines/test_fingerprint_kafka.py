"""Fingerprinting in the Kafka pipeline: baselines checkpointed with the consumed offsets.

Issue #7, durability: after a crash or a restart the baselines continue from the checkpoint;
replayed events are scored again (at-least-once) but learned exactly once. Baselines are
compared in the checkpoint's canonical form (rows sorted by entity hash): counts, histograms and
hour profiles exactly, running moments to float32 rounding (batch boundaries differ between
runs), seen-value tables as (field, value, count) sets (their slots depend on insertion order).

The tests learn every event (``update_from: all``) so that the comparison does not hinge on a
model flag at the threshold's last bit, and use seen-value tables large enough never to evict
(eviction order depends on batch boundaries, docs/fingerprinting.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from morpheus_ext.config_io import load_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import Origin, RawBatch
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
from morpheus_ext.stages.postprocess.incidents import latest_revisions
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.config import DemoConfig
from pipelines.demo import _baselines as demo_baselines
from pipelines.kafka import (
    KafkaPipelineError,
    KafkaScoringRunner,
    RunSummary,
    build_pipeline,
)
from pipelines.kafka.config import PipelineConfig
from scripts.kafka.broker import KafkaBroker

from ..kafka_fixtures import (
    HANG_GUARD_S,
    REPO_ROOT,
    PipelineProcess,
    Produced,
    Topics,
    committed,
    kafka_broker,
    make_topics,
    model_repository,
    pipeline_config,
    produce,
    read_until,
    synthetic_values,
    wait_covered,
    write_config,
)

__all__ = ["kafka_broker", "model_repository"]  # fixtures used by name

SPEC = "security_events"
FINGERPRINT: dict[str, Any] = {
    "enabled": True,
    "min_events": 20,
    "update_from": "all",
    "values_per_entity": 256,
    "probes": 64,
    "checkpoint_interval_s": 0.5,
}


def fingerprint_config(base: PipelineConfig, checkpoint: Path, **overrides: Any) -> PipelineConfig:
    doc = base.model_dump(mode="json")
    doc["fingerprint"] = {**FINGERPRINT, "checkpoint_path": str(checkpoint), **overrides}
    return PipelineConfig.model_validate(doc)


def read_checkpoint(path: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """(offsets, row arrays) of a checkpoint file, rows sorted by entity hash."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        arrays = {k: data[k] for k in data.files if k not in ("meta", "name_keys")}
    return {str(k): int(v) for k, v in meta["offsets"].items()}, arrays


def assert_same_baselines(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert len(got["entity"]) > 100, "too few entities to compare"
    assert np.array_equal(got["entity"], want["entity"]), "other entities"
    for name in ("n", "hist", "hour"):
        assert np.array_equal(got[name], want[name]), f"{name} differs"
    for name in ("g_mean", "g_var", "z_mean", "z_var"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)

    def table(a: dict[str, np.ndarray], row: int) -> list[tuple[int, int, int]]:
        live = a["vcount"][row] > 0
        return sorted(
            zip(
                a["vfield"][row][live].tolist(),
                a["vkey"][row][live].tolist(),
                a["vcount"][row][live].tolist(),
                strict=True,
            )
        )

    for row in range(len(got["entity"])):
        assert table(got, row) == table(want, row), f"seen values of entity row {row} differ"


def end_offsets(produced: Produced, topic: str) -> dict[str, int]:
    return {f"{topic}:{p}": max(o) + 1 for p, o in produced.offsets_by_partition().items()}


def set_committed(broker: KafkaBroker, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Overwrite the group's committed offsets (the group has no member now)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


class Background:
    """A runner on a thread, stopped (drain + final checkpoint) once its offsets reach the end."""

    def __init__(self, config: PipelineConfig) -> None:
        self.pipeline, self.engine = build_pipeline(config)
        self.runner = KafkaScoringRunner(config, self.pipeline)
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.summary = self.runner.run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop_when(self, done: Any) -> RunSummary:
        deadline = time.monotonic() + HANG_GUARD_S
        while not done():
            assert self.thread.is_alive(), f"runner died: {self.error!r}"
            assert time.monotonic() < deadline, "hang guard: the runner never got there"
            time.sleep(0.1)
        self.runner.request_stop()
        self.thread.join(60)
        self.engine.close()
        assert self.error is None, repr(self.error)
        assert self.summary is not None and self.summary.drained
        return self.summary


def reference_baselines(
    values: list[bytes], config: PipelineConfig, repository: Path, tmp: Path
) -> dict[str, np.ndarray]:
    """An uninterrupted run over the same events, without Kafka: every event learned once."""
    spec = load_spec(SPEC)
    assert config.fingerprint is not None
    baselines = EntityBaselines(spec, config.fingerprint.baselines_config())
    engine = InProcessEngine(repository, spec.spec_hash, threads=1)
    pipeline = ScoringPipeline(Featurizer(spec), engine, baselines=baselines)
    for lo in range(0, len(values), 2048):
        chunk = values[lo : lo + 2048]
        pipeline.process(RawBatch(chunk, [Origin("ref", 0, lo + i) for i in range(len(chunk))]))
    engine.close()
    _, arrays = read_checkpoint(baselines.checkpoint(tmp / "reference.npz", {}))
    return arrays


# --------------------------------------------------------------------------- replays, in process
@pytest.mark.integration
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_replays_after_a_crash_are_scored_again_but_never_learned_twice(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path, exactly_once: bool
) -> None:
    """Both ways a crash leaves checkpoint and group offsets apart, in one restart:

    * partition 0: the group's offset is behind the checkpoint (crash after the checkpoint,
      before the commit) -> those events are scored and emitted again, not learned again;
    * partitions 1-3: the checkpoint is behind the group's offset (crash after commits, before
      the next checkpoint) -> those events are learned again (the restored state lacks them)
      but not emitted again.
    """
    n = 12_000
    topics = make_topics(kafka_broker)
    values = list(synthetic_values(n))
    produced = produce(kafka_broker, topics.events, values)
    ckpt = tmp_path / "state" / "baselines-{instance}.npz"
    config = fingerprint_config(
        pipeline_config(
            kafka_broker, topics, model_repository, batch_size=1024, exactly_once=exactly_once
        ),
        ckpt,
    )
    path = tmp_path / "state" / "baselines-0.npz"

    def run(max_events: int) -> RunSummary:
        pipeline, engine = build_pipeline(config)
        try:
            return KafkaScoringRunner(config, pipeline).run(max_events=max_events)
        finally:
            engine.close()

    first = run(3000)
    assert first.drained and first.checkpoints >= 1
    offsets_1, _ = read_checkpoint(path)
    kept = tmp_path / "first.npz"
    shutil.copy(path, kept)
    second = run(3000)
    assert second.learned_only == second.rescored == 0, "a clean restart replays nothing"
    after_second = committed(kafka_broker, topics.group, topics.events, topics.partitions)

    # The crash: the second run's checkpoint is lost, partition 0's commits too.
    shutil.copy(kept, path)
    p0 = f"{topics.events}:0"
    set_committed(kafka_broker, topics.group, topics.events, {0: 0})
    end = end_offsets(produced, topics.events)

    third = Background(config)

    def at_end() -> bool:
        # Both marks at the end: emitted and committed, and learned. The learn-only replay of
        # partitions 1-3 commits nothing, so committed offsets alone can reach the end first.
        got = committed(kafka_broker, topics.group, topics.events, topics.partitions)
        learned = {f"{t}:{p}": o for (t, p), o in third.runner.learned_offsets.items()}
        return {f"{topics.events}:{p}": o for p, o in got.items()} == end and learned == end

    summary = third.stop_when(at_end)

    assert summary.rescored == offsets_1[p0], "partition 0 below the checkpoint: re-scored"
    learned_again = sum(
        after_second.get(p, 0) - offsets_1[f"{topics.events}:{p}"]
        for p in range(1, topics.partitions)
    )
    assert learned_again > 0 and summary.learned_only == learned_again

    offsets, got = read_checkpoint(path)
    assert offsets == end
    assert int(got["n"].sum()) == n, "every event learned exactly once"
    assert_same_baselines(got, reference_baselines(values, config, model_repository, tmp_path))

    # Outputs: at least once; the learned-only range was not emitted again.
    outcome, _ = wait_covered(kafka_broker, produced, topics)
    for (partition, offset), i in produced.where.items():
        count = outcome.count(i)
        if partition == 0:
            # re-scored below L; above L emitted by the second run, then learned and emitted
            # again (the group's offset was set back to 0 past what the second run committed)
            assert count == (2 if offset < after_second.get(0, 0) else 1)
        elif offset >= offsets_1[f"{topics.events}:{partition}"]:
            assert count == 1, "learned-only events must not be emitted again"


# --------------------------------------------------------------------------- kill -9, real process
@pytest.mark.integration
def test_kill9_and_restart_equals_an_uninterrupted_run(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    n = 24_000
    topics = make_topics(kafka_broker)
    values = list(synthetic_values(n))
    config = fingerprint_config(
        pipeline_config(kafka_broker, topics, model_repository, batch_size=1024),
        tmp_path / "state" / "baselines-{instance}.npz",
    )
    config_path = write_config(config, tmp_path / "pipeline.yml")
    path = tmp_path / "state" / "baselines-a.npz"

    first = PipelineProcess(config_path, tmp_path / "first.log", "--instance-id", "a")
    first.wait_for("assigned")
    produced = Produced(topics.events)
    producer = threading.Thread(
        target=produce,
        args=(kafka_broker, topics.events, values, 6000.0, produced),
        daemon=True,
    )
    producer.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while not path.exists() or sum(read_checkpoint(path)[0].values()) < n // 4:
        assert time.monotonic() < deadline, "hang guard: no checkpoint mid-stream"
        time.sleep(0.05)
    first.kill9()
    at_kill = sum(read_checkpoint(path)[0].values())
    assert at_kill < n, "the kill must land mid-stream"

    second = PipelineProcess(config_path, tmp_path / "second.log", "--instance-id", "a")
    producer.join(HANG_GUARD_S)
    end = end_offsets(produced, topics.events)
    deadline = time.monotonic() + HANG_GUARD_S
    while {
        f"{topics.events}:{p}": o
        for p, o in committed(kafka_broker, topics.group, topics.events, topics.partitions).items()
    } != end:
        assert second.proc.poll() is None, second.output()[-2000:]
        assert time.monotonic() < deadline, "hang guard: the restart never caught up"
        time.sleep(0.1)
    assert second.terminate() == 0, second.output()[-2000:]
    assert "restored" in second.output() and "drained" in second.output()
    offsets, restarted = read_checkpoint(path)
    assert offsets == end

    # The uninterrupted run: another group (and checkpoint) over the same events.
    reference_topics = Topics(
        topics.events,
        topics.scores + "-ref",
        topics.dead + "-ref",
        topics.group + "-ref",
        topics.partitions,
    )
    reference_config = fingerprint_config(
        pipeline_config(kafka_broker, reference_topics, model_repository, batch_size=1024),
        tmp_path / "reference.npz",
    )
    pipeline, engine = build_pipeline(reference_config)
    try:
        summary = KafkaScoringRunner(reference_config, pipeline).run(max_events=n)
    finally:
        engine.close()
    assert summary.events_in == n and summary.drained
    reference_offsets, uninterrupted = read_checkpoint(tmp_path / "reference.npz")
    assert reference_offsets == end

    assert int(restarted["n"].sum()) == n, "no double counting, nothing lost"
    assert_same_baselines(restarted, uninterrupted)


# --------------------------------------------------------------------------- reasons
@pytest.mark.integration
def test_flagged_records_carry_reasons_in_words_and_tail_shows_them(
    kafka_broker: KafkaBroker,
    model_repository: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the broker: every record has the fingerprint's scores, the flagged ones
    (``explain: alerts``) their reasons in words, and ``secureai tail`` ranks by the combined
    score and shows those words."""
    from pipelines.cli_kafka import main as kafka_cli

    n = 6000
    topics = make_topics(kafka_broker)
    config = fingerprint_config(
        pipeline_config(kafka_broker, topics, model_repository, batch_size=1024),
        tmp_path / "baselines.npz",
        min_events=5,
    )
    produce(kafka_broker, topics.events, list(synthetic_values(n)), 0.0, Produced(topics.events))
    pipeline, engine = build_pipeline(config)
    try:
        summary = KafkaScoringRunner(config, pipeline).run(max_events=n)
    finally:
        engine.close()
    assert summary.events_in == n and summary.drained

    messages = read_until(kafka_broker, [topics.scores], lambda m: len(m) >= summary.scored)
    records = [orjson.loads(m.value) for m in messages]
    flagged = [r for r in records if r["combined_anomaly"]]
    assert all("combined_score" in r and "baseline" in r for r in records)
    assert 0 < len(flagged) < len(records) / 4
    assert all(isinstance(why["text"], str) for r in flagged for why in r["reasons"])
    assert not any(
        "text" in why for r in records if not r["combined_anomaly"] for why in r["reasons"]
    )
    assert any(r["baseline"] == "entity" for r in flagged)

    argv = ["tail", "--events", "--bootstrap-servers", kafka_broker.bootstrap]
    argv += ["--topic", topics.scores]
    argv += ["--from-beginning", "--once", "--idle-exit", "1", "--top", "5", "--anomalies-only"]
    assert kafka_cli(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{len(records)} score records, {len(flagged)} anomalous")
    assert "by combined score" in lines[0] and len(lines) == 7
    by_id = {r["event_id"][:18]: r for r in flagged}
    shown = [by_id[line.split()[5]] for line in lines[2:]]  # score thresh combined ! entity id
    ranked = sorted((r["combined_score"] for r in flagged), reverse=True)[:5]
    assert [r["combined_score"] for r in shown] == ranked
    for line, record in zip(lines[2:], shown, strict=True):
        assert record["reasons"][0]["text"] in line


# --------------------------------------------------------------------------- refusals
@pytest.mark.integration
def test_a_checkpoint_of_other_settings_is_refused_in_one_line(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    topics = make_topics(kafka_broker, partitions=1)
    config = fingerprint_config(
        pipeline_config(kafka_broker, topics, model_repository), tmp_path / "b.npz"
    )
    other = EntityBaselines(load_spec(SPEC), FingerprintConfig(enabled=True, values_per_entity=64))
    other.checkpoint(tmp_path / "b.npz", {f"{topics.events}:0": 5})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli_kafka",
            "run",
            "--config",
            str(write_config(config, tmp_path / "p.yml")),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secureai: error: fingerprint checkpoint"), lines
    assert "values_per_entity" in lines[0]


@pytest.mark.integration
def test_two_processes_cannot_share_one_checkpoint(
    kafka_broker: KafkaBroker, model_repository: Path, tmp_path: Path
) -> None:
    topics = make_topics(kafka_broker, partitions=1)
    config = fingerprint_config(
        pipeline_config(kafka_broker, topics, model_repository), tmp_path / "b-{instance}.npz"
    )
    first = Background(config)
    deadline = time.monotonic() + HANG_GUARD_S
    while not first.runner.checkpointer.locked:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pipeline, engine = build_pipeline(config)
    try:
        with pytest.raises(KafkaPipelineError, match="instance_id"):
            KafkaScoringRunner(config, pipeline).run()
    finally:
        engine.close()
    first.stop_when(lambda: True)


# --------------------------------------------------------------------------- the demo switch
def test_demo_config_turns_fingerprinting_on(model_repository: Path) -> None:
    config = load_config(REPO_ROOT / "configs" / "demo.yml", DemoConfig)
    assert config.fingerprint is not None and config.fingerprint.enabled
    doc = config.model_dump(mode="json")
    doc["training"]["data"]["train"]["synthetic"]["n_events"] = 3000
    small = DemoConfig.model_validate(doc)
    spec = load_spec(SPEC)
    featurizer = Featurizer(spec)
    engine = InProcessEngine(model_repository, spec.spec_hash, threads=1)
    try:
        baselines = demo_baselines(small, featurizer, engine)
        assert baselines is not None and len(baselines) > 100
        assert baselines.config.min_events == config.fingerprint.min_events
        off = DemoConfig.model_validate({**doc, "fingerprint": {"enabled": False}})
        assert demo_baselines(off, featurizer, engine) is None
        assert (
            demo_baselines(
                DemoConfig.model_validate({**doc, "fingerprint": None}), featurizer, engine
            )
            is None
        )
    finally:
        engine.close()


def test_demo_ends_with_the_top_alerts_and_their_reasons_in_words(
    model_repository: Path, tmp_path: Path
) -> None:
    """``secureai demo`` (committed model, a short stream) lists the top flagged records
    with the fingerprint's words, in the run directory and in its result."""
    from pipelines.demo import run_demo

    doc = load_config(REPO_ROOT / "configs" / "demo.yml", DemoConfig).model_dump(mode="json")
    doc["training"]["data"]["train"]["synthetic"]["n_events"] = 6000
    doc["training"]["runs_dir"] = str(tmp_path / "runs")
    doc["training"]["evaluation"]["baselines"] = False
    doc["stream"]["n_events"] = 6000
    doc["use_committed_models"] = True
    doc["committed_repository"] = str(model_repository)
    doc["fingerprint"]["min_events"] = 5
    result = run_demo(DemoConfig.model_validate(doc), progress=False)
    lines = (result.run_dir / "top_alerts.txt").read_text().strip().splitlines()
    assert lines == result.top_alerts.splitlines()
    assert "by combined score" in lines[0] and len(lines) == 2 + 10
    words = ("never seen for", "the median of", "usual hours of", "for the population", "rare for")
    words += ("occasional for", "usual for")
    assert all(any(w in line for w in words) for line in lines[2:]), lines
    # ... and, before them, the top incidents in words, with their metrics
    incidents = (result.run_dir / "top_incidents.txt").read_text().strip().splitlines()
    assert incidents == result.top_incidents.splitlines() and len(incidents) == 2 + 10
    assert all(any(w in line for w in words) for line in incidents[2:]), incidents
    m = result.metrics["incidents"]
    assert 0 < m["incidents"] < m["flagged_events"]
    assert m["attacks_in_incident"] > 0.8 and m["attacks_explained_top1"] > 0.5
    log = [orjson.loads(line) for line in (result.run_dir / "incidents.jsonl").open("rb")]
    assert len(latest_revisions(log)) == m["incidents"]
    assert all(r["status"] == "closed" for r in latest_revisions(log).values())
    page = (result.run_dir / "report.html").read_text(encoding="utf-8")  # the analyst section
    assert "Flagged on the combined score" in page and "No incidents given." not in page
    assert "Top incidents" in page
    assert "Model score and combined score" in page
    assert any(w in page.split("Top alerts")[1] for w in words)
