"""The site's training window: its recent scored events, on its own disk, for its sidecar.

What is kept: every event the pipeline *scored* (dead letters never), as the exact bytes the
stream carried, plus what serving said about it (score, threshold, model version) and when it
arrived. Retraining decodes and featurizes those bytes with the same stages as serving, so a
retrained model sees precisely the numbers the served one saw. What enters *training* from the
window (trimming the highest-scoring tail, analyst-confirmed incidents) is decided when the
sidecar reads it (:func:`read_window`); the writer keeps everything, so that decision can change
without losing data. See docs/loop.md.

Layout: Parquet files partitioned by arrival hour (Hive style, readable by any Arrow, Spark or
DuckDB tool)::

    <path>/dt=2026-12-05/hr=08/part-<first arrival ns>-<pid>.parquet   (LZ4)

columns ``event`` (binary JSON), ``event_id`` (string), ``score``/``threshold`` (float32),
``model_version`` (int32), ``top_field`` (int16: the layout index of the field that contributed
most to the score, the first of the record's reasons; -1 unknown), ``arrived`` (timestamp,
UTC). A file is written under a hidden name and renamed, so a reader never sees half a file.

Off the hot path: :meth:`TrainingWindowWriter.offer` only appends references to a bounded queue
(no copy, no conversion); a background thread builds Arrow tables, writes files every
``flush_rows`` rows or ``flush_interval_s`` seconds and applies retention (by age, then by total
size, oldest hour first). When the queue is full the batch is *not* kept and counted in
``secureai_window_rows_dropped_total``: the window is a sample of the stream for training, and
scoring must never wait for a disk.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> writer = TrainingWindowWriter(TrainingWindowConfig(path=root), event_id="event_id")
>>> writer.offer_rows([b'{"event_id": "e1"}', b'{"event_id": "e2"}'], ["e1", "e2"],
...                   np.array([0.1, 9.0], np.float32), 1.0, np.array([1, 1], np.int32))
True
>>> writer.close()
>>> frame = read_window(root)
>>> frame["event_id"].tolist(), frame["score"].tolist()[1], frame["model_version"].tolist()
(['e1', 'e2'], 9.0, [1, 1])
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import Field

from morpheus_ext.config_io import StrictModel

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("event", pa.binary()),
        ("event_id", pa.string()),
        ("score", pa.float32()),
        ("threshold", pa.float32()),
        ("model_version", pa.int32()),
        ("top_field", pa.int16()),
        ("arrived", pa.timestamp("ms", tz="UTC")),
    ]
)


class TrainingWindowConfig(StrictModel):
    """``training_window:`` of a pipeline config (null: keep nothing)."""

    path: Path
    """A folder on the site's own disk (never shared with another site)."""
    max_age_hours: float = Field(default=168.0, gt=0)
    """Hours of arrivals kept; older hour partitions are deleted."""
    max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    """Total size kept; the oldest hour partitions go first."""
    flush_rows: int = Field(default=50_000, ge=1)
    flush_interval_s: float = Field(default=10.0, gt=0)
    queue_batches: int = Field(default=256, ge=1)
    """Batches waiting for the writer thread; beyond that a batch is not kept (and counted)."""


@dataclass
class _Pending:
    events: Sequence[bytes]
    event_ids: Sequence[Any]
    scores: np.ndarray
    threshold: float
    versions: np.ndarray
    arrived_ns: int
    top_fields: np.ndarray | None = None


class TrainingWindowWriter:
    """Keeps scored events in the window from a background thread (see the module doc)."""

    def __init__(self, config: TrainingWindowConfig, event_id: str | None) -> None:
        self.config = config
        self.event_id = event_id
        self.root = Path(config.path)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._queue: queue.Queue[_Pending | None] = queue.Queue(config.queue_batches)
        self.rows_written = 0
        self.rows_dropped = 0
        self.files_written = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="training-window", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ hot path
    def offer(self, result: Any) -> bool:
        """Keep the scored events of a :class:`~morpheus_ext.pipeline.BatchResult`."""
        if result.raw is None or result.featurized is None or len(result.records) == 0:
            return True
        positions = result.record_positions()
        values = result.raw.values
        frame = result.featurized.frame
        ids = frame[self.event_id].to_numpy() if self.event_id in frame else [None] * len(frame)
        out = result.outputs
        top = out.get("TOP_FIELDS")
        # every value scored (the usual case): the batch's own list, no per-row copy
        events = values if len(positions) == len(values) else [values[i] for i in positions]
        return self.offer_rows(
            events,
            ids,
            np.asarray(out["ANOMALY_SCORE"]).reshape(-1),
            float(np.asarray(out["THRESHOLD"]).reshape(-1)[0]),
            np.asarray(out["MODEL_VERSION"]).reshape(-1),
            None if top is None else np.asarray(top)[:, 0],
        )

    def offer_rows(
        self,
        events: Sequence[bytes],
        event_ids: Sequence[Any],
        scores: np.ndarray,
        threshold: float,
        versions: np.ndarray,
        top_fields: np.ndarray | None = None,
    ) -> bool:
        """Queue rows for the writer; False (and counted) when the queue is full."""
        from morpheus_ext.prometheus_metrics import pipeline_metrics

        item = _Pending(events, event_ids, scores, threshold, versions, time.time_ns(), top_fields)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.rows_dropped += len(events)
            pipeline_metrics().window_rows_dropped.inc(len(events))
            return False
        return True

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        pending: list[_Pending] = []
        rows = 0
        deadline = time.monotonic() + self.config.flush_interval_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = _Pending([], [], np.zeros(0), 0.0, np.zeros(0), 0)  # time to flush
            if item is None:
                self._flush(pending)
                return
            if len(item.events):
                pending.append(item)
                rows += len(item.events)
            if rows >= self.config.flush_rows or time.monotonic() >= deadline:
                try:
                    self._flush(pending)
                    self._retain()
                except Exception as exc:  # a full disk must not stop scoring: say it, count it
                    self._error = exc
                    log.warning("training window: writing failed (%s); rows not kept", exc)
                    self.rows_dropped += rows
                    from morpheus_ext.prometheus_metrics import pipeline_metrics

                    pipeline_metrics().window_rows_dropped.inc(rows)
                pending, rows = [], 0
                deadline = time.monotonic() + self.config.flush_interval_s

    def _flush(self, pending: list[_Pending]) -> None:
        if not pending:
            return
        from morpheus_ext.prometheus_metrics import pipeline_metrics

        ids = [None if i is None else str(i) for p in pending for i in p.event_ids]
        table = pa.table(
            {
                "event": _binary_array([p.events for p in pending]),
                "event_id": pa.array(ids, pa.string()),
                "score": pa.array(np.concatenate([p.scores for p in pending]), pa.float32()),
                "threshold": pa.array(
                    np.concatenate([np.full(len(p.events), p.threshold) for p in pending]),
                    pa.float32(),
                ),
                "model_version": pa.array(
                    np.concatenate([p.versions for p in pending]).astype(np.int32), pa.int32()
                ),
                "top_field": pa.array(
                    np.concatenate(
                        [
                            np.full(len(p.events), -1)
                            if p.top_fields is None
                            else np.asarray(p.top_fields)
                            for p in pending
                        ]
                    ).astype(np.int16),
                    pa.int16(),
                ),
                "arrived": pa.array(
                    np.concatenate(
                        [np.full(len(p.events), p.arrived_ns // 1_000_000) for p in pending]
                    ),
                    pa.timestamp("ms", tz="UTC"),
                ),
            },
            schema=SCHEMA,
        )
        first = datetime.fromtimestamp(pending[0].arrived_ns / 1e9, UTC)
        folder = self.root / f"dt={first:%Y-%m-%d}" / f"hr={first:%H}"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"part-{pending[0].arrived_ns}-{os.getpid()}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp, compression="lz4")  # cheap on the cores scoring shares
        os.replace(tmp, folder / name)
        self.rows_written += table.num_rows
        self.files_written += 1
        pipeline_metrics().window_rows_written.inc(table.num_rows)

    def _retain(self) -> None:
        """Delete hour partitions older than ``max_age_hours``, then the oldest until the
        window fits ``max_bytes``."""
        hours = sorted(_hour_partitions(self.root))
        cutoff = datetime.now(UTC) - timedelta(hours=self.config.max_age_hours)
        sizes = {h: sum(f.stat().st_size for f in h[1].glob("*.parquet")) for h in hours}
        total = sum(sizes.values())
        for start, folder in hours[:-1]:  # never the hour being written
            if start + timedelta(hours=1) <= cutoff or total > self.config.max_bytes:
                total -= sizes[(start, folder)]
                shutil.rmtree(folder, ignore_errors=True)
                if not any(folder.parent.iterdir()):
                    folder.parent.rmdir()

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)


def _binary_array(chunks: list[Sequence[bytes]]) -> pa.Array:
    """One Arrow binary array from lists of bytes: a single join and the offsets (Arrow's
    per-object conversion held the GIL ~5x longer, time the scoring thread waits)."""
    values = [v for chunk in chunks for v in chunk]
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:  # binary offsets are int32: flush_rows x event size < 2 GiB
        raise ValueError("a training-window file over 2 GiB: lower training_window.flush_rows")
    offsets = offsets.astype(np.int32)
    data = b"".join(values)
    return pa.Array.from_buffers(
        pa.binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _hour_partitions(root: Path) -> list[tuple[datetime, Path]]:
    out = []
    for folder in root.glob("dt=*/hr=*"):
        try:
            start = datetime.strptime(
                f"{folder.parent.name[3:]} {folder.name[3:]}", "%Y-%m-%d %H"
            ).replace(tzinfo=UTC)
        except ValueError:
            continue
        out.append((start, folder))
    return out


def read_window(
    root: Path,
    hours: float | None = None,
    now: datetime | None = None,
    until: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The window's rows (all columns, or ``columns`` plus ``event_id`` and ``arrived``, in
    arrival order): optionally only those that arrived in the ``hours`` before ``now`` and not
    after ``until`` (a run's snapshot). Duplicate event ids (a replay after a crash) keep their
    first arrival.

    The time bounds filter *while* reading (Arrow skips the row groups whose ``arrived``
    statistics fall outside), and ``columns`` leaves the event bytes unread when they are not
    needed: a sidecar's drift report every few seconds looks at the last minutes of scores
    only, not at an hour of events."""
    root = Path(root)
    files = sorted(str(p) for p in root.glob("dt=*/hr=*/*.parquet"))
    wanted = None
    if columns is not None:
        unknown = sorted(set(columns) - set(SCHEMA.names))
        if unknown:
            raise ValueError(f"not columns of the training window: {unknown}")
        wanted = [n for n in SCHEMA.names if n in {*columns, "event_id", "arrived"}]
    if not files:
        empty = SCHEMA.empty_table()
        return (empty if wanted is None else empty.select(wanted)).to_pandas()
    stamp = pa.timestamp("ms", tz="UTC")
    bounds = []
    if hours is not None:
        since = (now or datetime.now(UTC)) - timedelta(hours=hours)
        bounds.append(ds.field("arrived") >= pa.scalar(since, stamp))
    if until is not None:
        bounds.append(ds.field("arrived") <= pa.scalar(until, stamp))
    condition = None
    for bound in bounds:
        condition = bound if condition is None else condition & bound
    table = ds.dataset(files, schema=SCHEMA, format="parquet").to_table(
        columns=wanted, filter=condition
    )
    frame = table.to_pandas().sort_values("arrived", kind="stable").reset_index(drop=True)
    dup = frame["event_id"].notna() & frame["event_id"].duplicated()
    return frame[~dup].reset_index(drop=True)
