"""Cost of per-entity baselines: throughput with/without, and memory for a million entities.

    python benchmarks/bench_fingerprint.py --out docs/benchmarks.md

1. Throughput (events/s, best of interleaved runs, committed model, synthetic events): featurize
   + infer, the same + baselines (score against the baselines, then learn the batch), and the
   end-to-end path every runner uses, ``ScoringPipeline.process`` (decode raw JSON -> featurize
   -> infer -> baselines -> score records) plus writing the records as JSON lines, with and
   without baselines over the same events. Per-step thread CPU time per batch says where the
   time goes. Baselines are warmed on a week of history first, so the numbers are the steady
   state.
2. Memory: one million distinct entities streamed through ``EntityBaselines`` (default
   config, ``max_entities`` = 1M): bytes of the arrays + index, and the process RSS growth;
   then 100k more entities, which must evict (LRU) and stay within the cap.

Writes a Markdown section between ``<!-- bench_fingerprint:begin/end -->`` markers.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import machine_info  # noqa: E402

from morpheus_ext.feature_spec import FeatureSpec, load_spec  # noqa: E402
from morpheus_ext.pipeline import ScoringPipeline  # noqa: E402
from morpheus_ext.stages.inference.inprocess import InProcessEngine  # noqa: E402
from morpheus_ext.stages.input.sources import RawBatch, frame_source  # noqa: E402
from morpheus_ext.stages.output.files import JsonlSink  # noqa: E402
from morpheus_ext.stages.postprocess.fingerprint import (  # noqa: E402
    EntityBaselines,
    FingerprintConfig,
)
from morpheus_ext.stages.postprocess.records import build_score_records  # noqa: E402
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, Featurizer  # noqa: E402
from synthetic import SyntheticConfig, generate  # noqa: E402

MARK_BEGIN = "<!-- bench_fingerprint:begin -->"
MARK_END = "<!-- bench_fingerprint:end -->"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def rate(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def throughput(
    spec: FeatureSpec, engine: InProcessEngine, batch_sizes: list[int], events: int, repeats: int
) -> list[list[float]]:
    featurizer = Featurizer(spec)
    warm = EntityBaselines(spec, FingerprintConfig(enabled=True))
    history = generate(SyntheticConfig(n_events=60_000, seed=0, days=7))
    for lo in range(0, len(history), 4096):
        fb = featurizer.transform(history.iloc[lo : lo + 4096])
        warm.observe(fb, engine.infer(fb.tensor))
    tmp = tempfile.TemporaryDirectory()
    checkpoint = warm.checkpoint(Path(tmp.name) / "warm.npz", {})
    frame = generate(
        SyntheticConfig(n_events=events, seed=1, population_seed=0, start="2026-11-08T00:00:00Z")
    )
    rows = []
    for bs in batch_sizes:
        chunks = [frame.iloc[i : i + bs] for i in range(0, len(frame), bs)]
        raws = list(frame_source(frame, bs))

        def fresh(explain: str = "alerts") -> EntityBaselines:
            b = EntityBaselines(spec, FingerprintConfig(enabled=True, explain=explain))  # type: ignore[arg-type]
            b.restore(checkpoint)
            return b

        def both(chunks: list[pd.DataFrame] = chunks) -> int:
            n = 0
            for c in chunks:
                n += len(engine.infer(featurizer.transform(c).tensor)["ANOMALY_SCORE"])
            return n

        def with_baselines(chunks: list[pd.DataFrame] = chunks) -> int:
            baselines, n = fresh(), 0
            for c in chunks:
                fb = featurizer.transform(c)
                out = engine.infer(fb.tensor)
                n += len(baselines.observe(fb, out, explain=False))
            return n

        def pipeline(raws: list[RawBatch] = raws, fingerprint: str | None = None) -> int:
            """The runners' path: ScoringPipeline.process, records written as JSON lines."""
            baselines = fresh(fingerprint) if fingerprint else None
            pipe = ScoringPipeline(featurizer, engine, baselines=baselines)
            with JsonlSink(Path(tmp.name) / "records.jsonl") as sink:
                for raw in raws:
                    sink.write(pipe.process(raw).records)
                return sink.count

        def pipeline_fp(raws: list[RawBatch] = raws) -> int:
            return pipeline(raws, "alerts")

        def pipeline_fp_all(raws: list[RawBatch] = raws) -> int:
            return pipeline(raws, "all")

        # interleave the variants so drifting machine load hits them alike
        runs: list[list[float]] = [[], [], [], [], []]
        both(), with_baselines(), pipeline(), pipeline_fp(), pipeline_fp_all()  # warm-up
        for _ in range(repeats):
            variants: list[Callable[[], int]] = [
                both,
                with_baselines,
                pipeline,
                pipeline_fp,
                pipeline_fp_all,
            ]
            for i, fn in enumerate(variants):
                runs[i].append(rate(fn))
        # best of the interleaved runs: the machine may be shared, the best run is the
        # least disturbed one (for every variant alike)
        row = [float(bs), *(max(x) for x in runs)]
        row += components(featurizer, engine, chunks, fresh, repeats)
        rows.append(row)
        print(
            f"batch {bs}: featurize+infer {row[1]:,.0f}/s  +baselines {row[2]:,.0f}/s "
            f"({1 - row[2] / row[1]:.1%} cost)  pipeline bytes->JSONL {row[3]:,.0f}/s  "
            f"with baselines {row[4]:,.0f}/s ({1 - row[4] / row[3]:.1%} cost), words for all "
            f"{row[5]:,.0f}/s ({1 - row[5] / row[3]:.1%}) | per batch: featurize {row[6]:.2f} "
            f"ms, infer {row[7]:.2f} ms, baselines {row[8]:.2f} ms "
            f"({row[8] / sum(row[6:9]):.1%}), reasons {row[9]:.2f} ms (words for all)",
            flush=True,
        )
    tmp.cleanup()
    return rows


def components(
    featurizer: Featurizer,
    engine: InProcessEngine,
    chunks: list[pd.DataFrame],
    fresh: Callable[[], EntityBaselines],
    repeats: int,
) -> list[float]:
    """Per-batch ms of each step, best of ``repeats``: featurize, baselines and reasons as
    thread CPU time (single-threaded, so other jobs on a shared machine barely move them),
    inference as wall time (ONNX Runtime uses every core)."""
    batches = [featurizer.transform(c) for c in chunks]
    outputs = [engine.infer(b.tensor) for b in batches]
    best = [float("inf")] * 4
    for _ in range(repeats):
        start = time.thread_time()
        for c in chunks:
            featurizer.transform(c)
        feat = time.thread_time() - start
        start = time.perf_counter()
        for b in batches:
            engine.infer(b.tensor)
        infer = time.perf_counter() - start
        baselines = fresh()
        start = time.thread_time()
        for b, o in zip(batches, outputs, strict=True):
            baselines.observe(b, o, explain=False)
        learn = time.thread_time() - start
        baselines = fresh("all")
        start = time.thread_time()
        for b, o in zip(batches, outputs, strict=True):
            fp = baselines.observe(b, o)
            build_score_records(b, o, featurizer, engine.info, fingerprint=fp).jsonl()
        explained = time.thread_time() - start
        start = time.thread_time()
        for b, o in zip(batches, outputs, strict=True):
            build_score_records(b, o, featurizer, engine.info).jsonl()
        plain = time.thread_time() - start
        for i, v in enumerate((feat, infer, learn, explained - learn - plain)):
            best[i] = min(best[i], v)
    return [v / len(chunks) * 1000 for v in best]


def _entity_batch(
    spec: FeatureSpec, lo: int, n: int, featurizer: Featurizer
) -> tuple[FeaturizedBatch, dict[str, np.ndarray]]:
    """n auth events of n new users (two devices, three countries, hours spread)."""
    idx = np.arange(lo, lo + n)
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in idx],
            "event_type": "auth",
            "timestamp": pd.to_datetime(1_793_000_000 + idx, unit="s", utc=True).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "user": [f"user{i:07d}" for i in idx],
            "country": np.array(["US", "DE", "IN"], dtype=object)[idx % 3],
            "device": np.array(["macbook", "iphone"], dtype=object)[idx % 2],
            "dst_app": np.array(["email", "vpn", "wiki", "git"], dtype=object)[idx % 4],
        }
    )
    batch = featurizer.transform(frame)
    m = len(batch)
    outputs = {
        "ANOMALY_SCORE": np.full((m, 1), 0.001, np.float32),
        "THRESHOLD": np.full((m, 1), 0.01, np.float32),
        "FIELD_Z": np.zeros((m, len(spec.layout.fields)), np.float32),
    }
    return batch, outputs


def memory(spec: FeatureSpec, entities: int, chunk: int = 50_000) -> dict[str, float]:
    featurizer = Featurizer(spec)
    config = FingerprintConfig(enabled=True, max_entities=entities)
    gc.collect()
    before = rss_bytes()
    baselines = EntityBaselines(spec, config)
    start = time.perf_counter()
    for lo in range(0, entities, chunk):
        baselines.observe(*_entity_batch(spec, lo, min(chunk, entities - lo), featurizer))
    fill_s = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    held = baselines.nbytes
    count = len(baselines)
    start = time.perf_counter()
    extra = entities // 10
    for lo in range(entities, entities + extra, chunk):
        baselines.observe(*_entity_batch(spec, lo, min(chunk, entities + extra - lo), featurizer))
    evict_s = time.perf_counter() - start
    out = {
        "entities": float(count),
        "bytes_per_entity": baselines.state.bytes_per_entity + 12.0,
        "state_mb": held / 2**20,
        "rss_growth_mb": (after - before) / 2**20,
        "fill_s": fill_s,
        "after_overflow": float(len(baselines)),
        "evicted": float(baselines.evicted),
        "overflow_s": evict_s,
        "nbytes_after_overflow_mb": baselines.nbytes / 2**20,
    }
    print(
        f"{count:,} entities: {held / 2**20:,.1f} MiB in arrays + index "
        f"({held / count:,.0f} B/entity), RSS +{out['rss_growth_mb']:,.1f} MiB, filled in "
        f"{fill_s:.1f}s; +{extra:,} more -> {len(baselines):,} kept, "
        f"{baselines.evicted:,} evicted, {baselines.nbytes / 2**20:,.1f} MiB",
        flush=True,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repository", default=str(ROOT / "triton_model_repository"))
    parser.add_argument("--events", type=int, default=65536)
    parser.add_argument("--batch-sizes", default="1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()

    spec = load_spec("security_events")
    engine = InProcessEngine(args.repository, spec.spec_hash)
    mem = memory(spec, args.entities)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = throughput(spec, engine, sizes, args.events, args.repeats) if args.repeats else []

    command = "python benchmarks/bench_fingerprint.py " + " ".join(sys.argv[1:])
    git = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        or "uncommitted"
    )
    lines = [
        MARK_BEGIN,
        "## Fingerprinting (per-entity baselines)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command.strip()}` (commit {git} + working tree, "
        f"{datetime.now(UTC):%Y-%m-%d})",
        f"- Throughput: {args.events} synthetic events, committed model, baselines warmed on a "
        "60k-event week and restored from a checkpoint before every run (steady state: most "
        f"entities known); best of {args.repeats} interleaved runs (shared machine); events/s. "
        "Cost = 1 - (with / without). Baselines = score against them + learn the batch "
        "(`observe(..., explain=False)`). Pipeline = `ScoringPipeline.process` (decode raw JSON "
        "-> featurize -> infer -> baselines -> score records, the path of every runner) + "
        "writing the records as JSON lines (`JsonlSink`), without and with baselines, same "
        "events; with baselines the records carry the fingerprint fields, and the flagged "
        "records (`explain: alerts`, the default) or all of them (`explain: all`) the reasons "
        "in words (ranking, the numbers behind them, texts).",
        "",
        "| batch | featurize + infer | + baselines (score + learn) | cost "
        "| pipeline: raw JSON -> JSONL records | + baselines (`explain: alerts`) | cost "
        "| + baselines (`explain: all`) | cost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {int(r[0])} | {r[1]:,.0f} | {r[2]:,.0f} | {1 - r[2] / r[1]:.1%} "
            f"| {r[3]:,.0f} | {r[4]:,.0f} | {1 - r[4] / r[3]:.1%} "
            f"| {r[5]:,.0f} | {1 - r[5] / r[3]:.1%} |"
            for r in rows
        ],
        "",
        "Per batch, best of the same runs (ms; featurize, baselines and reasons as thread CPU "
        "time, which other jobs on the machine barely move; inference as wall time). Cost = "
        "baselines / (featurize + infer + baselines); reasons = the extra of "
        "`observe(explain=True)` + records with fingerprint over records without, with words "
        "for every record (`explain: all`).",
        "",
        "| batch | featurize | infer | baselines | cost | reasons |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {int(r[0])} | {r[6]:.2f} | {r[7]:.2f} | {r[8]:.2f} "
            f"| {r[8] / (r[6] + r[7] + r[8]):.1%} | {r[9]:.2f} |"
            for r in rows
        ],
        "",
        f"- Memory: {int(mem['entities']):,} distinct entities (default config, "
        f"`max_entities` {int(mem['entities']):,}): **{mem['state_mb']:,.0f} MiB** of arrays + "
        f"index ({mem['bytes_per_entity']:.0f} B per entity), process RSS "
        f"+{mem['rss_growth_mb']:,.0f} MiB (the arrays, plus allocator slack of the last "
        f"doubling), filled in {mem['fill_s']:.1f} s. Streaming "
        f"{int(mem['entities']) // 10:,} more new entities evicted {int(mem['evicted']):,} "
        f"(LRU down to `evict_to` 95%) in {mem['overflow_s']:.1f} s and left "
        f"{int(mem['after_overflow']):,} entities in {mem['nbytes_after_overflow_mb']:,.0f} MiB.",
        MARK_END,
    ]
    if args.out:
        out = Path(args.out)
        text = out.read_text() if out.exists() else "# Benchmarks\n\n"
        section = "\n".join(lines)
        if MARK_BEGIN in text:
            head, rest = text.split(MARK_BEGIN, 1)
            text = head + section + rest.split(MARK_END, 1)[1]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
