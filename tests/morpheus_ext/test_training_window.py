"""The site's training window: what the writer keeps, retention, and never blocking scoring."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from morpheus_ext.stages.output.training_window import (
    SCHEMA,
    TrainingWindowConfig,
    TrainingWindowWriter,
    read_window,
)


def _rows(n: int, start: int = 0) -> tuple[list[bytes], list[str], np.ndarray, np.ndarray]:
    ids = [f"e{i}" for i in range(start, start + n)]
    events = [f'{{"event_id": "{i}"}}'.encode() for i in ids]
    return events, ids, np.arange(n, dtype=np.float32), np.ones(n, np.int32)


def test_rows_are_kept_exactly_once_in_hour_partitions_and_replays_are_deduplicated(
    tmp_path: Path,
) -> None:
    writer = TrainingWindowWriter(
        TrainingWindowConfig(path=tmp_path, flush_rows=100), event_id="event_id"
    )
    events, ids, scores, versions = _rows(250)
    for lo in range(0, 250, 50):
        assert writer.offer_rows(
            events[lo : lo + 50], ids[lo : lo + 50], scores[lo : lo + 50], 3.0, versions[:50]
        )
    writer.offer_rows(events[:10], ids[:10], scores[:10], 3.0, versions[:10])  # a replay
    writer.close()
    files = sorted(tmp_path.glob("dt=*/hr=*/*.parquet"))
    assert len(files) >= 2 and writer.rows_written == 260 and writer.rows_dropped == 0
    assert not list(tmp_path.rglob(".*.tmp"))  # written under a hidden name, then renamed
    assert pq.read_schema(files[0]).remove_metadata() == SCHEMA
    now = datetime.now(UTC)
    assert files[0].parent.name == f"hr={now:%H}" or files[0].parent.name == (
        f"hr={now - timedelta(hours=1):%H}"
    )
    frame = read_window(tmp_path)
    assert frame["event_id"].tolist() == ids  # the replayed ten appear once
    assert frame["threshold"].eq(3.0).all() and frame["model_version"].eq(1).all()
    assert frame["event"][7] == events[7]
    assert len(read_window(tmp_path, hours=1)) == 250
    assert len(read_window(tmp_path, hours=1, now=now + timedelta(hours=2))) == 0
    assert oct(tmp_path.stat().st_mode & 0o777) == "0o700" or os.name != "posix"
    # the drift report's read: scores only (no event bytes), the same rows, bounds filtered
    scores_only = read_window(
        tmp_path, hours=1, until=now + timedelta(minutes=1), columns=["score"]
    )
    assert list(scores_only.columns) == ["event_id", "score", "arrived"]
    assert scores_only["event_id"].tolist() == ids and scores_only["score"].tolist()[7] == 7.0
    assert len(read_window(tmp_path, until=now - timedelta(hours=1), columns=["score"])) == 0
    with pytest.raises(ValueError, match="not columns of the training window: \\['scores'\\]"):
        read_window(tmp_path, columns=["scores"])


def test_retention_by_age_and_by_size_deletes_the_oldest_hours(tmp_path: Path) -> None:
    config = TrainingWindowConfig(path=tmp_path, max_age_hours=3, max_bytes=1024**3)
    now = datetime.now(UTC)
    for age in (10, 5, 2, 1):  # hour partitions written earlier (by this or another process)
        hour = now - timedelta(hours=age)
        folder = tmp_path / f"dt={hour:%Y-%m-%d}" / f"hr={hour:%H}"
        folder.mkdir(parents=True)
        (folder / "part-1-1.parquet").write_bytes(b"x" * 4000)
    writer = TrainingWindowWriter(config, event_id="event_id")
    writer._retain()
    left = sorted(p.parent.name for p in tmp_path.glob("dt=*/hr=*/*.parquet"))
    expect = sorted(f"hr={now - timedelta(hours=a):%H}" for a in (2, 1))
    assert left == expect  # 10 h and 5 h old: past max_age_hours
    writer.config = config.model_copy(update={"max_bytes": 5000})
    writer._retain()
    left = [p.parent.name for p in tmp_path.glob("dt=*/hr=*/*.parquet")]
    assert left == [f"hr={now - timedelta(hours=1):%H}"]  # over the size: the older one went
    writer.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    """Scoring never waits for the disk: with the writer stuck, offers return at once."""
    writer = TrainingWindowWriter(
        TrainingWindowConfig(path=tmp_path, queue_batches=2, flush_rows=1),
        event_id="event_id",
    )
    events, ids, scores, versions = _rows(10)
    original = writer._flush

    def stuck(pending: list) -> None:  # a fake slow disk (unit test of our own logic)
        time.sleep(1.0)
        original(pending)

    writer._flush = stuck  # type: ignore[method-assign]
    start = time.monotonic()
    taken = [writer.offer_rows(events, ids, scores, 1.0, versions) for _ in range(50)]
    assert time.monotonic() - start < 0.5
    assert not all(taken) and writer.rows_dropped == 10 * taken.count(False)
    writer.close()
    assert writer.rows_written == 10 * taken.count(True)
