"""``python -m federated.supernode --poll-s 1 <flower-supernode arguments>``: Flower's own
SuperNode, polling the SuperLink more often when it is idle.

Why: Flower 1.41's SuperNode (``flwr.supernode.start_client_internal``) sleeps a fixed 3 s
after every pull that brought no message. A federated run is a chain of messages (one per site
per round, then the final query and publish), and each waits for the site's next poll: with 3 s
the idle polls were a large share of a short run's wall time (measured: a 2-round DP run over
TLS took 79 s, an end-to-end loop run most of its 7 minutes). The SuperLink is on the same
host or network and a pull is one small request, so polling every second costs nothing.

How: this module starts the real ``flower-supernode`` entry point (same argument parsing, TLS,
node authentication, SuperExec and ClientApp processes) after replacing the ``time`` module
that ``start_client_internal`` sees with one whose ``sleep`` is capped at ``poll_s``. Only that
module's sleeps change: the idle poll (3 s -> ``poll_s``) and the 0.5 s waits for a reply
(kept: capped at ``poll_s`` they stay 0.5 s when ``poll_s >= 0.5``). Nothing else in Flower is
touched, so a Flower upgrade that renames the loop only loses the speed-up (the check below
fails loudly instead of silently doing nothing).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_POLL_S = 1.0
"""Idle poll of the SuperNodes this project starts (Flower's own: 3 s)."""


class CappedSleep:
    """Stands in for the ``time`` module inside ``start_client_internal``: ``sleep`` is capped
    at ``poll_s``; every other attribute is the real ``time`` module's.

    >>> slept: list[float] = []
    >>> clock = CappedSleep(1.0, sleep=slept.append)
    >>> clock.sleep(3); clock.sleep(0.5)
    >>> slept  # the idle poll is capped, the shorter reply waits are not
    [1.0, 0.5]
    >>> clock.monotonic is time.monotonic
    True
    """

    def __init__(self, poll_s: float, sleep: Callable[[float], Any] = time.sleep) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self.poll_s = poll_s
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        self._sleep(min(seconds, self.poll_s))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def patch_idle_poll(poll_s: float) -> types.ModuleType:
    """Make Flower's SuperNode loop sleep at most ``poll_s`` between pulls; returns the patched
    module. Raises ``RuntimeError`` when the installed Flower no longer has the loop's ``time``
    (an upgrade moved it: this patch must be revisited rather than silently do nothing)."""
    import flwr.supernode.start_client_internal as loop

    current = getattr(loop, "time", None)
    if not (current is time or isinstance(current, CappedSleep)):
        raise RuntimeError(
            "flwr.supernode.start_client_internal has no module-level `time` any more "
            "(a Flower upgrade?): revisit federated/supernode.py"
        )
    loop.time = CappedSleep(poll_s)  # type: ignore[assignment]
    return loop


def command(poll_s: float, flower_args: Sequence[str]) -> list[str]:
    """The command line that runs a SuperNode with ``poll_s``: ``flower_args`` are the
    ``flower-supernode`` arguments (without the program name)."""
    return [sys.executable, "-m", "federated.supernode", "--poll-s", str(poll_s), *flower_args]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``--poll-s``, patch the loop, hand every other argument to ``flower-supernode``."""
    parser = argparse.ArgumentParser(
        prog="python -m federated.supernode",
        description="flower-supernode with a shorter idle poll of the SuperLink",
        add_help=False,  # --help goes to flower-supernode
        allow_abbrev=False,  # never take one of its options for ours
    )
    parser.add_argument("--poll-s", type=float, default=DEFAULT_POLL_S)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    patch_idle_poll(args.poll_s)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
