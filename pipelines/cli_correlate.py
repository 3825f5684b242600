"""``secureai correlate``: the organisation's cross-site correlator (docs/triage.md).

Wired into ``pipelines/cli.py`` with ``cli_correlate.register(sub)``. Each site runs
``secureai run`` with ``incidents`` (a site name) and ``correlation: {enabled: true}``; the
organisation runs one ``secureai correlate`` between the correlation and campaigns topics.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def cmd_correlate(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from pipelines.cli_base import CLIError
    from pipelines.correlate import load_correlator_config, run_correlator

    config = load_correlator_config(args.config)
    if args.bootstrap_servers:
        kafka = config.kafka.model_copy(update={"bootstrap_servers": args.bootstrap_servers})
        config = config.model_copy(update={"kafka": kafka})
    if args.verbose:
        for name in ("pipelines", "morpheus_ext"):
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger().setLevel(logging.INFO)
    try:
        summary = run_correlator(config)
    except (KafkaException, RuntimeError) as exc:
        raise CLIError(f"correlator stopped: {exc}") from None
    print(json.dumps(summary))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "correlate",
        help="cross-site correlation: sites' keyed indicators in, campaign notices out",
    )
    p.add_argument("--config", default="configs/correlator.yml")
    p.add_argument("--bootstrap-servers", help="override kafka.bootstrap_servers")
    p.add_argument("-v", "--verbose", action="store_true", help="log campaigns as they form")
    p.set_defaults(func=cmd_correlate)
