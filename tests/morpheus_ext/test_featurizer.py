"""Featurizer: determinism, documented hashing, per-row rejects, CPU/GPU parity (GPU only)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from morpheus_ext.backend import gpu_available
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.preprocess.featurizer import (
    Featurizer,
    bucket_of,
    canonical_str,
    iso_epoch_seconds,
)

NETFLOW = {
    "event_id": "e1",
    "timestamp": "2026-11-02T06:00:00.000Z",
    "src_ip": "10.0.0.7",
    "bytes_in": 1200,
    "bytes_out": 300,
    "packets": 4,
    "duration_ms": 15.0,
    "dst_port": 443,
    "protocol": "tcp",
    "tcp_flags": "PA",
}


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(rows))


def test_hash_is_the_documented_crc32() -> None:
    assert bucket_of("country", "US", 40) == zlib.crc32(b"country=US") % 40
    assert canonical_str(443.0) == canonical_str(443) == canonical_str("443") == "443"
    assert canonical_str(True) == "true"


def test_netflow_row_layout_numbers() -> None:
    fz = Featurizer(load_spec("netflow"))
    out = fz.transform(frame(NETFLOW))
    t = np.asarray(out.tensor)
    assert t.shape == (1, 256) and t.dtype == np.float32
    slots = {f.name: f for f in fz.layout.fields}
    assert t[0, slots["bytes_in"].offset] == pytest.approx(np.log1p(1200))
    hour = slots["hour"]  # 06:00 UTC -> angle pi/2
    assert t[0, hour.offset] == pytest.approx(1.0, abs=1e-6)
    assert t[0, hour.offset + 1] == pytest.approx(0.0, abs=1e-6)
    wd = slots["weekday"]  # Monday 06:00 is a quarter day into the week
    assert t[0, wd.offset] == pytest.approx(np.sin(2 * np.pi * 0.25 / 7), abs=1e-6)
    port = slots["dst_port"]
    one_hot = t[0, port.offset : port.stop]
    assert one_hot.sum() == 1.0 and one_hot[bucket_of("dst_port", "443", port.width)] == 1.0


def test_same_input_same_numbers_and_type_spellings_agree() -> None:
    fz = Featurizer(load_spec("netflow"))
    a = np.asarray(fz.transform(frame(NETFLOW, {**NETFLOW, "event_id": "e2"})).tensor)
    b = np.asarray(fz.transform(frame({**NETFLOW, "dst_port": "443", "bytes_in": "1200"})).tensor)
    np.testing.assert_array_equal(a[0], a[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_bad_rows_are_rejected_one_by_one_with_reasons() -> None:
    fz = Featurizer(load_spec("netflow"))
    rows = [
        NETFLOW,
        {**NETFLOW, "bytes_out": "lots"},
        {**NETFLOW, "timestamp": "not a time"},
        {k: v for k, v in NETFLOW.items() if k != "protocol"},
        {**NETFLOW, "packets": float("inf")},
        {**NETFLOW, "tcp_flags": {"syn": True}},
        {**NETFLOW, "duration_ms": True},
        {**NETFLOW, "timestamp": 1_793_000_000_000},  # epoch milliseconds are fine
    ]
    out = fz.transform(frame(*rows))
    assert out.positions.tolist() == [0, 7]
    reasons = {r.position: r.reason for r in out.rejects}
    assert reasons == {
        1: "field 'bytes_out': expected a number, got 'lots'",
        2: "field 'timestamp': cannot parse 'not a time' as a time",
        3: "missing required field 'protocol'",
        4: "field 'packets': number is not finite",
        5: "field 'tcp_flags': expected a scalar, got {'syn': True}",
        6: "field 'duration_ms': expected a number, got True",
    }
    assert len(out.frame) == 2 and out.frame["event_id"].tolist() == ["e1", "e1"]


def test_missing_column_rejects_every_row_and_extra_columns_are_ignored() -> None:
    fz = Featurizer(load_spec("netflow"))
    no_port = {k: v for k, v in NETFLOW.items() if k != "dst_port"}
    out = fz.transform(frame(no_port, no_port))
    assert len(out) == 0 and {r.reason for r in out.rejects} == {
        "missing required field 'dst_port'"
    }
    extra = fz.transform(frame({**NETFLOW, "surprise": [1, 2]}))
    assert len(extra) == 1 and not extra.rejects


def test_optional_fields_missing_in_the_mixed_spec() -> None:
    fz = Featurizer(load_spec("security_events"))
    auth = {
        "event_id": "a1",
        "event_type": "auth",
        "timestamp": "2026-11-02T09:00:00Z",
        "user": "u1",
        "dst_app": "vpn",
        "auth_method": "sso",
        "result": "success",
        "country": "US",
        "device": "macbook",
        "user_agent": "Mozilla/5.0",
    }
    out = fz.transform(frame(auth, {**NETFLOW, "event_type": "netflow"}))
    t = np.asarray(out.tensor)
    slots = {f.name: f for f in fz.layout.fields}
    assert np.isnan(t[0, slots["bytes_out"].offset])  # encoder imputes it
    assert t[1, slots["country"].offset : slots["country"].stop].sum() == 0
    assert fz.entities(out.frame).tolist() == ["u1", "10.0.0.7"]


def test_labels_follow_the_spec() -> None:
    fz = Featurizer(load_spec("nsl_kdd"))
    df = pd.DataFrame({"label": ["normal", "neptune", "normal"]})
    assert fz.labels(df).tolist() == [0, 1, 0]


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with cuDF and CuPy")
def test_cudf_and_pandas_give_the_same_tensor() -> None:  # pragma: no cover - GPU only
    import cudf

    fz = Featurizer(load_spec("netflow"))
    df = frame(
        *[
            {**NETFLOW, "event_id": f"e{i}", "bytes_out": i * 97, "dst_port": 20 + i % 7}
            for i in range(500)
        ]
    )
    cpu = np.asarray(fz.transform(df).tensor)
    gpu = fz.transform(cudf.from_pandas(df)).tensor.get()
    np.testing.assert_allclose(cpu, gpu, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "values",
    [
        ["2026-11-01T00:04:41.828Z", "2026-11-03T06:17:11.5+02:00", None],
        ["2026-11-03T06:17:11.123456789Z", "1969-12-31T23:59:59.5Z", "2026-11-03T06:17:11-0530"],
    ],
)
def test_strict_iso_parse_agrees_with_pandas(values: list[str | None]) -> None:
    col = pd.Series(values, dtype=object)
    fast = iso_epoch_seconds(col)
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    slow = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(na_value=np.nan)
    assert fast is not None
    np.testing.assert_array_equal(fast, slow)  # bit for bit: the tensor must not change


@pytest.mark.parametrize(
    "odd", ["2026-11-03T06:17:11", "2026-11-03", "2026-11-03 06:17:11", "yesterday", 1700000000]
)
def test_strict_iso_parse_leaves_anything_else_to_pandas(odd: object) -> None:
    assert iso_epoch_seconds(pd.Series(["2026-11-01T00:04:41Z", odd], dtype=object)) is None
    # ... and the featurizer still reads it as before (naive = UTC, numbers = epoch seconds)
    rows = frame(NETFLOW, {**NETFLOW, "event_id": "e2"})
    rows["timestamp"] = pd.Series(["2026-11-01T00:04:41Z", odd], dtype=object)
    batch = Featurizer(load_spec("netflow")).transform(rows)
    assert (len(batch), len(batch.rejects)) == ((1, 1) if odd == "yesterday" else (2, 0))
