"""Cost of the triage stages on `secureai run`: incidents and the leakage detector, on vs off.

    python benchmarks/bench_triage.py --out docs/benchmarks.md

The same measurement as ``bench_window.py`` and the Kafka throughput rows of ``bench_kafka.py``
(a fresh Tansu broker per run, the pipeline as its own process exactly as ``secureai run``, 1
process at-least-once, in-process engine; a backlog produced first, then drained; events/s from
the group's first to its last commit; pipeline CPU per event from /proc), for four variants run
in turn (each round starting one variant later), ``--repeats`` times each: off, incidents,
leakage (the demo's named fields), both.
Incidents add their topic to each batch's delivery and a checkpoint before the commits, at
the product's default pace (``checkpoint_interval_s`` 2 s; ``--checkpoint-interval`` to change
it). Until 2026-12-06 this ran at 0.25 s: commits then waited for the next checkpoint even at
the end of the backlog, so the default's last held commit read as lost throughput; an idle
input now commits at once, and a checkpoint (~28 ms for the ~1.4 MB state of this stream) every
0.25 s charged the stages ~10% of a core that the product does not spend.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_kafka import measure_throughput
from kafka_harness import IN_PROCESS, event_values
from report import ROOT, git_commit, machine_info, update_section

sys.path.insert(0, str(ROOT))
from scripts.kafka.broker import KafkaBroker

LEAKAGE = {"enabled": True, "fields": ["user_agent", "url", "message"]}
VARIANTS = ("off", "incidents", "leakage", "both")


def stages(variant: str, checkpoint: Path, interval_s: float | None = None) -> dict[str, Any]:
    """The pipeline config sections of one variant (``interval_s``: None = the default)."""
    incidents: dict[str, Any] = {
        "enabled": True,
        "site": "bench",
        "checkpoint_path": str(checkpoint),
    }
    if interval_s is not None:
        incidents["checkpoint_interval_s"] = interval_s
    return {
        "off": {},
        "incidents": {"incidents": incidents},
        "leakage": {"leakage": LEAKAGE},
        "both": {"incidents": incidents, "leakage": LEAKAGE},
    }[variant]


def paired_cost(rates: list[float], off: list[float]) -> float:
    """The median over rounds of ``1 - rate / off`` within each round (the rounds' variants
    run back to back, so a slow stretch of the VM hits both sides of a ratio).

    >>> round(paired_cost([90.0, 80.0, 95.0], [100.0, 100.0, 100.0]), 3)
    0.1
    """
    return statistics.median(1 - r / o for r, o in zip(rates, off, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="backlog per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument(
        "--checkpoint-interval", type=float, help="incidents.checkpoint_interval_s (default 2 s)"
    )
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    events = event_values(args.events, seed=5)
    workdir = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(args.repeats):
        # Each round starts with another variant: this VM's speed drifts within minutes, and a
        # fixed order would charge the drift to the variants that always run last.
        for variant in VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]:
            extra = stages(
                variant, workdir / f"incidents-{rep}-{variant}.json", args.checkpoint_interval
            )
            with KafkaBroker(workdir) as broker:
                rate, pipe_us, _ = measure_throughput(
                    broker, workdir, events, 1, False, IN_PROCESS, None, None, extra
                )
            rates[variant].append(rate)
            cpu[variant].append(pipe_us)
            print(f"{variant}, run {rep + 1}: {rate:,.0f} events/s, {pipe_us:.1f} µs/event")
    shutil.rmtree(workdir, ignore_errors=True)
    base = statistics.median(rates["off"])
    base_cpu = statistics.median(cpu["off"])
    load = f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    command = "python benchmarks/bench_triage.py " + " ".join(sys.argv[1:])
    lines = [
        "## Triage stages cost (`secureai run` with `incidents:` and `leakage:`)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- {args.events:,} events per run (2% attacks), 1 pipeline process, at-least-once, "
        "in-process engine (1 ORT thread), fresh broker per run, variants in turn, "
        f"{args.repeats} runs each; leakage scans the demo's fields {LEAKAGE['fields']}; "
        f"incidents checkpoint at most every {args.checkpoint_interval or 2:g} s; {load}.",
        "",
        "| stages | events/s (median) | runs | cost (events/s) | paired cost (median of "
        "rounds) | pipeline CPU µs/event (median) | CPU cost |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        rate, us = statistics.median(rates[v]), statistics.median(cpu[v])
        lines.append(
            f"| {v} | {rate:,.0f} | {', '.join(f'{r:,.0f}' for r in rates[v])} | "
            f"{1 - rate / base:.1%} | {paired_cost(rates[v], rates['off']):.1%} | {us:.1f} | "
            f"{us / base_cpu - 1:+.1%} |"
        )
    both = paired_cost(rates["both"], rates["off"])
    lines += [
        "",
        f"Incidents + leakage together cost {both:.1%} of events/s, the median over rounds of "
        "each round's own ratio to 'off' (target: <= 15%). This VM's throughput drifts between "
        "runs (see the runs column); a round runs the four variants back to back, so its ratio "
        "is the comparison the drift disturbs least.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        update_section(Path(args.out), "bench_triage", text.splitlines())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
