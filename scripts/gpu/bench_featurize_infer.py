"""Featurize + infer on a GPU vs the CPU path: events/s and parity, as one JSON file.

    python scripts/gpu/bench_featurize_infer.py --out $OUT/gpu.json

On a lent GPU machine (see docs/benchmarks.md, "GPU featurize + infer"): synthetic events (the
repo's generator) are featurized with the numeric core on CuPy (``Featurizer.transform(frame,
xp=cupy)``: parsing and hashing on the host, the 256-wide tensor assembled on the GPU) and scored
by :class:`~morpheus_ext.stages.inference.device.DeviceEngine` (ORT's CUDA provider, else torch);
the same events go through the CPU path (NumPy core + in-process ORT) for reference. It checks
parity (EVENT_TENSOR max abs difference <= 1e-6, ANOMALY_SCORE <= 1e-5) and measures events/s of
featurize, infer and both, per batch size, as the median of ``--repeats`` runs after a warm-up.

Where there is no GPU (or with ``--device cpu``) both sides are the CPU path, so the script, its
JSON and its parity check are exercised by ``make test`` on any machine. Exit status: 0 when
parity holds, 1 when it does not (the JSON is written either way), 2 for ``--device cuda``
without a usable GPU.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a file from a copy of the repo (a device machine)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pandas as pd  # noqa: E402

from morpheus_ext.feature_spec import load_spec  # noqa: E402
from morpheus_ext.markdown_sections import cpu_model, update_section  # noqa: E402
from morpheus_ext.stages.inference.device import (  # noqa: E402
    DeviceEngine,
    DevicePlan,
    DeviceUnavailable,
    select_device,
)
from morpheus_ext.stages.inference.inprocess import InProcessEngine  # noqa: E402
from morpheus_ext.stages.preprocess.featurizer import Featurizer  # noqa: E402
from synthetic import SyntheticConfig, generate  # noqa: E402

SECTION = "bench_gpu_featurize_infer"
TENSOR_TOLERANCE = 1e-6
SCORE_TOLERANCE = 1e-5


def package_version(*names: str) -> str | None:
    """Installed version of the first distribution found (no import: torch takes seconds)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def gpu_name() -> str | None:
    """nvidia-smi's name and driver of GPU 0, or None where it is absent."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, _, driver = out.splitlines()[0].partition(",")
    return f"{name.strip()} (driver {driver.strip()})"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, GPU and the versions that decide the path."""
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": list(ort.get_available_providers()),
        "cupy": package_version("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x"),
        "torch": package_version("torch"),
        "os": f"{platform.system()} {platform.release()}",
    }


def git_commit() -> str:
    """Short HEAD; $SECUREAI_COMMIT where the tree is a copy without .git (a device machine)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        out = ""
    return out or os.environ.get("SECUREAI_COMMIT", "uncommitted")


def synchronizer(xp: Any) -> Callable[[], None]:
    """Waits for queued GPU work (CuPy launches are asynchronous): timings end when it is done."""
    if xp is np:
        return lambda: None
    return lambda: xp.cuda.get_current_stream().synchronize()


def median_rate(fn: Callable[[], int], repeats: int) -> float:
    """events/s: the median of ``repeats`` timed runs after one warm-up (kernel compiles,
    allocator pools, ORT's first-run allocations)."""
    fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def parity(
    featurizer: Featurizer,
    xp: Any,
    device: DeviceEngine,
    cpu: InProcessEngine,
    chunks: list[pd.DataFrame],
) -> dict[str, Any]:
    """Max differences between the device path and the CPU path over every event."""
    tensor_diff = score_diff = score_rel = field_z_diff = 0.0
    nan_mismatch = flag_mismatch = rows = 0
    worst: dict[str, Any] = {}
    for chunk in chunks:
        ref = np.asarray(featurizer.transform(chunk).tensor)
        dev_tensor = featurizer.transform(chunk, xp=xp).tensor
        got = dev_tensor.get() if hasattr(dev_tensor, "get") else np.asarray(dev_tensor)
        missing = np.isnan(ref)  # a missing optional number is NaN on both sides
        nan_mismatch += int((missing != np.isnan(got)).sum())
        both = ~missing & ~np.isnan(got)
        if both.any():
            tensor_diff = max(tensor_diff, float(np.abs(ref[both] - got[both]).max()))
        a, b = cpu.infer(ref), device.infer(dev_tensor)
        sa, sb = a["ANOMALY_SCORE"].astype(np.float64), b["ANOMALY_SCORE"].astype(np.float64)
        if len(sa) and float(np.abs(sa - sb).max()) > score_diff:
            at = int(np.abs(sa - sb).argmax())  # the worst event, to look at if parity fails
            score_diff = float(abs(sa[at, 0] - sb[at, 0]))
            worst = {"event": rows + at, "cpu": float(sa[at, 0]), "device": float(sb[at, 0])}
        rel = np.abs(sa - sb) / np.maximum(np.abs(sa), np.finfo(np.float32).tiny)
        score_rel = max(score_rel, float(rel.max(initial=0.0)))
        fz = np.abs(a["FIELD_Z"].astype(np.float64) - b["FIELD_Z"].astype(np.float64))
        field_z_diff = max(field_z_diff, float(fz.max(initial=0.0)))
        flag_mismatch += int((a["IS_ANOMALY"] != b["IS_ANOMALY"]).sum())
        rows += len(ref)
    tensor_ok = tensor_diff <= TENSOR_TOLERANCE and nan_mismatch == 0
    score_ok = score_diff <= SCORE_TOLERANCE
    return {
        "rows": rows,
        "tensor_max_abs_diff": tensor_diff,
        "tensor_nan_mismatches": nan_mismatch,
        "score_max_abs_diff": score_diff,
        "score_max_rel_diff": score_rel,
        "score_worst": worst,
        "field_z_max_abs_diff": field_z_diff,
        "is_anomaly_mismatches": flag_mismatch,
        "tensor_tolerance": TENSOR_TOLERANCE,
        "score_tolerance": SCORE_TOLERANCE,
        "tensor_ok": tensor_ok,
        "score_ok": score_ok,
        "ok": tensor_ok and score_ok,
    }


def measure(
    featurizer: Featurizer,
    xp: Any,
    engine: DeviceEngine | InProcessEngine,
    chunks: list[pd.DataFrame],
    repeats: int,
) -> dict[str, float]:
    """events/s of featurize (to a tensor on ``xp``), infer (on ready tensors) and both."""
    sync = synchronizer(xp)
    tensors = [featurizer.transform(c, xp=xp).tensor for c in chunks]
    sync()

    def featurize() -> int:
        n = sum(len(featurizer.transform(c, xp=xp)) for c in chunks)
        sync()
        return n

    def infer() -> int:
        return sum(len(engine.infer(t)["ANOMALY_SCORE"]) for t in tensors)

    def both() -> int:
        return sum(
            len(engine.infer(featurizer.transform(c, xp=xp).tensor)["ANOMALY_SCORE"])
            for c in chunks
        )

    return {
        "featurize": median_rate(featurize, repeats),
        "infer": median_rate(infer, repeats),
        "featurize_infer": median_rate(both, repeats),
    }


def markdown(report: dict[str, Any]) -> list[str]:
    """The docs/benchmarks.md section for this run."""
    m, p, plan = report["machine"], report["parity"], report["plan"]
    lines = [
        "## GPU featurize + infer",
        "",
        f"- Machine: {m['cpu']}, {m['cpu_cores']} logical cores, GPU: {m['gpu'] or 'none'}, "
        f"Python {m['python']}, CuPy {m['cupy']}, torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, {m['os']}",
        f"- Command: `{report['command']}` (commit {report['commit']}, {report['date']})",
        f"- Device path: featurizer core on {plan['xp']}, inference {plan['engine']} "
        f"({plan['why']}); CPU path: NumPy core + in-process ORT.",
        f"- Data: {report['events']} synthetic events ({report['spec']} spec); median of "
        f"{report['repeats']} runs after a warm-up; events/s.",
        f"- Parity over {p['rows']} events: EVENT_TENSOR max abs diff "
        f"{p['tensor_max_abs_diff']:.2e} (NaN mismatches {p['tensor_nan_mismatches']}), "
        f"ANOMALY_SCORE max abs diff {p['score_max_abs_diff']:.2e} "
        f"(relative {p['score_max_rel_diff']:.2e}), FIELD_Z {p['field_z_max_abs_diff']:.2e}, "
        f"IS_ANOMALY mismatches {p['is_anomaly_mismatches']}: "
        f"{'within' if p['ok'] else 'OUTSIDE'} the 1e-6 / 1e-5 bounds.",
        "",
        "| batch | path | featurize | infer | featurize + infer |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in report["rows"]:
        for path in ("device", "cpu"):
            r = row[path]
            lines.append(
                f"| {row['batch']} | {path} | {r['featurize']:,.0f} | {r['infer']:,.0f} "
                f"| {r['featurize_infer']:,.0f} |"
            )
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the report written as JSON."""
    plan: DevicePlan = select_device(args.device)
    xp = plan.array_module()
    spec = load_spec(args.spec)
    featurizer = Featurizer(spec)
    engines = [args.engine] if args.engine != "auto" else None
    device = DeviceEngine(args.repository, spec.spec_hash, plan, engines=engines)
    cpu = InProcessEngine(args.repository, spec.spec_hash)
    frame = generate(SyntheticConfig(n_events=args.events, seed=args.seed))
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    largest = min(max(sizes), len(frame))
    report: dict[str, Any] = {
        "command": "python scripts/gpu/bench_featurize_infer.py " + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "machine": machine_info(),
        "plan": {
            "requested": args.device,
            "xp": plan.xp,
            "engine": device.kind,
            "candidates": list(plan.engines),
            "why": plan.why,
        },
        "spec": args.spec,
        "events": len(frame),
        "repeats": args.repeats,
    }
    print(f"machine: {report['machine']}", flush=True)
    print(f"device path: core on {plan.xp}, engine {device.kind} ({plan.why})", flush=True)
    chunks = [frame.iloc[i : i + largest] for i in range(0, len(frame), largest)]
    report["parity"] = parity(featurizer, xp, device, cpu, chunks)
    print(f"parity: {report['parity']}", flush=True)
    rows = []
    for bs in sizes:
        chunks = [frame.iloc[i : i + bs] for i in range(0, len(frame), bs)]
        row: dict[str, Any] = {
            "batch": bs,
            "device": measure(featurizer, xp, device, chunks, args.repeats),
            "cpu": measure(featurizer, np, cpu, chunks, args.repeats),
        }
        rows.append(row)
        for path in ("device", "cpu"):
            r = row[path]
            print(
                f"batch {bs} {path}: featurize {r['featurize']:,.0f}/s  infer {r['infer']:,.0f}/s"
                f"  featurize+infer {r['featurize_infer']:,.0f}/s",
                flush=True,
            )
    report["rows"] = rows
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--engine",
        choices=["auto", "ort-cuda", "torch-cuda", "ort-cpu", "torch-cpu"],
        default="auto",
        help="force one inference engine of the device path (default: the first that loads)",
    )
    parser.add_argument("--repository", default=str(ROOT / "triton_model_repository"))
    parser.add_argument("--spec", default="security_events")
    parser.add_argument("--events", type=int, default=65536)
    parser.add_argument("--batch-sizes", default="4096,65536")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", help="JSON report to write")
    parser.add_argument("--markdown", help="Markdown file whose section to write/replace")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except DeviceUnavailable as exc:
        print(f"bench_featurize_infer: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        update_section(Path(args.markdown), SECTION, markdown(report))
    return 0 if report["parity"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
