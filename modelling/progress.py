"""Progress of long work: one line per training epoch (the loss, the validation loss, the time
per epoch and how long at most is left; early stopping may end it sooner), and one line per
finished step after it (calibration, export, the ONNX parity check, evaluation), so a command
that runs for minutes never sits silent.

On a terminal the line is rewritten in place; in a log (CI, a pipe) each epoch is its own line.
Written to stderr, so a command's own output on stdout stays clean.

>>> import io
>>> out = io.StringIO()
>>> p = EpochProgress(total=10, patience=3, stream=out, clock=iter([0.0, 2.0, 4.5]).__next__)
>>> p(EpochRecord(1, 0.0123, 0.0150))
>>> p(EpochRecord(2, 0.0101, 0.0140))
>>> print(out.getvalue().strip())
train: epoch 1/10  loss 0.01230  val 0.01500  (2.0 s/epoch, <= 18 s left)
train: epoch 2/10  loss 0.01010  val 0.01400 *best  (2.2 s/epoch, <= 18 s left)
>>> out = io.StringIO()
>>> steps = Steps("train", stream=out, clock=iter([0.0, 0.4]).__next__)
>>> with steps("calibrated the threshold"):
...     pass
>>> print(out.getvalue().strip())
train: calibrated the threshold (0.4 s)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from modelling.training import EpochRecord


class EpochProgress:
    """Called with each finished epoch's record (``fit_autoencoder(progress=...)``)."""

    def __init__(
        self,
        total: int,
        patience: int,
        stream: TextIO | None = None,
        label: str = "train",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.patience, self.label = total, patience, label
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.best = float("inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, record: EpochRecord) -> None:
        elapsed = self.clock() - self.started
        per_epoch = elapsed / record.epoch
        improved = record.val_loss < self.best
        self.best = min(self.best, record.val_loss)
        left = per_epoch * (self.total - record.epoch)
        line = (
            f"{self.label}: epoch {record.epoch}/{self.total}  loss {record.train_loss:.5f}  "
            f"val {record.val_loss:.5f}{' *best' if improved and record.epoch > 1 else ''}  "
            f"({per_epoch:.1f} s/epoch, <= {_duration(left)} left)"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            if record.epoch == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, epochs: int) -> None:
        """After the last epoch (early stopping included): the total time, on its own line."""
        elapsed = self.clock() - self.started
        end = "\n" if self.tty and epochs != self.total else ""
        self.stream.write(
            f"{end}{self.label}: {epochs} epochs in {_duration(elapsed)}"
            f"{' (early stop)' if epochs < self.total else ''}\n"
        )
        self.stream.flush()


class Steps:
    """``with steps("exported ONNX"): ...`` writes ``label: exported ONNX (1.2 s)`` once the step
    has finished (to stderr; nothing when ``enabled`` is false, e.g. ``--no-progress``)."""

    def __init__(
        self,
        label: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.enabled, self.clock = label, enabled, clock
        self.stream = stream or sys.stderr

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        started = self.clock()
        yield
        if self.enabled:
            elapsed = self.clock() - started
            shown = f"{elapsed:.1f} s" if elapsed < 90 else _duration(elapsed)
            self.stream.write(f"{self.label}: {what} ({shown})\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
