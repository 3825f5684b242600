"""Where the incidents stage's CPU goes, in one process: ``ScoringPipeline`` with and without
the incident tracker on the same events, and the cyclic garbage collector's share.

    python benchmarks/bench_incident_cost.py --events 200000 --pairs 3

bench_triage.py measures the stage's cost on ``secureai run`` end to end (Kafka, checkpoint,
delivery); this isolates the scoring process's part of it. Each pair runs the two variants
back to back (the order alternating), timing process CPU per event and, through
``gc.callbacks``, the time spent in cyclic collections. A fresh tracker per run, objects alive
after start-up frozen (as ``runner.freeze_startup_objects``), batch 4096, the score records'
and incident records' Kafka message bytes built as the sinks build them. Prints one line per
run and the medians; records nothing (docs/benchmarks.md quotes its output with the command).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from kafka_harness import event_values
from report import ROOT

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import RawBatch
from morpheus_ext.stages.output.kafka_sink import incident_messages, score_messages
from morpheus_ext.stages.postprocess.incidents import IncidentConfig, IncidentTracker
from morpheus_ext.stages.preprocess.featurizer import Featurizer

BATCH = 4096


class GcClock:
    """CPU seconds spent in cyclic collections (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=3, help="runs of each variant")
    args = parser.parse_args()
    events = [value for _, value in event_values(args.events, seed=5)]  # bench_triage's stream
    spec = load_spec("security_events")
    engine = InProcessEngine(ROOT / "triton_model_repository", spec.spec_hash, threads=1)
    batches = [
        RawBatch(events[i : i + BATCH], [None] * len(events[i : i + BATCH]))  # type: ignore[list-item]
        for i in range(0, len(events), BATCH)
    ]
    clock = GcClock()

    def run(incidents: bool) -> tuple[float, float]:
        tracker = IncidentTracker(IncidentConfig(enabled=True, site="bench")) if incidents else None
        pipeline = ScoringPipeline(Featurizer(spec), engine, incidents=tracker)
        gc_before, start = clock.seconds, time.process_time()
        for batch in batches:
            result = pipeline.process(batch)
            score_messages(result.records)
            incident_messages(result.incidents)
        if tracker is not None:
            tracker.encoded_state()  # one checkpoint's serialisation
        per_event = 1e6 / len(events)
        return (time.process_time() - start) * per_event, (clock.seconds - gc_before) * per_event

    gc.collect()
    gc.freeze()
    run(False)  # warm-up (ORT allocations, pandas caches)
    cpu: dict[bool, list[float]] = {False: [], True: []}
    gcs: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.pairs):
        for incidents in (False, True) if i % 2 == 0 else (True, False):
            us, gc_us = run(incidents)
            cpu[incidents].append(us)
            gcs[incidents].append(gc_us)
            label = "incidents" if incidents else "off"
            print(f"{label}: {us:.2f} µs/event CPU, of it {gc_us:.2f} in cyclic GC", flush=True)
    off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
    gc_off, gc_on = statistics.median(gcs[False]), statistics.median(gcs[True])
    print(
        f"median: off {off:.2f}, incidents {on:.2f} µs/event "
        f"(+{on - off:.2f}, {on / off - 1:+.1%}); "
        f"cyclic GC off {gc_off:.2f}, incidents {gc_on:.2f} µs/event"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
