"""Featurizer and in-process inference throughput (events/s), median of repeated runs.

    python benchmarks/bench_inprocess.py --out docs/benchmarks.md

Measures, per batch size: featurize only (DataFrame -> EVENT_TENSOR), infer only (ONNX Runtime
ensemble + postproc), featurize + infer, and the full in-process path from raw JSON bytes to
score records as the JSON lines the sinks write (the pipeline's column-wise records; until
2026-12-06 this column measured per-event dicts and a decode that fell back to orjson). Uses
the committed model repository and synthetic events; writes a Markdown section with machine
info and the exact command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from report import git_commit, machine_info, update_section

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.postprocess.records import build_score_records
from morpheus_ext.stages.preprocess.decode import decode_batch
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parent.parent
SECTION = "bench_inprocess"


def median_rate(fn: Callable[[], int], repeats: int) -> float:
    fn()  # warm-up (ORT allocations, pandas caches)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default=str(ROOT / "triton_model_repository"))
    parser.add_argument("--spec", default="security_events")
    parser.add_argument("--events", type=int, default=65536)
    parser.add_argument("--batch-sizes", default="1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()

    spec = load_spec(args.spec)
    featurizer = Featurizer(spec)
    # As ScoringPipeline decodes: the timestamp stays text (Arrow would infer a timestamp
    # column and send every batch down the slower per-value path).
    text = (spec.timestamp,) if spec.timestamp else ()
    engine = InProcessEngine(args.repository, spec.spec_hash)
    frame = generate(SyntheticConfig(n_events=args.events, seed=3))
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        chunks = [frame.iloc[i : i + bs] for i in range(0, len(frame), bs)]
        tensors = [np.asarray(featurizer.transform(c).tensor) for c in chunks]
        raws = list(frame_source(frame, bs))

        def featurize(chunks: list = chunks) -> int:  # type: ignore[type-arg]
            return sum(len(featurizer.transform(c)) for c in chunks)

        def infer(tensors: list[np.ndarray] = tensors) -> int:
            return sum(len(engine.infer(t)["ANOMALY_SCORE"]) for t in tensors)

        def both(chunks: list = chunks) -> int:  # type: ignore[type-arg]
            n = 0
            for c in chunks:
                n += len(engine.infer(featurizer.transform(c).tensor)["ANOMALY_SCORE"])
            return n

        def full(raws: list = raws) -> int:  # type: ignore[type-arg]
            n = 0
            for raw in raws:
                fb = featurizer.transform(decode_batch(raw, string_columns=text).frame)
                records = build_score_records(fb, engine.infer(fb.tensor), featurizer, engine.info)
                n += len(records.json_lines())  # the bytes the sinks write
            return n

        row = [bs] + [median_rate(f, args.repeats) for f in (featurize, infer, both, full)]
        rows.append(row)
        print(
            f"batch {bs}: featurize {row[1]:,.0f}/s  infer {row[2]:,.0f}/s  "
            f"featurize+infer {row[3]:,.0f}/s  bytes->records {row[4]:,.0f}/s",
            flush=True,
        )

    command = "python benchmarks/bench_inprocess.py " + " ".join(sys.argv[1:])
    lines = [
        "## In-process featurizer + inference (spine)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- Data: {args.events} synthetic events ({args.spec} spec, MLP autoencoder of the "
        f"committed repository); median of {args.repeats} runs after a warm-up; events/s.",
        "",
        "| batch | featurize | infer (ORT ensemble + postproc) | featurize + infer "
        "| raw JSON -> score records |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:,.0f} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:,.0f} |" for r in rows],
    ]
    if args.out:
        update_section(Path(args.out), SECTION, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
