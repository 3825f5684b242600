#!/usr/bin/env python
"""All in one: certificates, a TLS + node-auth SuperLink, one SuperNode per site, one run.

    .venv/bin/python scripts/fl/run_local_deployment.py --config configs/fed_dp_small.yml \
        [--work-dir /tmp/fl-deploy] [--run-dir runs/fed-deploy]

The same as ``secureai fl deploy``; step by step with the shell scripts next to this file:
gen_certs.py -> start_superlink.sh -> start_supernodes.sh -> run_app.sh.
"""

from __future__ import annotations

import argparse
import sys

from pipelines import cli_fl


def main() -> int:
    p = argparse.ArgumentParser(prog="run_local_deployment")
    cli_fl.register(p.add_subparsers(dest="command", required=True))
    return int(cli_fl.cmd_deploy(p.parse_args(["fl", "deploy", *sys.argv[1:]])))


if __name__ == "__main__":
    sys.exit(main())
