"""The pipeline loop: source -> decode -> featurize -> infer -> score records -> sinks.

:class:`ScoringPipeline` holds the stage logic for one batch — :meth:`~ScoringPipeline.prepare`
(decode + featurize, CPU) and :meth:`~ScoringPipeline.finish` (records) around the engine — and
every runner (files, Kafka, the Morpheus stages) calls it, so the logic has one home.
:func:`run_batches` keeps one batch in inference while it prepares the next: with Triton the
featurizer and the server work at the same time.

Example:

>>> from morpheus_ext.feature_spec import load_spec
>>> from morpheus_ext.model_repository import DEFAULT_REPOSITORY
>>> from morpheus_ext.stages.inference.inprocess import InProcessEngine
>>> from morpheus_ext.stages.input.sources import Origin, RawBatch
>>> spec = load_spec("security_events")
>>> pipeline = ScoringPipeline(
...     Featurizer(spec), InProcessEngine(DEFAULT_REPOSITORY, spec.spec_hash))
>>> event = b'{"event_id": "e1", "event_type": "auth", "timestamp": "2026-11-01T08:00:00Z"}'
>>> result = pipeline.process(RawBatch([event, b"{"], [Origin("t", 0, 0), Origin("t", 0, 1)]))
>>> [r["event_id"] for r in result.records], [d["stage"] for d in result.dead_letters]
(['e1'], ['decode'])
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from morpheus_ext.prometheus_metrics import pipeline_metrics, reason_class
from morpheus_ext.stages.inference.base import InferenceEngine
from morpheus_ext.stages.input.sources import RawBatch
from morpheus_ext.stages.output.files import dead_letter_record
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines
from morpheus_ext.stages.postprocess.incidents import IncidentTracker
from morpheus_ext.stages.postprocess.leakage import LeakageDetector, LeakScan
from morpheus_ext.stages.postprocess.records import build_score_records, count_anomalies
from morpheus_ext.stages.preprocess.decode import DEFAULT_MAX_EVENT_BYTES, decode_batch
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, Featurizer

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Everything one raw batch turned into; every input value is in exactly one of the lists."""

    records: Sequence[dict[str, Any]]
    """A list, or column-wise :class:`~morpheus_ext.stages.postprocess.records.ScoreRecords`."""
    dead_letters: list[dict[str, Any]]
    featurized: FeaturizedBatch | None
    outputs: dict[str, np.ndarray]
    raw: RawBatch | None = None
    incidents: list[dict[str, Any]] = field(default_factory=list)
    """Incident records this batch opened, updated or closed (with the incident stage)."""

    def record_positions(self) -> np.ndarray:
        """For each score record, the position of its value in :attr:`raw` (the featurizer's
        positions index the decoded rows; values rejected at decode are not among them)."""
        if self.featurized is None or self.raw is None or len(self.records) == 0:
            return np.zeros(0, dtype=np.int64)
        n = len(self.raw)
        decode_rejected = [d for d in self.dead_letters if d.get("stage") == "decode"]
        if decode_rejected:
            where = {(o.source, o.partition, o.offset): i for i, o in enumerate(self.raw.origins)}
            drop = [where[(d["source"], d["partition"], d["offset"])] for d in decode_rejected]
            decoded = np.delete(np.arange(n), drop)
        else:
            decoded = np.arange(n)
        return np.asarray(decoded[self.featurized.positions])


@dataclass
class Prepared:
    """A decoded and featurized batch waiting for (or in) inference."""

    raw: RawBatch
    featurized: FeaturizedBatch | None
    dead_letters: list[dict[str, Any]]
    started: float
    leaks: LeakScan | None = None
    """What the leakage detector found in the decoded rows (their secrets masked)."""

    @property
    def has_rows(self) -> bool:
        return self.featurized is not None and len(self.featurized) > 0


@dataclass
class RunStats:
    events_in: int = 0
    scored: int = 0
    rejected: int = 0
    anomalies: int = 0
    seconds: float = 0.0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events_in / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: BatchResult) -> None:
        self.events_in += len(result.records) + len(result.dead_letters)
        self.scored += len(result.records)
        self.rejected += len(result.dead_letters)
        self.anomalies += count_anomalies(result.records)
        for d in result.dead_letters:
            key = reason_class(d["reason"])
            self.rejects_by_reason[key] = self.rejects_by_reason.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_in": self.events_in,
            "scored": self.scored,
            "rejected": self.rejected,
            "anomalies": self.anomalies,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())),
        }


class ScoringPipeline:
    """Decode, featurize, infer and build records for one batch."""

    def __init__(
        self,
        featurizer: Featurizer,
        engine: InferenceEngine,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        baselines: EntityBaselines | None = None,
        leakage: LeakageDetector | None = None,
        incidents: IncidentTracker | None = None,
    ) -> None:
        self.featurizer = featurizer
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.baselines = baselines
        """Per-entity baselines: score each batch against them, then learn it (fingerprinting)."""
        self.leakage = leakage
        """Secrets in event fields: masked right after decoding, reported in the records."""
        self.incidents = incidents
        """Flagged records grouped into incidents (after the records are built)."""
        self.metrics = pipeline_metrics()
        ts = featurizer.spec.timestamp
        self._text_columns = (ts,) if ts else ()
        """Decoded as text even when they look like times (records quote them as received)."""

    def prepare(self, raw: RawBatch) -> Prepared:
        started = time.perf_counter()
        decoded = decode_batch(raw, self.max_event_bytes, self._text_columns)
        dead = [self._dead_letter(raw, r.position, r.reason, "decode") for r in decoded.rejects]
        featurized = None
        leaks = None
        if len(decoded.frame):
            if self.leakage is not None:  # before anything else sees the values
                values = raw.values
                leaks = self.leakage.scan(decoded.frame, [values[p] for p in decoded.positions])
                decoded.frame = leaks.frame
                if len(leaks.rows):  # the batch's copy of the events too (training window)
                    raw = self._masked_raw(raw, decoded.positions, leaks)
            featurized = self.featurizer.transform(decoded.frame)
            for r in featurized.rejects:
                pos = int(decoded.positions[r.position])
                known = leaks.secrets_of(r.position) if leaks is not None else []
                dead.append(self._dead_letter(raw, pos, r.reason, "featurize", known))
        self.metrics.batch_latency.labels("prepare").observe(time.perf_counter() - started)
        self.metrics.events_in.inc(len(raw.values))
        return Prepared(raw, featurized, dead, started, leaks)

    def prepare_isolating(self, raw: RawBatch) -> Prepared:
        """:meth:`prepare`, except that an event making it *raise* (a bug, not bad input, which
        decode and the featurizer reject themselves) is found by bisection and dead-lettered,
        so one such event cannot stop a stream."""
        try:
            return self.prepare(raw)
        except Exception as exc:
            log.warning(
                "featurizing a batch raised %s; isolating the events that cause it",
                type(exc).__name__,
            )
        good: list[int] = []
        dead: list[dict[str, Any]] = []
        self._bisect(raw, list(range(len(raw))), good, dead)
        prepared = self.prepare(
            RawBatch([raw.values[i] for i in good], [raw.origins[i] for i in good])
        )
        prepared.dead_letters.extend(dead)
        return prepared

    def _bisect(
        self, raw: RawBatch, idx: list[int], good: list[int], dead: list[dict[str, Any]]
    ) -> None:
        try:
            self.prepare(RawBatch([raw.values[i] for i in idx], [raw.origins[i] for i in idx]))
        except Exception as exc:
            if len(idx) == 1:
                i = idx[0]
                reason = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
                dead.append(self._dead_letter(raw, i, reason, "featurize"))
                return
            half = len(idx) // 2
            self._bisect(raw, idx[:half], good, dead)
            self._bisect(raw, idx[half:], good, dead)
            return
        good.extend(idx)

    def _dead_letter(
        self,
        raw: RawBatch,
        i: int,
        reason: str,
        stage: str,
        known: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """The dead letter of ``raw``'s value ``i``; with the leakage detector, its copy of the
        event and the reason have their secrets masked (``known``: found in the decoded row)."""
        value = raw.values[i]
        if self.leakage is not None:
            value = self.leakage.mask_bytes(value, known or ())
            reason = self.leakage.mask_text(reason, known or ())
        return dead_letter_record(value, raw.origins[i], reason, stage)

    def _masked_raw(self, raw: RawBatch, positions: np.ndarray, leaks: LeakScan) -> RawBatch:
        """``raw`` with the events that carried secrets masked (same length, same origins):
        what the batch result hands on (e.g. the training window's copy on disk) must not
        hold them either."""
        assert self.leakage is not None
        values = list(raw.values)
        for row, known in zip(leaks.rows.tolist(), leaks.secrets, strict=True):
            p = int(positions[row])
            values[p] = self.leakage.mask_bytes(values[p], known)
        return RawBatch(values, raw.origins)

    def submit(self, prepared: Prepared) -> Future[dict[str, np.ndarray]] | None:
        if not prepared.has_rows:
            return None
        assert prepared.featurized is not None
        return self.engine.submit(prepared.featurized.tensor)

    def finish(
        self, prepared: Prepared, outputs: dict[str, np.ndarray] | None, learn: bool = True
    ) -> BatchResult:
        """Records for a scored batch; with baselines, score against them and (``learn``)
        fold the batch in (``learn=False``: events the baselines already hold, e.g. a replay)."""
        records: Sequence[dict[str, Any]] = []
        incidents: list[dict[str, Any]] = []
        if prepared.has_rows and outputs is not None:
            assert prepared.featurized is not None
            start = time.perf_counter()
            fingerprint = (
                self.baselines.observe(prepared.featurized, outputs, learn=learn)
                if self.baselines is not None
                else None
            )
            # column-wise (with or without baselines): sinks serialise without per-event dicts
            records = build_score_records(
                prepared.featurized,
                outputs,
                self.featurizer,
                self.engine.info,
                fingerprint=fingerprint,
                leakage=None
                if prepared.leaks is None
                else prepared.leaks.at(prepared.featurized.positions),
            )
            self.metrics.batch_latency.labels("records").observe(time.perf_counter() - start)
            if self.incidents is not None:
                start = time.perf_counter()
                opened = self.incidents.opened
                incidents = self.incidents.observe_batch(records, prepared.featurized)
                self.metrics.incidents_opened.inc(self.incidents.opened - opened)
                self.metrics.incidents_open.set(len(self.incidents))
                closed = Counter(r["severity"] for r in incidents if r["status"] == "closed")
                for severity, n in closed.items():  # (one labels() per severity, not per record)
                    self.metrics.incidents_closed.labels(severity).inc(n)
                self.metrics.batch_latency.labels("incidents").observe(time.perf_counter() - start)
            self.metrics.model_version.labels(self.engine.info.name).set(
                float(outputs["MODEL_VERSION"].reshape(-1)[-1])
            )
        result = BatchResult(
            records,
            prepared.dead_letters,
            prepared.featurized,
            outputs or {},
            prepared.raw,
            incidents,
        )
        self._count(result)
        self.metrics.batch_latency.labels("total").observe(time.perf_counter() - prepared.started)
        return result

    def process(self, raw: RawBatch) -> BatchResult:
        prepared = self.prepare(raw)
        future = self.submit(prepared)
        return self.finish(prepared, None if future is None else future.result())

    def _count(self, result: BatchResult) -> None:
        m = self.metrics
        m.events.labels("scored").inc(len(result.records))
        m.events.labels("rejected").inc(len(result.dead_letters))
        flagged = count_anomalies(result.records)
        if flagged:
            m.anomalies.inc(flagged)
        for d in result.dead_letters:
            m.dead_letters.labels(d["stage"], reason_class(d["reason"])).inc()


def run_batches(
    pipeline: ScoringPipeline,
    source: Iterable[RawBatch],
    on_records: Callable[[Sequence[dict[str, Any]]], None],
    on_dead_letters: Callable[[list[dict[str, Any]]], None],
    on_result: Callable[[BatchResult], None] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> RunStats:
    """Drive a finite source to the end, one batch in inference while the next is prepared."""
    stats = RunStats()
    start = time.perf_counter()
    with tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        disable=not progress,
        desc="scoring",
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # a log (CI) gets a line per 10 s
    ) as bar:

        def emit(prepared: Prepared, future: Future[dict[str, np.ndarray]] | None) -> None:
            result = pipeline.finish(prepared, None if future is None else future.result())
            on_records(result.records)
            on_dead_letters(result.dead_letters)
            if on_result is not None:
                on_result(result)
            stats.add(result)
            bar.update(len(prepared.raw))
            elapsed = time.perf_counter() - start
            bar.set_postfix(
                ev_s=f"{stats.events_in / max(elapsed, 1e-9):,.0f}",
                anomalies=stats.anomalies,
                rejected=stats.rejected,
            )

        pending: tuple[Prepared, Future[dict[str, np.ndarray]] | None] | None = None
        for raw in source:
            prepared = pipeline.prepare(raw)
            future = pipeline.submit(prepared)
            if pending is not None:
                emit(*pending)
            pending = (prepared, future)
        if pending is not None:
            emit(*pending)
    stats.seconds = time.perf_counter() - start
    log.info("scored %d events (%d rejected) in %.2fs", stats.scored, stats.rejected, stats.seconds)
    return stats
