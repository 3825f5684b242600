"""A real deployment on one machine: SuperLink + N SuperNodes on 127.0.0.1, TLS, node auth.

The same ServerApp/ClientApp as the simulation, but every site is its own SuperNode process
that pulls messages from the SuperLink over TLS and runs each in a fresh ClientApp process:

* TLS: the SuperLink serves a certificate signed by a run-local CA; SuperNodes and the ``flwr``
  CLI verify it with ``ca.crt``. A SuperNode without the CA fails the handshake.
* SuperNode authentication: the SuperLink starts with ``--enable-supernode-auth``; each
  SuperNode's ECDSA public key is registered (``flwr supernode register``) before it connects
  and it signs its requests with the private key. An unregistered key is refused.

``scripts/fl/run_local_deployment.py`` wraps :class:`LocalFederation` for people; the
integration test drives it directly. Measured here: 3 DP rounds took about a minute with
Flower's own waits (3 s SuperNode poll, 3 s between the ServerApp's pulls); the launcher now
shortens them (docs/federated.md, "Waits and polls"), and a few seconds of imports per
ClientApp process remain.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from federated.certs import NodeKeys, TLSFiles, make_node_keys, make_tls
from federated.config import FLConfig
from federated.launcher import Process, SuperLink, start_supernode
from federated.protocol import NODE_SITE, RUN_CONFIG_PATH, RUN_DIR
from federated.runs import FLRunResult, RoundProgress, finish_run, prepare_run_dir
from federated.server import RESULT_FILE


class LocalFederation:
    """SuperLink + ``n_sites`` SuperNodes (site i has ``partition-id=i``), started together."""

    def __init__(
        self,
        n_sites: int,
        work_dir: Path | None = None,
        *,
        tls: bool = True,
        supernode_auth: bool = True,
        node_config: dict[str, Any] | None = None,
    ) -> None:
        self._own_dir = work_dir is None
        self.work_dir = (work_dir or Path(tempfile.mkdtemp(prefix="secureai-fl-"))).resolve()
        self.n_sites = n_sites
        self.use_tls = tls
        self.supernode_auth = supernode_auth
        self.node_config = node_config or {}
        self.tls: TLSFiles | None = None
        self.keys: list[NodeKeys] = []
        self.superlink: SuperLink | None = None
        self.supernodes: list[Process] = []

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def start(self) -> LocalFederation:
        pki = self.work_dir / "pki"
        self.tls = make_tls(pki) if self.use_tls else None
        self.superlink = SuperLink(
            self.work_dir / "flwr-home",
            self.log_dir,
            simulation=False,
            tls=self.tls,
            supernode_auth=self.supernode_auth,
        ).start()
        for site in range(self.n_sites):
            keys = None
            if self.supernode_auth:
                keys = make_node_keys(pki, f"supernode-{site}")
                self.superlink.register_supernode(keys.public_key)
                self.keys.append(keys)
            self.supernodes.append(
                start_supernode(
                    self.superlink,
                    self.log_dir / f"supernode-{site}.log",
                    {NODE_SITE: site, "num-partitions": self.n_sites, **self.node_config},
                    root_certificates=self.tls.ca_cert if self.tls else None,
                    private_key=keys.private_key if keys else None,
                )
            )
        return self

    def run(
        self, config: FLConfig, run_dir: Path | None = None, progress: bool = False
    ) -> FLRunResult:
        if self.superlink is None:
            raise RuntimeError("start() the federation first")
        if config.sites.n_sites != self.n_sites:
            raise ValueError(f"config has {config.sites.n_sites} sites, federation {self.n_sites}")
        config, run_dir = prepare_run_dir(config, run_dir)
        started = time.monotonic()
        run_id = self.superlink.run_app(
            {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)}
        )
        try:
            status = self.superlink.wait(
                run_id,
                config.simulation.timeout_s,
                on_poll=RoundProgress(run_dir, config.federation.rounds) if progress else None,
                result_file=run_dir / RESULT_FILE,
            )
        finally:
            log = self.superlink.logs(run_id)
            (run_dir / "logs").mkdir(exist_ok=True)
            (run_dir / "logs" / "flower.log").write_text(log)
            for p in self.log_dir.glob("*.log"):
                shutil.copyfile(p, run_dir / "logs" / p.name)
        wall = time.monotonic() - started
        extra = {"deployment": {"tls": self.use_tls, "supernode_auth": self.supernode_auth}}
        return finish_run(config, run_dir, "federated-deployment", status, log, wall, extra)

    def stop(self) -> None:
        for node in self.supernodes:
            node.stop()
        if self.superlink is not None:
            self.superlink.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def deploy_local(
    config: FLConfig,
    run_dir: Path | None = None,
    *,
    tls: bool = True,
    supernode_auth: bool = True,
    work_dir: Path | None = None,
    progress: bool = False,
) -> FLRunResult:
    """Start a federation for the config's sites, run the app once, tear everything down."""
    with LocalFederation(
        config.sites.n_sites, work_dir, tls=tls, supernode_auth=supernode_auth
    ) as federation:
        return federation.run(config, run_dir, progress)
