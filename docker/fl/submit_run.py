"""Submit one federated run to a running SuperLink (docker-compose ``fl-run``, Helm Job).

    python docker/fl/submit_run.py --config /etc/secureai/fl.yml --superlink superlink:9093 \
        --root-certificates /certs/ca.crt

What ``federated.deployment.LocalFederation.run`` does on one machine, for a SuperLink that is
already up elsewhere: write the run directory (resolved config) on the volume the SuperLink and
the SuperNodes share, ``flwr run`` the app (``federated/app``), wait until Flower reports
``finished:*`` (``flwr run`` exits 0 even when a run fails), then record the run
(``federated.runs.finish_run``). Exit status: 0 only for ``finished:completed``; errors are one
line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from federated.certs import TLSFiles
from federated.config import FLConfig
from federated.launcher import FlowerError, SuperLink
from federated.protocol import RUN_CONFIG_PATH, RUN_DIR
from federated.runs import FLRunFailed, finish_run, prepare_run_dir
from morpheus_ext.config_io import ConfigError, load_config


class RemoteSuperLink(SuperLink):
    """The ``flwr`` CLI side of :class:`~federated.launcher.SuperLink` for a remote address."""

    def __init__(self, address: str, home: Path, tls: TLSFiles | None) -> None:
        super().__init__(home, home / "logs", simulation=False, tls=tls)
        self._address = address

    @property
    def address(self) -> str:
        return self._address

    def connect(self) -> RemoteSuperLink:
        self._write_connection()
        return self


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="FL config (federated/config.py)")
    p.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    p.add_argument("--root-certificates", help="CA that signed the SuperLink's certificate")
    p.add_argument("--insecure", action="store_true", help="no TLS (local experiments only)")
    p.add_argument("--flwr-home", default="/tmp/flwr-home")
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args(argv)
    if not args.insecure and not args.root_certificates:
        print("submit_run: error: give --root-certificates (or --insecure)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, FLConfig)
        tls = None
        if not args.insecure:
            ca = Path(args.root_certificates)
            if not ca.is_file():
                raise ConfigError(f"root certificates not found: {ca}")
            tls = TLSFiles(ca, ca, ca)  # only the CA is used on the client side
        link = RemoteSuperLink(args.superlink, Path(args.flwr_home), tls).connect()
        config, run_dir = prepare_run_dir(config)
        started = time.monotonic()
        run_config = {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)}
        run_id = link.run_app(run_config)
        print(f"submit_run: Flower run {run_id}, run directory {run_dir}", flush=True)
        status = link.wait(run_id, args.timeout)
        log = link.logs(run_id)
        (run_dir / "logs").mkdir(exist_ok=True)
        (run_dir / "logs" / "flower.log").write_text(log)
        wall = time.monotonic() - started
        finish_run(
            config, run_dir, "federated-deployment", status, log, wall, {"submitter": "docker"}
        )
    except (ConfigError, FlowerError, FLRunFailed, OSError) as exc:
        text = str(exc).strip()
        print(f"submit_run: error: {text.splitlines()[0] if text else exc}", file=sys.stderr)
        return 1
    print(f"submit_run: {status}", flush=True)
    return 0 if status == "finished:completed" else 1


if __name__ == "__main__":
    sys.exit(main())
