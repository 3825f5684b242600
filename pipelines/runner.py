"""The in-process pipeline: source -> decode -> featurize -> infer -> score records -> sinks.

One batch at a time through :meth:`ScoringPipeline.process`, which the file/in-memory runner
below, the Kafka runner and the Morpheus stages all call — the stage logic has one home.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from morpheus_ext.featurizer import FeaturizedBatch, Featurizer
from morpheus_ext.inference.base import InferenceEngine
from morpheus_ext.records import build_records
from morpheus_ext.stages.input import RawBatch
from morpheus_ext.stages.output import dead_letter_record
from morpheus_ext.stages.preprocess import DEFAULT_MAX_EVENT_BYTES, decode_batch

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Everything one raw batch turned into; every input value is in exactly one of the lists."""

    records: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    featurized: FeaturizedBatch | None
    outputs: dict[str, np.ndarray]


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
    ) -> None:
        self.featurizer = featurizer
        self.engine = engine
        self.max_event_bytes = max_event_bytes

    def process(self, raw: RawBatch) -> BatchResult:
        decoded = decode_batch(raw, self.max_event_bytes)
        dead = [
            dead_letter_record(raw.values[r.position], raw.origins[r.position], r.reason, "decode")
            for r in decoded.rejects
        ]
        if len(decoded.frame) == 0:
            return BatchResult([], dead, None, {})
        featurized = self.featurizer.transform(decoded.frame)
        for r in featurized.rejects:
            pos = int(decoded.positions[r.position])
            dead.append(
                dead_letter_record(raw.values[pos], raw.origins[pos], r.reason, "featurize")
            )
        if len(featurized) == 0:
            return BatchResult([], dead, featurized, {})
        outputs = self.engine.infer(featurized.tensor)
        records = build_records(featurized, outputs, self.featurizer, self.engine.info)
        return BatchResult(records, dead, featurized, outputs)


def run_batches(
    pipeline: ScoringPipeline,
    source: Iterable[RawBatch],
    on_records: Callable[[list[dict[str, Any]]], None],
    on_dead_letters: Callable[[list[dict[str, Any]]], None],
    on_result: Callable[[BatchResult], None] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> RunStats:
    """Drive a finite source to the end, with a progress bar showing live events/s."""
    stats = RunStats()
    start = time.perf_counter()
    with tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        disable=not progress,
        desc="scoring",
        dynamic_ncols=True,
    ) as bar:
        for raw in source:
            result = pipeline.process(raw)
            on_records(result.records)
            on_dead_letters(result.dead_letters)
            if on_result is not None:
                on_result(result)
            stats.events_in += len(raw)
            stats.scored += len(result.records)
            stats.rejected += len(result.dead_letters)
            stats.anomalies += sum(1 for r in result.records if r["is_anomaly"])
            for d in result.dead_letters:
                key = d["reason"].split(":")[0]
                stats.rejects_by_reason[key] = stats.rejects_by_reason.get(key, 0) + 1
            bar.update(len(raw))
            elapsed = time.perf_counter() - start
            bar.set_postfix(
                ev_s=f"{stats.events_in / max(elapsed, 1e-9):,.0f}",
                anomalies=stats.anomalies,
                rejected=stats.rejected,
            )
    stats.seconds = time.perf_counter() - start
    log.info("scored %d events (%d rejected) in %.2fs", stats.scored, stats.rejected, stats.seconds)
    return stats
