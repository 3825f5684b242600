"""The leakage detector measured: precision/recall per type, false positives, cost.

    python benchmarks/bench_leakage.py                 # prints the Markdown section
    python benchmarks/bench_leakage.py --normal 1000000 --runs 5

1. Precision / recall per secret type on labelled synthetic events (``anomaly_kinds:
   [leakage]``: every planted secret has its type and field as ground truth). A finding is a
   true positive when its (type, field) is the planted one; any other finding of the type,
   on any event, is a false positive.
2. False positives per million *normal* events (``anomaly_rate: 0``, default generator), and
   on a set of look-alikes built here (UUIDs, digests, Luhn-invalid card-shaped numbers,
   order numbers, dates, benign URLs and user agents).
3. Cost: events/s of the file pipeline (``run_batches``: decode -> [leakage] -> featurize ->
   infer -> records -> JSON lines on disk), committed model, detector off vs on over the same
   normal events, runs interleaved, median of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from report import machine_info  # noqa: E402

from morpheus_ext.feature_spec import load_spec  # noqa: E402
from morpheus_ext.model_repository import DEFAULT_REPOSITORY  # noqa: E402
from morpheus_ext.pipeline import ScoringPipeline, run_batches  # noqa: E402
from morpheus_ext.stages.inference.inprocess import InProcessEngine  # noqa: E402
from morpheus_ext.stages.input.sources import file_source  # noqa: E402
from morpheus_ext.stages.output.files import JsonlSink  # noqa: E402
from morpheus_ext.stages.postprocess.leakage import (  # noqa: E402
    TYPE_NAMES,
    LeakageConfig,
    LeakageDetector,
)
from synthetic import SyntheticConfig, generate, write_events  # noqa: E402

BATCH = 4096
DETECTOR = LeakageDetector(LeakageConfig(enabled=True))


def _findings(frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(row, type, field) of every finding, scanning in pipeline-sized batches."""
    out = []
    events = frame.drop(columns=["leak_type", "leak_field", "leak_span"], errors="ignore")
    for lo in range(0, len(events), BATCH):
        scan = DETECTOR.scan(events.iloc[lo : lo + BATCH].reset_index(drop=True))
        for r, found in zip(scan.rows.tolist(), scan.findings, strict=True):
            out += [(lo + r, f.type, f.field) for f in found]
    return out


def quality(n_events: int, seed: int) -> tuple[str, int]:
    config = SyntheticConfig(
        n_events=n_events, anomaly_rate=0.05, seed=seed, anomaly_kinds=["leakage"]
    )
    frame = generate(config)
    truth = {
        (i, t, f)
        for i, (t, f) in enumerate(zip(frame["leak_type"], frame["leak_field"], strict=True))
        if t is not None
    }
    found = set(_findings(frame))
    rows = [
        "| type | planted | found | missed | false positives | precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in TYPE_NAMES:
        planted = {x for x in truth if x[1] == kind}
        got = {x for x in found if x[1] == kind}
        tp, fp = len(planted & got), len(got - planted)
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / len(planted) if planted else float("nan")
        rows.append(
            f"| {kind} | {len(planted)} | {tp} | {len(planted) - tp} | {fp} | "
            f"{prec:.4f} | {rec:.4f} |"
        )
    return "\n".join(rows), len(frame)


def _luhn_invalid(rng: np.random.Generator) -> str:
    from morpheus_ext.stages.postprocess.leakage import luhn_ok

    while True:
        digits = "4" + "".join(rng.choice(list("0123456789"), 15))
        if not luhn_ok(digits):
            return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def decoys(n: int, seed: int) -> list[str]:
    """Look-alikes that are not secrets."""
    rng = np.random.default_rng(seed)
    makers = [
        lambda: str(uuid.UUID(bytes=rng.bytes(16))),
        lambda: rng.bytes(20).hex(),  # a SHA-1 / commit id
        lambda: rng.bytes(32).hex(),  # a SHA-256
        lambda: _luhn_invalid(rng),
        lambda: f"order {rng.integers(10**15, 10**16)} shipped",
        lambda: f"ticket INC{rng.integers(10**6, 10**7)} opened 2026-11-{rng.integers(1, 29):02d}",
        lambda: f"https://wiki.corp.example/display/ENG/Page+{rng.integers(1000)}?version=3",
        lambda: f"https://portal.corp.example/login?user=u{rng.integers(9999):04d}&next=/home",
        lambda: f"call +1 555-{rng.integers(100, 999)}-{rng.integers(1000, 9999)}",
        lambda: f"Mozilla/5.0 (X11; Linux x86_64) Chrome/{rng.integers(100, 140)}.0.0.0",
        lambda: f"build 2026.11.{rng.integers(1, 30)}-{rng.bytes(4).hex()}",
        lambda: f"auth_method=password result=failure user=u{rng.integers(9999):04d}",
    ]
    return [makers[i % len(makers)]() for i in range(n)]


def false_positives(n_normal: int, n_decoys: int, seed: int) -> tuple[str, int]:
    start = time.perf_counter()
    frame = generate(SyntheticConfig(n_events=n_normal, anomaly_rate=0.0, seed=seed))
    normal = Counter(t for _, t, _ in _findings(frame))
    looks = decoys(n_decoys, seed)
    alike = Counter(t for _, t, _ in _findings(pd.DataFrame({"message": looks})))
    took = time.perf_counter() - start
    per_m = sum(normal.values()) / n_normal * 1e6
    lines = [
        f"- normal events (default generator, `anomaly_rate: 0`, seed {seed}): "
        f"n = {n_normal:,}, findings {sum(normal.values())} "
        f"({per_m:.1f} per million){' ' + str(dict(normal)) if normal else ''}",
        f"- look-alikes (UUIDs, hex digests, Luhn-invalid card-shaped numbers, order numbers, "
        f"ticket ids, benign URLs with query strings, phone numbers, user agents, build ids, "
        f"`auth_method=password`): n = {n_decoys:,}, findings {sum(alike.values())}"
        f"{' ' + str(dict(alike)) if alike else ''}",
        f"- ({took:.0f} s for generation and scanning)",
    ]
    return "\n".join(lines), n_normal


FIELDS = ["user_agent", "url", "message"]


def cost(n_events: int, runs: int, seed: int) -> str:
    spec = load_spec("security_events")
    engine = InProcessEngine(DEFAULT_REPOSITORY, spec.spec_hash)
    from morpheus_ext.stages.preprocess.featurizer import Featurizer

    with tempfile.TemporaryDirectory() as tmp:
        events = write_events(
            generate(SyntheticConfig(n_events=n_events, seed=seed)), Path(tmp) / "ev.jsonl"
        )

        def once(leakage: bool, fields: list[str] | None = None) -> float:
            config = LeakageConfig(enabled=True, fields=fields)
            detector = LeakageDetector(config) if leakage else None
            pipeline = ScoringPipeline(Featurizer(spec), engine, leakage=detector)
            with JsonlSink(Path(tmp) / "s.jsonl") as s, JsonlSink(Path(tmp) / "d.jsonl") as d:
                stats = run_batches(
                    pipeline, file_source(events, BATCH), s.write, d.write, progress=False
                )
            return stats.events_per_s

        once(False)  # warm-up (ONNX Runtime sessions, page cache)
        off: list[float] = []
        on: list[float] = []
        named: list[float] = []
        for _ in range(runs):
            off.append(once(False))
            on.append(once(True))
            named.append(once(True, FIELDS))
    m_off, m_on = statistics.median(off), statistics.median(on)
    m_named = statistics.median(named)
    return "\n".join(
        [
            "| detector | events/s (median) | runs |",
            "|---|---:|---|",
            f"| off | {m_off:,.0f} | {', '.join(f'{x:,.0f}' for x in off)} |",
            f"| on (every string field) | {m_on:,.0f} | {', '.join(f'{x:,.0f}' for x in on)} |",
            f"| on (`fields: {FIELDS}`) | {m_named:,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in named)} |",
            "",
            f"On/off: {m_on / m_off:.3f} (cost {100 * (1 - m_on / m_off):.1f}% of events/s) "
            f"scanning every string field; {m_named / m_off:.3f} "
            f"(cost {100 * (1 - m_named / m_off):.1f}%) with named fields; "
            f"{n_events:,} normal events per run, batch {BATCH}, {runs} interleaved runs each.",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", type=int, default=200_000, help="events, 5%% with a secret")
    ap.add_argument("--normal", type=int, default=1_000_000)
    ap.add_argument("--decoys", type=int, default=120_000)
    ap.add_argument("--cost-events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    table, n = quality(args.labelled, args.seed)
    fps, _ = false_positives(args.normal, args.decoys, args.seed + 1)
    speed = cost(args.cost_events, args.runs, args.seed + 2)
    print(
        f"Labelled: {n:,} events (5% carry one planted secret, types in turn), seed {args.seed}.\n"
    )
    print(table + "\n")
    print(fps + "\n")
    print(speed + "\n")
    print(f"Machine: {machine_info()}")


if __name__ == "__main__":
    main()
