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
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

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


EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader went away (`| head`)."""


def at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """An argparse ``type=`` that refuses values below ``minimum`` (``--batch-size 0``).

    >>> at_least(1)("5"), at_least(0.0, float)("0.5")
    (5, 0.5)
    >>> at_least(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be at least 1 (got 0)
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} (got {text})")
        return value

    return parse


def validation_message(exc: Exception) -> str:
    """A pydantic ValidationError as one line naming every field that failed."""
    errors = exc.errors()  # type: ignore[attr-defined]
    title = getattr(exc, "title", "")
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{title}: " + "; ".join(parts) + more


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
    except BrokenPipeError:
        # the reader of our output went away (`| head`): nothing to report; stop Python's own
        # flush at exit from failing again on the closed pipe
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if args.debug or os.environ.get("SECUREAI_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
            # a pydantic model built from the command's arguments: the user's values
            print(f"secureai: error: {validation_message(exc)}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, EXPECTED_ERRORS):
            print(f"secureai: error: {msg}", file=sys.stderr)
            # a user's mistake is a usage error (2); an error class may say it is a runtime
            # failure the user did not cause (1: a broker that does not answer)
            return int(getattr(exc, "exit_code", EXIT_USAGE))
        print(
            f"secureai: internal error: {type(exc).__name__}: {msg} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (``--help`` still shows the usage);
    subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def standalone_parser(
    register: Callable[[argparse._SubParsersAction], None],
) -> argparse.ArgumentParser:
    """A ``secureai``-like parser holding one module's commands (``python -m pipelines.cli_x``)."""
    parser = OneLineParser(prog="secureai")
    parser.add_argument("--debug", action="store_true")
    register(parser.add_subparsers(dest="command", required=True))
    return parser
