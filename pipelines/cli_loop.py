"""``secureai sidecar`` and ``secureai coordinator``: the living loop's two long-running services.

Wired into ``pipelines/cli.py`` with ``cli_loop.register(sub)``. A site runs ``secureai run``
(scoring, with ``training_window:``) and ``secureai sidecar`` beside it; the organisation runs
one ``secureai coordinator``. docs/loop.md has the design and the demo (``make demo-loop``).
"""

from __future__ import annotations

import argparse
from typing import Any


def _config_exists(path: str) -> None:
    """A missing config answers before the Flower and torch imports (seconds)."""
    from pathlib import Path

    from pipelines.cli_base import CLIError

    if not Path(path).is_file():
        raise CLIError(f"config file not found: {path}")


def cmd_sidecar(args: argparse.Namespace) -> int:
    _config_exists(args.config)
    from federated.sidecar import run_sidecar

    return run_sidecar(args.config)


def cmd_coordinator(args: argparse.Namespace) -> int:
    _config_exists(args.config)
    from federated.coordinator import run_coordinator

    return run_coordinator(args.config)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sidecar",
        help="a site's SuperNode + drift reports: trains on the site's window under DP, "
        "publishes into its repository",
    )
    p.add_argument("--config", default="configs/sidecar.yml")
    p.set_defaults(func=cmd_sidecar)
    p = sub.add_parser(
        "coordinator",
        help="the SuperLink + drift inbox: starts federated runs on drift or a schedule",
    )
    p.add_argument("--config", default="configs/coordinator.yml")
    p.set_defaults(func=cmd_coordinator)
