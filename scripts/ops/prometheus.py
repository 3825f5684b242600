"""Run a real Prometheus (Debian's ``prometheus`` package) as a plain process on 127.0.0.1.

Used by the dashboard test and for watching a local run without Docker::

    python scripts/ops/prometheus.py --target pipeline=127.0.0.1:9108 --target api=127.0.0.1:8080

then open http://127.0.0.1:9090 (or point a Grafana at it). Install with
``scripts/ops/install_prometheus.sh``. Plain standard library, like ``scripts/kafka/broker.py``.

Measured (docs/operations.md): ready in ~0.1 s; the first scrape lands ~5-6 s after start even
with a 1 s interval; ``rate()`` needs two samples of a series inside its window.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

HOST = "127.0.0.1"
INSTALL_SCRIPT = "scripts/ops/install_prometheus.sh"


class PrometheusNotInstalled(RuntimeError):
    """No ``prometheus`` binary; the message says how to install it."""


class PrometheusError(RuntimeError):
    """Prometheus exited, did not get ready, or a query failed; carries the log tail."""


def prometheus_binary() -> str:
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not found:
        raise PrometheusNotInstalled(
            f"prometheus is not installed: run {INSTALL_SCRIPT} (apt-get install prometheus)"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def scrape_config_yaml(
    jobs: dict[str, list[str]], interval: str = "1s", rule_files: list[str] | None = None
) -> str:
    """A minimal prometheus.yml (JSON is valid YAML, so no YAML library is needed)."""
    doc: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ],
    }
    if rule_files:
        doc["rule_files"] = rule_files
    return json.dumps(doc, indent=2)


class PrometheusServer:
    """One Prometheus process scraping ``jobs`` (job name -> ``host:port`` targets)."""

    def __init__(
        self,
        workdir: Path,
        jobs: dict[str, list[str]],
        *,
        port: int | None = None,
        interval: str = "1s",
        rule_files: list[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.jobs = jobs
        self.port = port or free_port()
        self.interval = interval
        self.rule_files = rule_files
        self.log_path = self.workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(scrape_config_yaml(self.jobs, self.interval, self.rule_files))
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise PrometheusError(f"prometheus exited at start: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; returns ``data`` or raises with Prometheus' error text."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (an empty list means "no data")."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets_up(self) -> dict[str, bool]:
        """``job -> every target of the job has been scraped successfully``."""
        up: dict[str, bool] = {}
        for t in self.api("targets")["activeTargets"]:
            job = t["labels"]["job"]
            up[job] = up.get(job, True) and t["health"] == "up"
        return up

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="JOB=HOST:PORT",
        help="scrape target (repeat); e.g. pipeline=127.0.0.1:9108",
    )
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--workdir", default=".prometheus", help="config + TSDB (default .prometheus)")
    p.add_argument("--interval", default="5s")
    args = p.parse_args(argv)
    jobs: dict[str, list[str]] = {}
    for t in args.target:
        job, sep, addr = t.partition("=")
        if not sep or ":" not in addr:
            print(f"prometheus: error: --target wants JOB=HOST:PORT, got {t!r}", file=sys.stderr)
            return 2
        jobs.setdefault(job, []).append(addr)
    if not jobs:
        print("prometheus: error: give at least one --target JOB=HOST:PORT", file=sys.stderr)
        return 2
    try:
        server = PrometheusServer(
            Path(args.workdir), jobs, port=args.port, interval=args.interval
        ).start()
    except (PrometheusNotInstalled, PrometheusError) as exc:
        print(f"prometheus: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"prometheus on {server.url} scraping {jobs}; Ctrl-C stops", flush=True)
    try:
        while server._proc is not None and server._proc.poll() is None:
            time.sleep(0.5)
        print(f"prometheus: error: exited: {server.log_tail(3)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
