"""Start and drive Flower's processes on 127.0.0.1: SuperLink, SuperNodes, the ``flwr`` CLI.

Used by ``secureai fl simulate`` (a SuperLink in simulation mode: Ray runs the sites),
``scripts/fl/`` (a SuperLink and N SuperNodes with TLS and SuperNode authentication) and the
integration tests. Measured pitfalls handled here (shared/notes/federated.md):

* ``FLWR_HOME`` is private to the launch (its ``config.toml`` names the connection), telemetry
  and the update check are off;
* SuperLinks run with ``--disable-runtime-dependency-installation``: otherwise the SuperLink
  installs the app's dependencies with uv, which pulls a CUDA build of torch;
* ``flwr run`` exits 0 even when the run fails: :meth:`SuperLink.wait` returns the run's
  Flower status (``finished:*``) from ``flwr ls --format json``. While the run lasts it reads
  the run's own ``fl_result.json`` (the ServerApp writes ``running`` at its start and
  ``completed``/``failed`` at its end) and asks ``flwr ls`` only every ``ls_every_s`` (a ``flwr``
  CLI call is a Python process start, ~2 s of a core on 2 cores, taken from the run itself);
* waits are short: SuperNodes poll the SuperLink every ``supernode_poll_s`` when idle
  (:mod:`federated.supernode`; Flower's own is 3 s) and SuperExecs ask for new tasks every
  :data:`SUPEREXEC_POLL_S` (Flower's own is 1 s): a run is a chain of such hand-offs.

Every process runs in its own session and is stopped by its own process-group id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from federated.certs import TLSFiles
from federated.supernode import DEFAULT_POLL_S
from federated.supernode import command as supernode_command
from morpheus_ext.errors import SecureAIError

APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION = "secureai"
SUPEREXEC_POLL_S = 0.2
"""How often a SuperExec (of the SuperLink: ServerApps; of a SuperNode: ClientApps) asks for a
new task (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``; Flower's default 1 s). Each message a site
handles starts a ClientApp through its SuperExec, so this wait is paid per message."""


LS_EVERY_S = 15.0
"""While a run's ``fl_result.json`` says it is running, ``flwr ls`` at most this often."""
FINAL_SERVER_STATUSES = frozenset({"completed", "failed"})
"""What the ServerApp writes into ``fl_result.json`` when it is done (``federated.server``)."""


def server_status(result_file: Path) -> str | None:
    """The ``status`` the ServerApp last wrote into ``result_file``; ``None`` while there is no
    complete file (not written yet, or caught mid-write: ``write_json`` is not atomic).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "fl_result.json"
    >>> server_status(path) is None
    True
    >>> _ = path.write_text('{"status": "runn')  # mid-write
    >>> server_status(path) is None
    True
    >>> _ = path.write_text('{"status": "completed", "fl_run_id": "x"}')
    >>> server_status(path)
    'completed'
    """
    try:
        doc = json.loads(result_file.read_text())
    except (OSError, ValueError):
        return None
    status = doc.get("status") if isinstance(doc, dict) else None
    return None if status is None else str(status)


class FlowerError(SecureAIError, RuntimeError):
    """A Flower process or CLI call failed (message carries the relevant output)."""


class RunStopped(SecureAIError, RuntimeError):
    """A run was stopped on request (the service is shutting down) before it finished."""


class FLRunFailed(SecureAIError, RuntimeError):
    """The federated run did not finish (message says where it stopped and why)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        RAY_DEDUP_LOGS="0",
        PYTHONUNBUFFERED="1",
    )
    # An operator's own setting wins.
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", str(SUPEREXEC_POLL_S))
    # The Flower executables live next to this interpreter (the project's venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


class Process:
    """A child process with its log file, stopped by process group."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; children it started (SuperExec, ServerApp) may remain.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()


def _wait_port(port: int, process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise FlowerError(f"{process.args[0]} exited early:\n{process.log_text()[-3000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FlowerError(f"{process.args[0]} did not listen on {port} within {timeout:.0f}s")


class SuperLink:
    """A SuperLink on 127.0.0.1 plus the ``flwr`` CLI connection to it.

    ``simulation=True``: the SuperLink runs every ClientApp itself with Ray (the simulation
    engine); otherwise SuperNodes connect to it (the deployment engine).
    """

    def __init__(
        self,
        home: Path,
        log_dir: Path,
        *,
        simulation: bool,
        tls: TLSFiles | None = None,
        supernode_auth: bool = False,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.home = home
        self.log_dir = log_dir
        self.simulation = simulation
        self.tls = tls
        self.supernode_auth = supernode_auth
        self.port = port or free_port()
        self.cwd = cwd or Path.cwd()
        self.env = flower_env(home)
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_connection(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]"]
        lines.append(f'address = "{self.address}"')
        if self.tls is None:
            lines.append("insecure = true")
        else:
            lines.append(f'root-certificates = "{self.tls.ca_cert.resolve()}"')
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 60.0) -> SuperLink:
        self._write_connection()
        args = [
            "flower-superlink",
            "--disable-runtime-dependency-installation",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database",
            str(self.home / "state.db"),
        ]
        if self.simulation:
            args.append("--simulation")
        if self.tls is None:
            args.append("--insecure")
        else:
            args += [
                "--ssl-ca-certfile",
                str(self.tls.ca_cert),
                "--ssl-certfile",
                str(self.tls.server_cert),
                "--ssl-keyfile",
                str(self.tls.server_key),
            ]
        if self.supernode_auth:
            args.append("--enable-supernode-auth")
        self.process = Process(args, self.log_dir / "superlink.log", self.env, self.cwd)
        _wait_port(self.port, self.process, timeout)
        return self

    def flwr(self, *args: str, timeout: float = 120.0, check: bool = True) -> str:
        """Run a ``flwr`` CLI command against this SuperLink; returns stdout."""
        proc = subprocess.run(
            ["flwr", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise FlowerError(
                f"flwr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def _json(self, *args: str, timeout: float = 120.0) -> dict[str, Any]:
        out = self.flwr(*args, "--format", "json", timeout=timeout, check=False)
        start = out.find("{")
        if start < 0:
            raise FlowerError(f"flwr {' '.join(args)}: no JSON in output:\n{out}")
        doc: dict[str, Any] = json.loads(out[start:])
        if not doc.get("success", False):
            raise FlowerError(f"flwr {' '.join(args)}: {doc.get('error-message', doc)}")
        return doc

    def register_supernode(self, public_key: Path) -> dict[str, Any]:
        return self._json("supernode", "register", str(public_key), CONNECTION)

    def list_supernodes(self) -> list[dict[str, Any]]:
        doc = self._json("supernode", "list", CONNECTION)
        nodes: list[dict[str, Any]] = doc.get("nodes", [])
        return nodes

    def run_app(
        self,
        run_config: dict[str, Any],
        federation_config: dict[str, Any] | None = None,
        app_dir: Path = APP_DIR,
    ) -> int:
        """Submit the app; returns the Flower run id."""
        args = ["run", str(app_dir), CONNECTION]
        for key, value in run_config.items():
            args += ["--run-config", f"{key}={_toml_value(value)}"]
        if federation_config:
            args += [
                "--federation-config",
                " ".join(f"{k}={_toml_value(v)}" for k, v in federation_config.items()),
            ]
        doc = self._json(*args)
        return int(doc["run-id"])

    def status(self, run_id: int) -> str:
        doc = self._json("ls", CONNECTION, "--run-id", str(run_id))
        runs = doc.get("runs", [])
        return str(runs[0]["status"]) if runs else "unknown"

    def wait(
        self,
        run_id: int,
        timeout: float,
        poll_s: float | None = None,
        stop: threading.Event | None = None,
        on_poll: Callable[[], None] | None = None,
        result_file: Path | None = None,
        ls_every_s: float = LS_EVERY_S,
    ) -> str:
        """Block until the run is ``finished:*``; returns that status (raises on timeout).

        With ``result_file`` (the run's ``fl_result.json``) the run's progress is read from
        it every ``poll_s`` (default 0.5 s), and ``flwr ls`` is asked once the ServerApp wrote
        its final status (then every ``poll_s`` until Flower agrees) or every ``ls_every_s``
        meanwhile (a run whose ServerApp never started or died still ends the wait). Without
        it, ``flwr ls`` every ``poll_s`` (default 2 s). Why: each ``flwr ls`` is a CLI process
        start, seconds of CPU on a small host, competing with the run it watches.

        When ``stop`` is set first (a service given SIGTERM), the run is stopped through the
        Control API and :class:`RunStopped` raised: a shutdown does not wait out a long run.
        """
        if poll_s is None:
            poll_s = 2.0 if result_file is None else 0.5
        deadline = time.monotonic() + timeout
        status = "unknown"
        last_ls = float("-inf")
        while time.monotonic() < deadline:
            if self.process is not None and not self.process.alive():
                raise FlowerError(f"the SuperLink died:\n{self.process.log_text()[-3000:]}")
            if stop is not None and stop.is_set():
                self.stop_run(run_id)
                raise RunStopped(f"run {run_id} stopped on request while {status!r}")
            now = time.monotonic()
            if (
                result_file is None
                or server_status(result_file) in FINAL_SERVER_STATUSES
                or now - last_ls >= ls_every_s
            ):
                status = self.status(run_id)
                last_ls = now
            if on_poll is not None:
                on_poll()  # e.g. print the rounds finished since the last poll
            if status.startswith("finished"):
                return status
            if stop is not None:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)
        raise FlowerError(f"run {run_id} still {status!r} after {timeout:.0f}s")

    def stop_run(self, run_id: int) -> str:
        """Ask the SuperLink to stop a run (``flwr stop``); returns the CLI's output."""
        return self.flwr("stop", str(run_id), CONNECTION, timeout=60, check=False)

    def logs(self, run_id: int) -> str:
        return self.flwr("log", str(run_id), CONNECTION, "--show", timeout=60, check=False)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> SuperLink:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def supernode_args(
    superlink: str,
    node_config: dict[str, Any],
    *,
    root_certificates: Path | None,
    private_key: Path | None = None,
    max_wait_s: float | None = None,
    insecure: bool | None = None,
    poll_s: float = DEFAULT_POLL_S,
) -> list[str]:
    """The SuperNode command line: Flower's ``flower-supernode`` run through
    :mod:`federated.supernode`, which polls the SuperLink every ``poll_s`` when idle (Flower's
    own: 3 s). ``insecure`` (default: no ``root_certificates``) turns TLS off; TLS without
    ``root_certificates`` trusts the system CAs only."""
    if insecure is None:
        insecure = root_certificates is None
    args = [
        "--superlink",
        superlink,
        "--port",
        str(free_port()),
        "--node-config",
        " ".join(f"{k}={_toml_value(v)}" for k, v in node_config.items()),
    ]
    if root_certificates is not None:
        args += ["--root-certificates", str(root_certificates)]
    elif insecure:
        args.append("--insecure")
    if private_key is not None:
        args += ["--auth-supernode-private-key", str(private_key)]
    if max_wait_s is not None:
        args += ["--max-wait-time", str(max_wait_s)]
    return supernode_command(poll_s, args)


def start_supernode(
    superlink: SuperLink,
    log_path: Path,
    node_config: dict[str, Any],
    *,
    root_certificates: Path | None,
    private_key: Path | None = None,
    max_wait_s: float | None = None,
    poll_s: float = DEFAULT_POLL_S,
) -> Process:
    """A SuperNode connecting to ``superlink`` (TLS when ``root_certificates`` is given)."""
    home = log_path.parent / f".flwr-{log_path.stem}"
    args = supernode_args(
        superlink.address,
        node_config,
        root_certificates=root_certificates,
        private_key=private_key,
        max_wait_s=max_wait_s,
        insecure=root_certificates is None and superlink.tls is None,
        poll_s=poll_s,
    )
    return Process(args, log_path, flower_env(home), superlink.cwd)
