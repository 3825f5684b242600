"""Write a synthetic labelled security-log file (auth + netflow) for demos, tests and benchmarks.

Thin wrapper over synthetic so data sets can be made from the shell or Makefile:

    python scripts/synthetic_logs.py --events 100000 --anomaly-rate 0.02 --out runs/events.parquet

Prints one summary line on success. Bad arguments print one ``error: ...`` line on stderr and
exit with status 2 (argparse's convention), never a traceback, so callers can surface it as is.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from synthetic import SyntheticConfig, generate, write_events

# Config field -> CLI flag, so validation errors name the flag the user actually typed.
FLAGS: dict[str, str] = {
    "n_events": "--events",
    "anomaly_rate": "--anomaly-rate",
    "n_sites": "--sites",
    "n_users": "--users",
    "n_hosts": "--hosts",
    "heterogeneity": "--heterogeneity",
    "seed": "--seed",
    "days": "--days",
    "entity_relative": "--entity-relative",
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we want exactly one line on stderr."""

    def error(self, message: str) -> NoReturn:
        """Replace argparse's multi-line usage dump with a single line and exit 2."""
        _fail(message)


def _fail(message: str) -> NoReturn:
    """One clear line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """Flags mirror SyntheticConfig; defaults are left to the config so there is one source."""
    parser = _ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, dest="n_events", help="total events")
    parser.add_argument("--anomaly-rate", type=float, dest="anomaly_rate")
    parser.add_argument("--sites", type=int, dest="n_sites")
    parser.add_argument("--users", type=int, dest="n_users")
    parser.add_argument("--hosts", type=int, dest="n_hosts")
    parser.add_argument(
        "--heterogeneity", type=float, help="0 = IID sites, 1 = strongly site-specific"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument(
        "--entity-relative",
        action="store_true",
        default=None,
        help="anomalies use population-common values that are new only for the user/host",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .jsonl or .parquet")
    return parser


def _config(args: argparse.Namespace) -> SyntheticConfig:
    """Build the config from the flags that were given; validation errors become one line."""
    given = {k: v for k, v in vars(args).items() if k != "out" and v is not None}
    try:
        return SyntheticConfig(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            where = FLAGS.get(loc, loc)
            problems.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
        _fail("; ".join(problems))


def _summary(df_len: int, n_auth: int, n_anom: int, out: Path, seconds: float) -> str:
    """The single line a human or a Makefile log wants to see."""
    share = n_anom / df_len if df_len else 0.0
    return (
        f"wrote {df_len} events ({n_auth} auth, {df_len - n_auth} netflow; "
        f"{n_anom} anomalous = {share:.2%}) to {out} in {seconds:.2f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, generate, write, print the summary; returns the process exit status."""
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        _fail(f"--out {str(out)!r}: use a .jsonl or .parquet path")
    config = _config(args)
    started = time.perf_counter()
    df = generate(config)
    try:
        path = write_events(df, out)
    except (OSError, ValueError) as exc:
        _fail(f"cannot write {str(out)!r}: {exc}")
    n_auth = int((df["event_type"] == "auth").sum())
    n_anom = int(df["label"].sum())
    print(_summary(len(df), n_auth, n_anom, path, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
