"""Durable baselines on a stream: lock, restore, checkpoint every few seconds, and replay rules.

The baselines are learned from the stream, so a restart must neither forget them nor learn an
event twice (docs/fingerprinting.md, "Durability"). Per partition this keeps two marks:

* ``learned``: the next offset the baselines have learned through (saved in the checkpoint,
  together with the state, atomically: :meth:`EntityBaselines.checkpoint`);
* ``emit_from``: the group's committed offset at assignment (outputs below it were delivered).

A replayed event below ``learned`` is scored without being learned again; one below
``emit_from`` is learned without being emitted again (:meth:`BaselineCheckpointer.split`). One
process holds a checkpoint at a time (an ``flock`` on ``<file>.lock``).

>>> from morpheus_ext.stages.input.sources import Origin
>>> marks = BaselineCheckpointer(None, None, 10.0)     # no file: marks only
>>> marks.learned[("events", 0)] = 5                   # baselines hold offsets 0..4
>>> marks.emit_from[("events", 0)] = 3                 # outputs of 0..2 were delivered
>>> batch = ConsumedBatch()
>>> for offset in range(2, 7):
...     batch.append(b"{}", Origin("events", 0, offset), -1)
>>> part, learn, emit, rest = marks.split(batch)
>>> [o.offset for o in part.raw.origins], learn, emit  # 3, 4: re-score, do not learn
([3, 4], False, True)
>>> [o.offset for o in rest.raw.origins]               # 5, 6: learn and emit, next
[5, 6]
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from morpheus_ext.stages.input.kafka_source import TP, ConsumedBatch
from morpheus_ext.stages.postprocess.fingerprint.baselines import CheckpointError, EntityBaselines

log = logging.getLogger(__name__)


class CheckpointInUse(CheckpointError):
    """Another process holds this checkpoint's lock."""


class BaselineCheckpointer:
    """The baselines' checkpoint file and replay marks for one pipeline process."""

    def __init__(self, baselines: EntityBaselines | None, path: Path | None, interval_s: float):
        self.baselines = baselines
        self.path = path if baselines is not None else None
        self.interval_s = interval_s
        self.learned: dict[TP, int] = {}
        self.emit_from: dict[TP, int] = {}
        self.checkpoints = 0
        self._next = 0.0
        self._lock_fd: int | None = None

    @property
    def locked(self) -> bool:
        """This process holds the checkpoint (between :meth:`open` and :meth:`release`)."""
        return self._lock_fd is not None

    # ------------------------------------------------------------------ file
    def open(self) -> None:
        """Lock this instance's checkpoint and restore the baselines and offsets from it."""
        self._next = time.monotonic() + self.interval_s
        path = self.path
        if path is None or self.baselines is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointInUse(
                f"fingerprint checkpoint {path} is in use by another process; give each "
                "process its own fingerprint.instance_id (or --instance-id)"
            ) from None
        self._lock_fd = fd
        if not path.exists():
            log.info("fingerprint: no checkpoint at %s; baselines start empty", path)
            return
        try:
            offsets = self.baselines.restore(path)
        except CheckpointError:
            self.release()
            raise
        except (OSError, ValueError, KeyError) as exc:  # a truncated or foreign file
            self.release()
            raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition(":")
            self.learned[(topic, int(partition))] = offset
        log.info(
            "fingerprint: restored %d entities from %s (offsets %s)",
            len(self.baselines),
            path,
            ", ".join(f"{k}={v}" for k, v in sorted(offsets.items())) or "none",
        )

    def checkpoint(self) -> None:
        """Write the baselines with the offsets they reflect (atomic; see EntityBaselines)."""
        self._next = time.monotonic() + self.interval_s
        if self.path is None or self.baselines is None:
            return
        started = time.perf_counter()
        offsets = {f"{t}:{p}": o for (t, p), o in sorted(self.learned.items())}
        self.baselines.checkpoint(self.path, offsets)
        self.checkpoints += 1
        log.info(
            "checkpoint: %d entities through %d partitions in %.0f ms",
            len(self.baselines),
            len(offsets),
            (time.perf_counter() - started) * 1000,
        )

    def checkpoint_if_due(self) -> None:
        if time.monotonic() >= self._next:
            self.checkpoint()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ marks
    def mark_learned(self, next_offsets: dict[TP, int]) -> None:
        """A batch was learned: the baselines now hold everything below these offsets."""
        learned = self.learned
        for tp, nxt in next_offsets.items():
            if nxt > learned.get(tp, 0):
                learned[tp] = nxt

    def start_offsets(self, committed: list[tuple[TP, int]]) -> tuple[list[tuple[TP, int]], bool]:
        """Where each assigned partition starts: min(checkpoint offset, group's committed offset).

        ``committed`` holds the group's offsets (negative: none). Returns (partition, start
        offset; negative: wherever ``auto.offset.reset`` says) and whether a partition is new to
        these baselines: then call :meth:`checkpoint` before learning from it.

        A partition the checkpoint does not know yet is learned from the group's offset on.
        Everything below the checkpoint offset is in the baselines already (not learned again);
        everything below the committed offset was emitted already (not emitted again). A
        partition with no committed offset emits everything (at-least-once), still learning
        only what the checkpoint lacks.
        """
        starts: list[tuple[TP, int]] = []
        first_time = False
        for tp, offset in committed:
            learned = self.learned.get(tp)
            if learned is None:  # new to these baselines: they learn it from where we start
                first_time = True
                learned = self.learned[tp] = max(offset, 0)
            if offset >= 0:
                self.emit_from[tp] = offset
                start = min(offset, learned)
            else:
                self.emit_from[tp] = 0
                start = -1
            if learned != offset:
                log.info(
                    "%s[%d]: checkpoint at %d, group committed %s: starting at %s",
                    tp[0],
                    tp[1],
                    learned,
                    offset if offset >= 0 else "none",
                    start if start >= 0 else "auto.offset.reset",
                )
            starts.append((tp, start))
        return starts, first_time

    def split(self, batch: ConsumedBatch) -> tuple[ConsumedBatch, bool, bool, ConsumedBatch]:
        """(events of one kind, learn them, emit them, the rest of the batch in order).

        After a restart or a reassignment a batch may mix replayed kinds; per partition the
        kinds are offset ranges, processed in order: re-score or learn-only first, then both.
        The caller processes the rest next.
        """
        rest = ConsumedBatch()
        learned, emit_from = self.learned, self.emit_from
        if all(
            first >= learned.get(tp, 0) and first >= emit_from.get(tp, 0)
            for tp, first in batch.first_offsets.items()
        ):
            return batch, True, True, rest  # the common case: nothing replayed
        kinds: list[tuple[bool, bool]] = []
        for origin in batch.raw.origins:
            tp = (origin.source, origin.partition)
            kinds.append(
                (origin.offset >= learned.get(tp, 0), origin.offset >= emit_from.get(tp, 0))
            )
        order = [(False, True), (True, False), (True, True)]
        present = [k for k in order if k in kinds]
        if not present:  # below both marks (a rewind after a failed transaction): done already
            return ConsumedBatch(), False, False, rest
        now = present[0]
        part = ConsumedBatch()
        for (value, origin, ts), kind in zip(batch.entries(), kinds, strict=True):
            if kind != (False, False):
                (part if kind == now else rest).append(value, origin, ts)
        return part, now[0], now[1], rest
