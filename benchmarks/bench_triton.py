"""In-process vs Triton: rows/s and request latency (p50/p99) at several batch sizes.

    python benchmarks/bench_triton.py --out docs/benchmarks.md
    python benchmarks/bench_triton.py --shared-memory cuda --section bench_triton_gpu ...  # GPU

Starts a real CPU Triton server (scripts/triton harness) on the committed repository, then for
each batch size: sequential requests (latency per request: p50/p99) and a window of
``--in-flight`` concurrent requests (rows/s). Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "triton"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import triton_harness  # noqa: E402
from report import git_commit, machine_info, update_section  # noqa: E402

from morpheus_ext.feature_spec import load_spec  # noqa: E402
from morpheus_ext.stages.inference.base import InferenceEngine  # noqa: E402
from morpheus_ext.stages.inference.inprocess import InProcessEngine  # noqa: E402
from morpheus_ext.stages.inference.triton import TritonEngine  # noqa: E402
from morpheus_ext.stages.preprocess.featurizer import Featurizer  # noqa: E402
from synthetic import SyntheticConfig, generate  # noqa: E402

SECTION = "bench_triton"


def latency(engine: InferenceEngine, batch: np.ndarray, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        engine.infer(batch)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3


def throughput(engine: InferenceEngine, batch: np.ndarray, rows: int, window: int) -> float:
    n = max(1, rows // len(batch))
    pending: deque[Future[dict[str, np.ndarray]]] = deque()
    start = time.perf_counter()
    for _ in range(n):
        pending.append(engine.submit(batch))
        if len(pending) >= window:
            pending.popleft().result()
    while pending:
        pending.popleft().result()
    return n * len(batch) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="256,1024,4096")
    parser.add_argument("--rows", type=int, default=200_000, help="rows per throughput run")
    parser.add_argument("--requests", type=int, default=60, help="requests per latency run")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--shared-memory",
        choices=["none", "cuda"],
        default="none",
        help="cuda: also measure Triton gRPC with inputs/outputs in CUDA shared memory (GPU)",
    )
    parser.add_argument("--section", default=SECTION, help="docs section to (re)write")
    parser.add_argument("--out")
    args = parser.parse_args()

    spec = load_spec("security_events")
    tensor = np.asarray(
        Featurizer(spec).transform(generate(SyntheticConfig(n_events=8192, seed=3))).tensor
    )
    repo = ROOT / "triton_model_repository"
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        triton_harness.TritonServer(repo, Path(tmp)) as server,
    ):
        engines: dict[str, InferenceEngine] = {
            "in-process (ORT)": InProcessEngine(repo, spec.spec_hash),
            "Triton gRPC": TritonEngine(
                server.grpc_url, spec.spec_hash, max_in_flight=args.in_flight
            ),
            "Triton HTTP": TritonEngine(
                server.http_address, spec.spec_hash, protocol="http", max_in_flight=args.in_flight
            ),
        }
        if args.shared_memory == "cuda":
            engines["Triton gRPC + CUDA shm"] = TritonEngine(
                server.grpc_url,
                spec.spec_hash,
                max_in_flight=args.in_flight,
                shared_memory="cuda",
            )
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            batch = tensor[:bs]
            for name, engine in engines.items():
                engine.infer(batch)  # warm-up
                p50, p99 = latency(engine, batch, args.requests)
                rate = statistics.median(
                    throughput(engine, batch, args.rows, args.in_flight)
                    for _ in range(args.repeats)
                )
                rows.append((bs, name, rate, p50, p99))
                print(
                    f"batch {bs:5d} {name:18s} {rate:>10,.0f} rows/s  p50 {p50:6.2f} ms  "
                    f"p99 {p99:6.2f} ms",
                    flush=True,
                )
        for engine in engines.values():
            engine.close()

    lines = [
        "## In-process vs Triton (dfp_ensemble)",
        "",
        f"- Machine: {machine_info()}; Triton 2.51 (python-backend ONNX runner on CPU, "
        f"scripts/triton), client and server on the same {os.cpu_count()} cores.",
        f"- Command: `python benchmarks/bench_triton.py {' '.join(sys.argv[1:])}` "
        f"(commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d}).",
        f"- rows/s: median of {args.repeats} runs of {args.rows} rows with {args.in_flight} "
        f"requests in flight; latency: {args.requests} sequential requests.",
        "",
        "| batch | engine | rows/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|",
        *[f"| {b} | {n} | {r:,.0f} | {p50:.2f} | {p99:.2f} |" for b, n, r, p50, p99 in rows],
    ]
    if args.out:
        update_section(Path(args.out), args.section, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
