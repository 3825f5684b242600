"""Per-event CPU budget of the scoring path, stage by stage (issue #20: profile first).

    python benchmarks/bench_stages.py --out docs/benchmarks.md

Runs the stages of :class:`morpheus_ext.pipeline.ScoringPipeline` one after the other on
synthetic events serialised as they arrive (JSON lines), one thread, and charges each stage the
CPU time (``time.process_time``) it used: decode (Arrow JSON -> DataFrame), featurize (->
EVENT_TENSOR), infer (ONNX Runtime ensemble + postproc), entity baselines (score + explain +
learn, when on), records (column-wise score records with reasons) and JSON lines (what the
sinks write). Median of ``--repeats`` passes over the events, after a warm-up pass. Kafka's own
costs (consume, produce, commit, broker) are measured end to end by bench_kafka.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from report import git_commit, machine_info, update_section

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import RawBatch, frame_source
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
from morpheus_ext.stages.postprocess.records import build_score_records
from morpheus_ext.stages.preprocess.decode import decode_batch
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parent.parent
SECTION = "bench_stages"
STAGES = ("decode", "featurize", "infer", "baselines", "records", "json lines")


def one_pass(
    raws: list[RawBatch],
    featurizer: Featurizer,
    engine: InProcessEngine,
    baselines: EntityBaselines | None,
) -> dict[str, float]:
    """CPU seconds per stage for one pass over ``raws``."""
    spent = dict.fromkeys(STAGES, 0.0)
    text = (featurizer.spec.timestamp,) if featurizer.spec.timestamp else ()

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        start = time.process_time()
        out = fn()
        spent[stage] += time.process_time() - start
        return out

    for raw in raws:
        decoded = timed("decode", lambda raw=raw: decode_batch(raw, string_columns=text))
        batch = timed("featurize", lambda d=decoded: featurizer.transform(d.frame))
        outputs = timed("infer", lambda b=batch: engine.infer(b.tensor))
        fingerprint = (
            timed("baselines", lambda b=batch, o=outputs: baselines.observe(b, o))
            if baselines is not None
            else None
        )
        records = timed(
            "records",
            lambda b=batch, o=outputs, f=fingerprint: build_score_records(
                b, o, featurizer, engine.info, fingerprint=f
            ),
        )
        timed("json lines", records.json_lines)
    return spent


def measure(raws: list[RawBatch], n: int, repeats: int, with_baselines: bool) -> dict[str, float]:
    """Median microseconds of CPU per event, per stage."""
    spec = load_spec("security_events")
    featurizer = Featurizer(spec)
    engine = InProcessEngine(str(ROOT / "triton_model_repository"), spec.spec_hash)
    passes = []
    for i in range(repeats + 1):
        # Fresh baselines each pass: every pass sees the same stream from the same state.
        baselines = (
            EntityBaselines(spec, FingerprintConfig(enabled=True)) if with_baselines else None
        )
        spent = one_pass(raws, featurizer, engine, baselines)
        if i:  # the first pass warms up ORT and the caches
            passes.append(spent)
    return {s: statistics.median(p[s] for p in passes) / n * 1e6 for s in STAGES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=65536)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    frame = generate(SyntheticConfig(n_events=args.events, seed=3))
    raws = list(frame_source(frame, args.batch))
    rows = {}
    for name, with_baselines in (("spine", False), ("with entity baselines", True)):
        rows[name] = measure(raws, len(frame), args.repeats, with_baselines)
        total = sum(rows[name].values())
        print(
            f"{name}: "
            + "  ".join(f"{s} {us:.2f}" for s, us in rows[name].items())
            + f"  total {total:.2f} us/event ({1e6 / total:,.0f} events/s on one core)",
            flush=True,
        )
    command = "python benchmarks/bench_stages.py " + " ".join(sys.argv[1:])
    head = " | ".join(STAGES)
    lines = [
        "## CPU per event by stage (scoring path, one thread)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- Data: {args.events} synthetic events as JSON lines, batch {args.batch}; CPU time "
        f"(`process_time`) charged per stage, median of {args.repeats} passes after a warm-up. "
        "Kafka consume/produce/commit and the broker: bench_kafka.py (end to end).",
        "",
        f"| path | {head} | total µs/event | events/s on one core |",
        "|---|" + "---:|" * (len(STAGES) + 2),
    ]
    for name, stages in rows.items():
        total = sum(stages.values())
        cells = " | ".join(f"{stages[s]:.2f}" if stages[s] else "-" for s in STAGES)
        lines.append(f"| {name} | {cells} | {total:.2f} | {1e6 / total:,.0f} |")
    if args.out:
        update_section(Path(args.out), SECTION, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
