"""Cost of the training window on `secureai run`: events/s with and without ``training_window``.

    python benchmarks/bench_window.py --out docs/benchmarks.md

The same measurement as the Kafka throughput rows of ``bench_kafka.py`` (a fresh Tansu broker
per run, the pipeline as its own process exactly as ``secureai run``, 1 process at-least-once,
a backlog produced first then drained; events/s from the group's first to its last commit),
alternating runs without and with ``training_window:`` (Parquet partitions on the local disk,
written by the pipeline's background thread), ``--repeats`` of each. Reports medians, the cost
(1 - with / without) and what the window holds afterwards (rows, files, bytes per event).
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

import pyarrow.parquet as pq
from bench_kafka import measure_throughput
from kafka_harness import IN_PROCESS, event_values
from report import ROOT, git_commit, machine_info, update_section

sys.path.insert(0, str(ROOT))
from scripts.kafka.broker import KafkaBroker


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="backlog per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    events = event_values(args.events, seed=5)
    workdir = Path(tempfile.mkdtemp(prefix="bench-window-"))
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    held = {"rows": 0, "files": 0, "bytes": 0}
    for rep in range(args.repeats):
        for variant in ("without", "with"):
            window_dir = workdir / f"window-{rep}"
            window = (
                {"path": str(window_dir), "flush_interval_s": 5.0} if variant == "with" else None
            )
            with KafkaBroker(workdir) as broker:
                rate, pipe_us, _ = measure_throughput(
                    broker, workdir, events, 1, False, IN_PROCESS, None, window
                )
            rates[variant].append(rate)
            cpu[variant].append(pipe_us)
            print(f"{variant} window, run {rep + 1}: {rate:,.0f} events/s, {pipe_us:.1f} µs/event")
            if variant == "with":
                files = list(window_dir.glob("dt=*/hr=*/*.parquet"))
                held = {
                    "rows": sum(pq.read_metadata(f).num_rows for f in files),
                    "files": len(files),
                    "bytes": sum(f.stat().st_size for f in files),
                }
    shutil.rmtree(workdir, ignore_errors=True)
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    cost = 1 - with_ / without
    load = f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    command = "python benchmarks/bench_window.py " + " ".join(sys.argv[1:])
    per_event = held["bytes"] / max(held["rows"], 1)
    lines = [
        "## Training window cost (`secureai run` with `training_window:`)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- {args.events:,} events per run, 1 pipeline process, at-least-once, in-process "
        f"engine (1 ORT thread), fresh broker per run, runs alternating without/with, "
        f"{args.repeats} each; {load}.",
        "",
        "| training window | events/s (median) | runs | pipeline CPU µs/event (median) |",
        "|---|---:|---|---:|",
        f"| off | {without:,.0f} | {', '.join(f'{r:,.0f}' for r in rates['without'])} | "
        f"{statistics.median(cpu['without']):.1f} |",
        f"| on | {with_:,.0f} | {', '.join(f'{r:,.0f}' for r in rates['with'])} | "
        f"{statistics.median(cpu['with']):.1f} |",
        "",
        f"Cost: {cost:.1%} of events/s (budget: 10%). The last window held {held['rows']:,} "
        f"rows in {held['files']} Parquet files, {per_event:.0f} bytes per event (LZ4). This "
        "VM's throughput drifts by +-15% between runs (see the runs column): compare medians "
        "of interleaved runs, and the CPU per event.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        update_section(Path(args.out), "bench_window", text.splitlines())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
