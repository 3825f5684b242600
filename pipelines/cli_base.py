"""What every ``secureai`` command shares: exit codes, the one-line error, and running a parser.

Every user-facing failure derives from :class:`~morpheus_ext.errors.SecureAIError` (one base
class across the layers), so :func:`run_cli` prints it as ``secureai: error: <one line>``;
anything else is a bug and says ``internal error`` with a hint to rerun with ``--debug``.
The command modules (``cli_kafka``, ``cli_fl``, ``cli_model``, ``cli_serve``) import this
module, never ``pipelines.cli``, so the CLI has no import cycle.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="secureai")
>>> _ = parser.add_argument("--debug", action="store_true")
>>> def fails(args):
...     raise CLIError("--events must be at least 1 (got -5)")
>>> parser.set_defaults(func=fails)
>>> import contextlib, io
>>> with contextlib.redirect_stderr(io.StringIO()) as err:
...     code = run_cli(parser, [])
>>> code, err.getvalue().strip()
(2, 'secureai: error: --events must be at least 1 (got -5)')
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from morpheus_ext.errors import SecureAIError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CLIError(SecureAIError):
    """Raised for conditions the user can fix; printed as one line."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    SecureAIError,
    FileNotFoundError,
    PermissionError,
)
"""Printed as one line: every user-facing error, and files the user named that cannot be read."""


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command and turn its failure into one line + exit code."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("secureai: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or os.environ.get("SECUREAI_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, EXPECTED_ERRORS):
            print(f"secureai: error: {msg}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"secureai: internal error: {type(exc).__name__}: {msg} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def standalone_parser(
    register: Callable[[argparse._SubParsersAction], None],
) -> argparse.ArgumentParser:
    """A ``secureai``-like parser holding one module's commands (``python -m pipelines.cli_x``)."""
    parser = argparse.ArgumentParser(prog="secureai")
    parser.add_argument("--debug", action="store_true")
    register(parser.add_subparsers(dest="command", required=True))
    return parser
