"""The incident stage's shortcuts give what the plain code gives: the checkpoint's bytes
(closed records serialised once) and the record times (``iso`` without a datetime)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_ext.stages.postprocess.incidents import IncidentConfig, IncidentTracker, iso

T0 = 1_790_000_000.0


def _stream(seed: int, n: int = 400) -> tuple[list[dict[str, Any]], list[float]]:
    rng = random.Random(seed)
    records, times = [], []
    for i in range(n):
        field = rng.choice(["country", "device"])
        records.append(
            {
                "event_id": f"e{i}",
                "entity": f"u{rng.randrange(3)}",
                "anomaly_score": rng.uniform(0.5, 40),
                "threshold": 1.0,
                "is_anomaly": rng.random() < 0.6,
                "reasons": [{"field": field, "value": "x", "z": 5.0}],
            }
        )
        times.append(T0 + i * rng.uniform(0, 60))
    return records, times


def test_the_checkpoint_is_the_state_serialised(tmp_path: Path) -> None:
    """Through openings, closings, evictions from ``recently_closed`` and event ids beyond
    those a record lists (``hidden``): every checkpoint is ``orjson.dumps(state())``."""
    t = IncidentTracker(
        IncidentConfig(enabled=True, site="hq", gap_s=600, recently_closed=5, event_ids_in_record=2)
    )
    records, times = _stream(7)
    path = tmp_path / "state.json"
    met = set()
    for a in range(0, len(records), 25):
        t.observe(records[a : a + 25], times[a : a + 25])
        t.checkpoint(path)
        assert path.read_bytes() == orjson.dumps(t.state())
        met |= {"closed"} if len(t.closed) == 5 else set()
        met |= {"hidden"} if t._hidden_ids else set()
    assert met == {"closed", "hidden"}  # evictions and hidden ids were met
    restored = IncidentTracker(t.config)
    assert restored.restore(path)
    assert restored.encoded_state() == t.encoded_state()


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4e9) | st.integers(0, 4_000_000_000).map(float))
def test_iso_is_the_datetime_to_the_second(epoch_s: float) -> None:
    near = [epoch_s, math.floor(epoch_s) + 0.9999995, math.floor(epoch_s) + 0.99999949]
    for x in near:
        assert iso(x) == datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_sinks_write_each_record_as_orjson_spells_it() -> None:
    """A closed record carries the bytes the recently-closed memory keeps; the sinks write
    those instead of serialising the dict again: the same bytes, also for a replay's copy."""
    from morpheus_ext.stages.output.kafka_sink import incident_messages
    from morpheus_ext.stages.postprocess.incidents import ClosedRecord

    t = IncidentTracker(IncidentConfig(enabled=True, site="hq", gap_s=600))
    records, times = _stream(11)
    kinds = set()
    for a in range(0, len(records), 40):
        out = t.observe(records[a : a + 40], times[a : a + 40])
        out += t.observe(records[a : a + 40], times[a : a + 40])  # replayed: re-emitted
        for record, (key, value) in zip(out, incident_messages(out), strict=True):
            assert key == record["incident_id"].encode()
            assert value == orjson.dumps(dict(record))
            kinds.add((record["status"], type(record) is ClosedRecord))
    assert kinds == {("open", False), ("closed", True)}
