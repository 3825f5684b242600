"""``secureai fl simulate``: a federated run with Flower's simulation engine on this machine.

One SuperLink in simulation mode runs the ServerApp and N ClientApps (N = ``sites.n_sites``)
on Ray, ``simulation.client_cpus`` CPUs each: the same app, messages and code paths as a real
deployment, minus the network. Faults (stragglers, dropouts, malicious sites) come from the
config, so partial participation and robust aggregation get exercised with real processes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from federated.config import FLConfig
from federated.launcher import SuperLink
from federated.protocol import RUN_CONFIG_PATH, RUN_DIR
from federated.runs import FLRunResult, RoundProgress, finish_run, prepare_run_dir
from federated.server import RESULT_FILE


def simulate(config: FLConfig, run_dir: Path | None = None, progress: bool = False) -> FLRunResult:
    """One federated run on Flower's simulation engine; ``progress`` prints each round."""
    config, run_dir = prepare_run_dir(config, run_dir)
    home = Path(tempfile.mkdtemp(prefix="secureai-flwr-"))
    started = time.monotonic()
    try:
        with SuperLink(home, run_dir / "logs", simulation=True) as link:
            run_id = link.run_app(
                {RUN_CONFIG_PATH: str(run_dir / "config.yaml"), RUN_DIR: str(run_dir)},
                {
                    "num-supernodes": config.sites.n_sites,
                    "client-resources-num-cpus": config.simulation.client_cpus,
                },
            )
            try:
                status = link.wait(
                    run_id,
                    config.simulation.timeout_s,
                    on_poll=RoundProgress(run_dir, config.federation.rounds) if progress else None,
                    result_file=run_dir / RESULT_FILE,
                )
            finally:
                log = link.logs(run_id)
                (run_dir / "logs" / "flower.log").write_text(log)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    wall = time.monotonic() - started
    return finish_run(config, run_dir, "federated-simulation", status, log, wall)
