"""Serve the model repository with a real CPU Triton server until SIGTERM/SIGINT.

Why: local runs and demos need the same server the tests use, without Docker or a GPU. This is
a thin CLI over scripts/triton/triton_harness.py: it derives the CPU variant of the canonical
repository (unless --no-derive), starts tritonserver from the Triton venv (scripts/triton/
install.sh) bound to 127.0.0.1, prints the URLs once ready, and stops it cleanly on a signal.
In poll mode it also re-derives the CPU variant whenever the canonical repository changes, so
a newly published model version is served without a restart.

    python scripts/triton/serve.py --repository triton_model_repository
    python scripts/triton/serve.py --model-control-mode poll --poll-secs 1 --http-port 8000

Runs with any Python 3.11 (standard library only); exit code 0 after a clean stop, 1 if the
server failed to start or died, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from triton_harness import (  # after the path tweak above, by design
    MODEL_CONTROL_MODES,
    REPO_ROOT,
    TritonNotInstalled,
    TritonServer,
    TritonStartError,
)


def tree_fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector for the canonical repository: (path, size, mtime) of each file."""
    entries = []
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        stat = path.stat()
        entries.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repository",
        type=Path,
        default=REPO_ROOT / "triton_model_repository",
        help="canonical model repository (default: %(default)s)",
    )
    parser.add_argument("--http-port", type=int, help="default: a free port")
    parser.add_argument("--grpc-port", type=int, help="default: a free port")
    parser.add_argument("--metrics-port", type=int, help="default: a free port")
    parser.add_argument("--model-control-mode", choices=MODEL_CONTROL_MODES, default="none")
    parser.add_argument("--poll-secs", type=int, default=1, help="poll mode interval")
    parser.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="explicit mode: model to load at start (repeatable; '*' = all)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="readiness timeout, s")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "runs" / "triton",
        help="log and derived repository go here (default: %(default)s)",
    )
    parser.add_argument(
        "--cpu-variant-dir", type=Path, help="derived repository (default: WORKDIR/cpu_repository)"
    )
    parser.add_argument(
        "--no-derive", action="store_true", help="serve --repository as is (already CPU-ready)"
    )
    parser.add_argument("--log-verbose", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start, report, supervise, stop."""
    args = parse_args(argv)
    server = TritonServer(
        args.repository,
        args.workdir,
        args.model_control_mode,
        poll_secs=args.poll_secs,
        load_models=args.load_model,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        derive=not args.no_derive,
        cpu_variant_dir=args.cpu_variant_dir,
        log_verbose=args.log_verbose,
    )
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        server.start(timeout=args.timeout)
    except (TritonNotInstalled, TritonStartError, RuntimeError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        server.stop()
        return 1
    print(f"triton ready in {server.startup_secs:.1f} s (pid {server.pid})", flush=True)
    print(f"  http:    {server.http_url}", flush=True)
    print(f"  grpc:    {server.grpc_url}", flush=True)
    print(f"  metrics: {server.metrics_url}", flush=True)
    print(f"  serving: {server.model_repository}", flush=True)
    print(f"  log:     {server.log_path}", flush=True)
    print(f"  shm:     /dev/shm/{server.shm_prefix}*", flush=True)

    follow = args.model_control_mode == "poll" and not args.no_derive
    seen = tree_fingerprint(server.repository) if follow else ()
    code = 0
    while not stopping:
        time.sleep(min(args.poll_secs, 1) if follow else 0.5)
        if not server.is_alive():
            print(f"serve: tritonserver died; log tail:\n{server.log_tail()}", file=sys.stderr)
            code = 1
            break
        if follow:
            current = tree_fingerprint(server.repository)
            if current != seen:
                try:
                    server.derive()
                    seen = current
                    print("serve: canonical repository changed; CPU variant re-derived", flush=True)
                except RuntimeError as exc:  # keep serving the last good variant
                    print(f"serve: {exc}", file=sys.stderr, flush=True)
                    seen = current
    began = time.monotonic()
    exit_code = server.stop()
    print(f"triton stopped in {time.monotonic() - began:.1f} s (exit code {exit_code})", flush=True)
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
