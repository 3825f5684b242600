"""Start and stop a real Kafka-protocol broker (Tansu) for tests, benchmarks and local runs.

Tansu 0.6.0 is a single static binary (installed by ``scripts/kafka/install.sh`` into
``.kafka/bin/tansu``) that speaks the Kafka wire protocol; with ``memory://`` storage it is ready
in milliseconds and leaves nothing on disk. This module is plain standard library so any Python
can drive it like an external service::

    with KafkaBroker(tmp_path) as broker:
        Producer({"bootstrap.servers": broker.bootstrap})

Measured quirks (see docs/kafka.md): the broker panics when its port is taken, so a free port is
picked and the process is checked after start (and restarted on another port if it died);
readiness is a real Kafka ``ApiVersions`` round trip, not just an open socket.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
INSTALL_SCRIPT = "scripts/kafka/install.sh"


try:  # loaded here, not in the child: only a plain prctl call runs between fork and exec
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started the broker dies, even by
    SIGKILL (atexit cannot run then), so a killed test run leaves no broker behind."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class BrokerNotInstalled(RuntimeError):
    """The Tansu binary is missing; the message says how to install it."""


class BrokerStartError(RuntimeError):
    """The broker exited or did not answer in time; the message carries its log tail."""


def tansu_binary() -> Path:
    """``$TANSU_BIN``, else ``$KAFKA_HOME/bin/tansu``, else ``<repo>/.kafka/bin/tansu``."""
    if os.environ.get("TANSU_BIN"):
        return Path(os.environ["TANSU_BIN"])
    home = Path(os.environ.get("KAFKA_HOME") or REPO_ROOT / ".kafka")
    return home / "bin" / "tansu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """One Kafka ``ApiVersions`` v0 request; True when the broker answers without error."""
    client_id = b"secureai-readiness"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exactly(s, 4)
            (size,) = struct.unpack(">i", head)
            payload = _recv_exactly(s, size)
    except OSError:
        return False
    if len(payload) < 6:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return correlation_id == 1 and error_code == 0


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


class KafkaBroker:
    """One Tansu broker process on 127.0.0.1, in-memory storage unless told otherwise.

    ``workdir`` receives the broker log (``tansu.log``). ``port`` 0 (default) picks a free port.
    ``storage`` is Tansu's ``--storage-engine``: ``memory://tansu/`` (fast, gone with the
    process) or ``s3://BUCKET/`` with ``env`` naming the S3 server (``S3Server.broker_options()``
    in ``scripts/kafka/s3.py`` gives both): then topics, records and committed offsets outlive
    the process, and :meth:`restart` brings the broker back on the same port with them.
    """

    def __init__(
        self,
        workdir: str | Path,
        port: int = 0,
        binary: str | Path | None = None,
        storage: str = "memory://tansu/",
        ready_timeout_s: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.requested_port = port
        self.binary = Path(binary) if binary else tansu_binary()
        self.storage = storage
        self.ready_timeout_s = ready_timeout_s
        self.env = dict(env or {})
        self.port = 0
        self.log_path = self.workdir / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients."""
        if not self.port:
            raise RuntimeError("broker not started")
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def durable(self) -> bool:
        """Whether what the broker stores survives its process (everything but memory://)."""
        return not self.storage.startswith("memory:")

    def start(self) -> KafkaBroker:
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise BrokerNotInstalled(
                f"Tansu broker not found at {self.binary}; run {INSTALL_SCRIPT} (or set TANSU_BIN)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)  # never leave a broker behind a crashed test run
        # After a stop, a restart keeps the port: clients reconnect to the same address.
        fixed = self.requested_port or self.port
        attempts = 1 if fixed else 3
        # A fixed port may still be held for a moment (a client of the old process, another
        # start-up): Tansu panics with AddrInUse, so try again until the readiness timeout.
        deadline = time.monotonic() + self.ready_timeout_s
        last = ""
        while True:
            self.port = fixed or free_port()
            self._launch()
            try:
                self._wait_ready()
                return self
            except BrokerStartError as exc:
                last = str(exc)
                self.stop()
            attempts -= 1
            in_use = "AddrInUse" in last or "Address in use" in last
            if not (attempts > 0 or (fixed and in_use and time.monotonic() < deadline)):
                raise BrokerStartError(last)
            time.sleep(0.5 if fixed else 0)

    def _launch(self) -> None:
        url = f"tcp://{HOST}:{self.port}"
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        env.setdefault("RUST_LOG", "warn")
        self._proc = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise BrokerStartError(f"tansu exited at start: {self.log_tail()}")
            if api_versions_ok(HOST, self.port):
                # It answered; make sure it did not panic right after binding.
                time.sleep(0.05)
                if self.is_alive():
                    return
            time.sleep(0.05)
        raise BrokerStartError(
            f"tansu not ready on {HOST}:{self.port} after {self.ready_timeout_s:.0f} s: "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout_s: float = 5.0, sig: int = signal.SIGTERM) -> None:
        """``sig`` (SIGTERM; SIGKILL for a crash), then SIGKILL after ``timeout_s``; safe twice.

        The port is kept: a later :meth:`start` listens on the same address.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def restart(self, down_s: float = 0.0, sig: int = signal.SIGTERM) -> KafkaBroker:
        """Stop (``sig``), stay down ``down_s`` seconds, start again on the same port.

        With durable storage the broker comes back with its topics, records and committed
        offsets; with ``memory://`` it comes back empty.
        """
        self.stop(sig=sig)
        time.sleep(down_s)
        return self.start()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python scripts/kafka/broker.py [PORT] [--storage memory|s3] [--data DIR]``: run a
    broker in the foreground until Ctrl-C (SIGTERM too).

    ``--storage s3`` also starts a SeaweedFS S3 server (``scripts/kafka/s3.py``) with its data
    in ``--data`` (default ``.kafka/s3-data``): topics, records and committed offsets survive a
    restart of this command. The S3 secret is kept in ``DIR/.s3-secret`` (mode 600) so the
    same data directory is readable by the next run.
    """
    import argparse
    import sys
    import tempfile

    ap = argparse.ArgumentParser(prog="broker.py", description="a local Tansu broker")
    ap.add_argument("port", nargs="?", type=int, default=9092)
    ap.add_argument("--storage", choices=["memory", "s3"], default="memory")
    ap.add_argument("--data", type=Path, default=REPO_ROOT / ".kafka" / "s3-data")
    args = ap.parse_args(argv)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {}
        what = "in-memory storage: gone when it stops"
        if args.storage == "s3":
            sys.path.insert(0, str(REPO_ROOT))
            from scripts.kafka.s3 import S3Server

            data: Path = args.data.resolve()
            data.mkdir(parents=True, exist_ok=True)
            secret_file = data / ".s3-secret"
            if not secret_file.exists():
                import secrets

                secret_file.touch(mode=0o600)
                secret_file.write_text(secrets.token_hex(20))
            s3 = S3Server(
                data, secret_key=secret_file.read_text().strip(), avoid_ports=(args.port,)
            )
            stack.enter_context(s3)
            options = s3.broker_options()
            what = (
                f"s3:// storage on SeaweedFS {s3.endpoint}, data in {data}: survives restarts; "
                "consumers: fetch.wait.max.ms above the S3 request latency (docs/kafka.md)"
            )
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        broker = stack.enter_context(KafkaBroker(tmp, port=args.port, **options))
        print(f"tansu on {broker.bootstrap} ({what}; Ctrl-C stops it)", flush=True)
        try:
            while broker.is_alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        print(f"tansu exited: {broker.log_tail()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
