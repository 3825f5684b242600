"""Start and stop a real CPU Triton Inference Server for tests and local runs.

Why a subprocess harness: the server and its python-backend models run in their own virtualenv
(``.triton-venv``, made by scripts/triton/install.sh) because Triton's python backend needs
numpy<2 while the project uses numpy 2. This module is plain standard library, so the project's
main venv (tests, the pipeline) can import it and drive the server like an external service:
it derives the CPU variant of the model repository (scripts/triton/cpu_repository.py, run with
the Triton venv's Python), launches the ``tritonserver`` binary directly with the flags measured
in /work/shared/notes/services.md, waits for readiness, and on stop sends SIGTERM, then SIGKILL
to the whole process group, then removes the python backend's shared-memory files.

Import it with the repository root on ``sys.path`` (``from scripts.triton.triton_harness import
TritonServer``) or with ``scripts/triton`` on ``sys.path`` (``import triton_harness``)::

    with TritonServer(Path("triton_model_repository"), tmp_path) as server:
        urllib.request.urlopen(f"{server.http_url}/v2/health/ready")
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = "scripts/triton/install.sh"
LAYOUT_FILE = "triton_layout.json"
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
HOST = "127.0.0.1"

# Loopback only: an http_proxy in the environment must never see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TritonNotInstalled(RuntimeError):
    """The Triton venv is missing or incomplete; the message says how to install it."""


class TritonStartError(RuntimeError):
    """The server exited or did not become ready in time; the message carries its log tail."""


def triton_venv() -> Path:
    """The Triton venv: $TRITON_VENV, else ``<repo>/.triton-venv`` (install.sh's default)."""
    return Path(os.environ.get("TRITON_VENV") or REPO_ROOT / ".triton-venv").resolve()


def load_layout(venv: Path | None = None) -> dict[str, Any]:
    """Read the paths install.sh recorded; raise TritonNotInstalled with the fix if absent."""
    venv = venv or triton_venv()
    layout_path = venv / LAYOUT_FILE
    hint = f"run {INSTALL_SCRIPT} (or `make test`, which runs it) to create it"
    if not layout_path.is_file():
        raise TritonNotInstalled(f"no Triton venv at {venv} ({layout_path} missing): {hint}")
    layout: dict[str, Any] = json.loads(layout_path.read_text())
    for key in ("tritonserver", "python"):
        if not Path(layout[key]).exists():
            raise TritonNotInstalled(f"{layout[key]} is missing from {venv}: {hint}")
    return layout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET without proxies; returns (status, body) and never raises on HTTP error statuses."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post(url: str, payload: Any, timeout: float = 30.0) -> tuple[int, bytes]:
    """POST a JSON body without proxies; returns (status, body)."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def derive_cpu_variant(src: Path, dst: Path, venv: Path | None = None) -> Path:
    """Run cpu_repository.py with the Triton venv's Python (it needs tritonclient's protobufs)."""
    layout = load_layout(venv)
    result = subprocess.run(
        [layout["python"], str(HERE / "cpu_repository.py"), str(src), str(dst)],
        capture_output=True,
        text=True,
        env=_clean_env(layout),
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deriving the CPU repository failed: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def shm_files(prefix: str) -> list[Path]:
    """Python-backend shared-memory regions left under /dev/shm for ``prefix``."""
    shm = Path("/dev/shm")
    return sorted(shm.glob(f"{prefix}*")) if shm.is_dir() else []


def processes_mentioning(token: str) -> list[int]:
    """PIDs whose command line contains ``token`` (stubs carry the shm prefix in argv)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if token.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return [pid for pid in pids if pid != os.getpid()]


def _clean_env(layout: dict[str, Any]) -> dict[str, str]:
    """Environment for the server and its stubs: the Triton venv first, nothing from ours.

    The python stub embeds the ``python3`` found first on PATH, and needs the wheel's bundled
    libraries plus libpython on LD_LIBRARY_PATH (see the notes). PYTHONPATH/PYTHONHOME of the
    caller (e.g. a numpy-2 venv) would leak into the model environment, so they are dropped.
    No bytecode is written so the served repository stays byte-identical to its derivation.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = layout["venv"]
    env["PATH"] = os.pathsep.join([*layout["path"], env.get("PATH", "/usr/bin:/bin")])
    ld = [*layout["ld_library_path"], *filter(None, [env.get("LD_LIBRARY_PATH")])]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class TritonServer:
    """One tritonserver process serving (the CPU variant of) a model repository.

    ``repository`` is the canonical repository; with ``derive=True`` (default) its CPU variant
    is written to ``cpu_variant_dir`` (default ``<workdir>/cpu_repository``) and served, with
    ``derive=False`` ``repository`` is served as is. Ports are picked free unless given.
    ``model_control_mode`` is Triton's: "none" (load all at start), "poll" (rescan every
    ``poll_secs``; call :meth:`derive` after changing the canonical repository) or "explicit"
    (``load_models`` at start, then :meth:`load_model`/:meth:`unload_model`).
    """

    def __init__(
        self,
        repository: Path,
        workdir: Path,
        model_control_mode: str = "none",
        *,
        poll_secs: int = 1,
        load_models: Sequence[str] = (),
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        derive: bool = True,
        cpu_variant_dir: Path | None = None,
        venv: Path | None = None,
        log_verbose: int = 0,
        stop_grace_secs: float = 8.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if model_control_mode not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control_mode must be one of {MODEL_CONTROL_MODES}")
        self.repository = Path(repository).resolve()
        self.workdir = Path(workdir).resolve()
        self.model_control_mode = model_control_mode
        self.poll_secs = poll_secs
        self.load_models = tuple(load_models)
        self.derive_enabled = derive
        self.cpu_variant_dir = Path(cpu_variant_dir or self.workdir / "cpu_repository").resolve()
        self.venv = Path(venv).resolve() if venv else triton_venv()
        self.log_verbose = log_verbose
        self.stop_grace_secs = stop_grace_secs
        self.extra_args = tuple(extra_args)
        self._fixed_ports = (http_port, grpc_port, metrics_port)
        self.http_port, self.grpc_port, self.metrics_port = self._fixed_ports
        # Unique per server so parallel servers (and leftovers of killed runs) never collide.
        self.shm_prefix = f"secureai_tpb_{os.getpid()}_{secrets.token_hex(4)}_"
        self.log_path = self.workdir / "tritonserver.log"
        self.startup_secs: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def model_repository(self) -> Path:
        """The directory the server actually serves."""
        return self.cpu_variant_dir if self.derive_enabled else self.repository

    @property
    def http_url(self) -> str:
        """Base URL of the KServe v2 HTTP API, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def http_address(self) -> str:
        """``host:port`` form, as tritonclient.http.InferenceServerClient(url=...) wants it."""
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC API (tritonclient.grpc takes it without a scheme)."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus endpoint, e.g. ``http://127.0.0.1:41236/metrics``."""
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ------------------------------------------------------------------------
    def derive(self) -> Path:
        """(Re)sync the CPU variant from the canonical repository; safe while serving."""
        if not self.derive_enabled:
            return self.repository
        return derive_cpu_variant(self.repository, self.cpu_variant_dir, self.venv)

    def command(self) -> list[str]:
        """The tritonserver command line for the current ports."""
        layout = load_layout(self.venv)
        cmd = [
            layout["tritonserver"],
            f"--model-repository={self.model_repository}",
            f"--backend-directory={layout['backend_directory']}",
            f"--cache-directory={layout['cache_directory']}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=2",
            "--strict-readiness=true",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--model-control-mode={self.model_control_mode}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.model_control_mode == "poll":
            cmd.append(f"--repository-poll-secs={self.poll_secs}")
        if self.model_control_mode == "explicit":
            cmd += [f"--load-model={name}" for name in self.load_models]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> TritonServer:
        """Derive, launch and wait for ``/v2/health/ready``; raise TritonStartError on failure.

        Auto-picked ports are retried (up to 3 times) if another process grabbed one first.
        """
        if self.is_alive():
            raise RuntimeError(f"tritonserver already running (pid {self.pid})")
        layout = load_layout(self.venv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.derive()
        began = time.monotonic()
        attempts = 1 if all(self._fixed_ports) else 3
        for attempt in range(1, attempts + 1):
            self._pick_ports()
            self._launch(layout)
            try:
                self._wait_ready(began + timeout)
            except TritonStartError:
                port_clash = self._port_clash()
                self._terminate()
                if port_clash and attempt < attempts:
                    continue
                raise
            self.startup_secs = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after ``stop_grace_secs``, clean /dev/shm; return the exit code."""
        if self._proc is None:
            return None
        code = self._terminate()
        self._proc = None
        return code

    def is_alive(self) -> bool:
        """True while the tritonserver process runs."""
        return self._proc is not None and self._proc.poll() is None

    def is_ready(self) -> bool:
        """True when ``/v2/health/ready`` answers 200 (all loaded models ready)."""
        if not self.is_alive():
            return False
        try:
            status, _ = http_get(f"{self.http_url}/v2/health/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def load_model(self, name: str, timeout: float = 120.0) -> None:
        """Explicit mode: (re)load ``name`` from the served repository (after :meth:`derive`)."""
        status, body = http_post(
            f"{self.http_url}/v2/repository/models/{name}/load", {}, timeout=timeout
        )
        if status != 200:
            raise RuntimeError(f"loading {name} failed ({status}): {body.decode(errors='replace')}")

    def unload_model(self, name: str, timeout: float = 60.0) -> None:
        """Explicit mode: unload ``name``."""
        status, body = http_post(
            f"{self.http_url}/v2/repository/models/{name}/unload", {}, timeout=timeout
        )
        if status != 200:
            raise RuntimeError(f"unloading {name} failed ({status}): {body.decode()}")

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server log (CUDA warnings in it are expected on CPU)."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> TritonServer:
        return self if self.is_alive() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"TritonServer({self.model_repository}, {self.http_url}, {state})"

    # -- internals ------------------------------------------------------------------------
    def _pick_ports(self) -> None:
        chosen: list[int] = []
        for fixed in self._fixed_ports:
            port = fixed
            while port is None or (fixed is None and port in chosen):
                port = free_port()
            chosen.append(port)
        self.http_port, self.grpc_port, self.metrics_port = chosen

    def _launch(self, layout: dict[str, Any]) -> None:
        cmd = self.command()
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in _terminate)
        self._log.write(f"=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        self._log.flush()
        # Own session/process group: stop() can SIGKILL the server and its stubs together.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=_clean_env(layout),
            start_new_session=True,
        )
        atexit.register(self._kill_at_exit)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if not self.is_alive():
                code = self._proc.returncode if self._proc else None
                raise TritonStartError(
                    f"tritonserver exited with code {code} before becoming ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise TritonStartError(
                    "tritonserver not ready in time (a python stub that cannot start, e.g. "
                    "a wrong Python or missing libpython, leaves it hanging not-ready); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _port_clash(self) -> bool:
        tail = self.log_tail(80).lower()
        return "already in use" in tail or "address in use" in tail

    def _terminate(self) -> int | None:
        proc = self._proc
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_grace_secs)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            code = proc.returncode
            # Stubs that outlived the server (it was killed, or crashed) share its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            atexit.unregister(self._kill_at_exit)
        self._wait_gone(self.shm_prefix, timeout=5.0)
        for path in shm_files(self.shm_prefix):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    @staticmethod
    def _wait_gone(token: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while processes_mentioning(token) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _kill_at_exit(self) -> None:
        """Last resort when the owner never called stop(): no orphaned servers after pytest."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        for path in shm_files(self.shm_prefix):
            with contextlib.suppress(OSError):
                path.unlink()
