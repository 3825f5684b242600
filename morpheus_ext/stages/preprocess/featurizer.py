"""Featurizer: a batch of events (DataFrame) -> float32 ``[N, 256]`` EVENT_TENSOR + rejects.

The tensor is *stateless*: nothing here is fitted, so the same event always gives the same row,
on pandas (CPU) and cuDF (GPU) alike. The fitted part of normalization (robust centre/scale per
numeric slot) lives in the ``dfp_encoder`` model, versioned with the models.

Per slot kind (see docs/event_tensor.md):
* numeric  -> ``sign(x) * log1p(|x|)`` (or identity); a missing optional value is NaN, which the
  encoder imputes to the fitted centre;
* time     -> (sin, cos) of hour-of-day and of day-of-week, from the UTC timestamp;
* categorical -> one-hot at ``crc32(f"{field}={value}") % buckets`` inside the field's slice;
  a missing optional value leaves the slice all zero.

Hashing happens on the *unique* values of a batch (host side, a few hundred strings at most), and
the per-row work is an array gather, so cuDF and pandas share one code path and one hash. The
numeric assembly of the tensor is one function over an array module, :func:`event_tensor`: NumPy
for pandas, CuPy for cuDF (its columns are handed over as CuPy) or for a pandas batch whose
tensor should be born on the GPU (``transform(frame, xp=cupy)``).

Bad rows never fail the batch: each comes back as a :class:`Reject` with a readable reason.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from morpheus_ext.backend import CPU, Backend, backend_of, to_host_array
from morpheus_ext.feature_spec import FeatureSpec, FieldSlot, TensorLayout

_SCALARS = (str, int, float, bool, np.integer, np.floating, np.bool_)
_EPOCH_MS_CUTOFF = 1e11  # numeric timestamps above this are milliseconds, below are seconds
TIME_RANGE_S = (0.0, 7258118400.0)
"""Timestamps a security event may carry: 1970-01-01 up to (not including) 2200-01-01 UTC.
Anything outside is a producer's bug (``99999999999999999999``), dead-lettered, not scored."""


@dataclass(frozen=True)
class Reject:
    """A row that could not be featurized: its position in the batch and why."""

    position: int
    reason: str


@dataclass
class FeaturizedBatch:
    """The featurizer's output for one batch.

    ``positions`` are the input positions of the accepted rows, in order; ``tensor[i]`` belongs to
    ``frame.iloc[i]`` (the accepted rows, original columns, for building score records).
    """

    tensor: Any
    positions: np.ndarray
    frame: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    categories: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Per categorical column present: ``(codes, uniques)`` as the featurizer factorized it,
    ``codes[i]`` the index of row i's value in ``uniques`` (-1: missing), an array of the
    frame's backend (CuPy on cuDF); ``uniques`` on the host. Reused by the per-entity
    baselines, so a batch is factorized once. ``uniques`` may hold values of rejected rows."""
    times: Any = None
    """Event time of each row, epoch seconds (float64, NaN: missing; backend array), or None
    without time features."""

    def __len__(self) -> int:
        return len(self.positions)


def bucket_of(field_name: str, value: str, buckets: int) -> int:
    """The documented hash: ``crc32(utf8(f"{field}={value}")) % buckets`` (docs/event_tensor.md)."""
    return zlib.crc32(f"{field_name}={value}".encode()) % buckets


def canonical_str(value: Any) -> str:
    """How a categorical value is spelled before hashing, so 443, 443.0 and "443" agree."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if (
        isinstance(value, float | np.floating)
        and math.isfinite(value)
        and float(value).is_integer()
    ):
        return str(int(value))
    return str(value)


def iso_epoch_seconds(col: pd.Series) -> np.ndarray | None:
    """Epoch seconds of a column of ISO-8601 strings with a zone (``Z``/``+hh:mm``), None
    (null) -> NaN; None for the whole column when Arrow's strict parser refuses any value
    (naive or date-only times, numbers, typos), which callers then parse with pandas.

    Arrow parses ~5x faster than ``pd.to_datetime(format="ISO8601")`` and, where it accepts
    a value, gives the same float (ns / 1e9, as pandas' ``total_seconds``): the common case of
    a stream of RFC 3339 times never reaches pandas' parser.
    """
    try:
        ns = pa.array(col, type=pa.string(), from_pandas=True).cast(pa.timestamp("ns", "UTC"))
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return np.asarray(ns.cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e9, np.float64)


@dataclass(frozen=True)
class TensorColumns:
    """What the numeric core reads, one entry per accepted row: everything string-shaped is
    already resolved (parsed numbers, factorized codes, hashed buckets), so assembling the
    tensor is pure array work that NumPy and CuPy run alike.

    ``numeric``: float64 values as given (NaN: missing), *before* the slot transform;
    ``codes``: per categorical field, each row's index into ``luts`` (-1: missing);
    ``luts``: per categorical field, the bucket of each code; ``times``: float64 epoch seconds
    (or None without time features). The cuDF backend hands these over as CuPy arrays.
    """

    rows: int
    numeric: dict[str, Any]
    codes: dict[str, Any]
    luts: dict[str, Any]
    times: Any = None

    def to(self, xp: ModuleType) -> TensorColumns:
        """The same columns as arrays of ``xp``: one host->device copy per column for CuPy
        (a few bytes per row: numbers, codes, times; never the 1 KiB tensor row)."""

        def move(a: Any) -> Any:
            return to_host_array(a) if xp is np else xp.asarray(a)

        return TensorColumns(
            self.rows,
            {k: move(v) for k, v in self.numeric.items()},
            {k: move(v) for k, v in self.codes.items()},
            {k: move(v) for k, v in self.luts.items()},
            None if self.times is None else move(self.times),
        )


def event_tensor(xp: ModuleType, layout: TensorLayout, columns: TensorColumns) -> Any:
    """The featurizer's numeric core: ``columns`` -> float32 ``[rows, layout.width]`` of ``xp``.

    One kernel for every backend (NumPy on CPU, CuPy on a GPU, whether the columns came from
    pandas or cuDF), so CPU and GPU differ only by the last bits of log1p/sin/cos (parity is
    checked to 1e-6 by scripts/gpu/bench_featurize_infer.py). Per slot: numeric ->
    ``sign(x) * log1p(|x|)`` (or identity), time -> sin/cos of the hour-of-day and
    day-of-week phase, categorical -> a one-hot scatter at the row's bucket.

    >>> import numpy as np
    >>> from morpheus_ext.feature_spec import load_spec
    >>> layout = load_spec("netflow").layout
    >>> cols = TensorColumns(1, {"bytes_in": np.array([np.e - 1])}, {}, {})
    >>> t = event_tensor(np, layout, cols)
    >>> t.shape, t.dtype.name, float(t[0, layout.fields[0].offset].round(6))
    ((1, 256), 'float32', 1.0)
    """
    tensor = xp.zeros((columns.rows, layout.width), dtype=xp.float32)
    for slot in layout.fields:
        if slot.kind == "numeric":
            values = columns.numeric.get(slot.name)
            if values is not None and slot.transform == "log1p":
                values = xp.sign(values) * xp.log1p(xp.abs(values))
            tensor[:, slot.offset] = np.nan if values is None else values
        elif slot.kind == "time" and columns.times is not None:
            period = 86400.0 if slot.name == "hour" else 7 * 86400.0
            # Day 0 of the epoch was a Thursday: shift so the weekday phase starts on Monday.
            shift = 0.0 if slot.name == "hour" else 3 * 86400.0
            angle = 2 * np.pi * xp.mod(columns.times + shift, period) / period
            tensor[:, slot.offset] = xp.sin(angle)
            tensor[:, slot.offset + 1] = xp.cos(angle)
        elif slot.kind == "categorical" and slot.name in columns.codes:
            code, lut = columns.codes[slot.name], columns.luts[slot.name]
            rows = xp.flatnonzero(code >= 0)
            tensor[rows, slot.offset + lut[code[rows]]] = 1.0
    return tensor


class Featurizer:
    """Turns DataFrames into EVENT_TENSOR rows for one :class:`FeatureSpec`.

    >>> import pandas as pd
    >>> from morpheus_ext.feature_spec import load_spec
    >>> fz = Featurizer(load_spec("netflow"))
    >>> batch = fz.transform(pd.DataFrame({
    ...     "event_id": ["a", "b"], "timestamp": ["2026-11-01T08:00:00Z", "yesterday"],
    ...     "src_ip": ["10.0.0.1"] * 2, "bytes_in": [100, 5], "bytes_out": [2000, 1],
    ...     "packets": [3, 1], "duration_ms": [12.5, 0], "dst_port": [443, 22],
    ...     "protocol": ["tcp", "tcp"], "tcp_flags": ["PA", "S"]}))
    >>> batch.tensor.shape, [r.reason for r in batch.rejects]
    ((1, 256), ["field 'timestamp': cannot parse 'yesterday' as a time"])
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.layout = spec.layout
        self._required = self._required_columns()

    def _required_columns(self) -> list[str]:
        cols = list(self.spec.required)
        cols += [f.name for f in self.layout.fields if f.kind != "time" and f.required]
        if self.spec.time_features and self.spec.timestamp:
            cols.append(self.spec.timestamp)
        return list(dict.fromkeys(cols))

    # ------------------------------------------------------------------ validation
    def transform(self, frame: Any, xp: ModuleType | None = None) -> FeaturizedBatch:
        """Validate row by row, then build the tensor for the rows that passed.

        ``xp`` (NumPy or CuPy) is where the tensor is assembled: by default the frame's own
        array module (NumPy for pandas, CuPy for cuDF). ``xp=cupy`` with a pandas frame keeps
        the string work (parsing, factorizing, hashing) on the host and runs the numeric core
        on the GPU, so the tensor is born on the device that scores it (no cuDF needed). Only
        ``tensor`` moves: ``times`` and ``categories`` stay arrays of the frame's backend.
        """
        backend = backend_of(frame)
        n = len(frame)
        reasons: dict[int, str] = {}
        for col in self._required:
            if col not in frame.columns:
                _add(reasons, range(n), f"missing required field '{col}'")
            else:
                _add(
                    reasons,
                    _positions(backend, frame[col].isna()),
                    f"missing required field '{col}'",
                )

        for name in (self.spec.event_id, *self.spec.entity):
            if name and name in frame.columns:
                _check_identity(backend, frame[name], name, reasons)

        numeric: dict[str, Any] = {}
        codes: dict[str, Any] = {}
        luts: dict[str, Any] = {}
        uniques: dict[str, Any] = {}
        for slot in self.layout.fields:
            if slot.kind == "numeric" and slot.name in frame.columns:
                numeric[slot.name] = self._numeric(backend, frame[slot.name], slot, reasons)
            elif slot.kind == "categorical" and slot.name in frame.columns:
                codes[slot.name], luts[slot.name], uniques[slot.name] = self._buckets(
                    backend, frame[slot.name], slot, reasons
                )
        times = None
        if self.spec.time_features and self.spec.timestamp in frame.columns:
            times = self._timestamps(backend, frame[self.spec.timestamp], reasons)

        bad = np.zeros(n, dtype=bool)
        if reasons:
            bad[list(reasons)] = True
        keep = np.flatnonzero(~bad)
        rejects = [Reject(p, reasons[p]) for p in sorted(reasons)]
        if len(keep) < n:
            take = backend.xp.asarray(keep)
            frame = frame.iloc[take]
            numeric = {k: v[take] for k, v in numeric.items()}
            codes = {k: v[take] for k, v in codes.items()}
            times = times[take] if times is not None else None
        columns = TensorColumns(len(keep), numeric, codes, luts, times)
        if xp is not None and xp is not backend.xp:
            columns = columns.to(xp)
        tensor = event_tensor(backend.xp if xp is None else xp, self.layout, columns)
        host = backend.to_host_frame(frame).reset_index(drop=True)
        categories = {k: (v, uniques[k]) for k, v in codes.items()}
        return FeaturizedBatch(
            tensor=tensor,
            positions=keep,
            frame=host,
            rejects=rejects,
            categories=categories,
            times=times,
        )

    def _numeric(self, backend: Backend, col: Any, slot: FieldSlot, reasons: dict[int, str]) -> Any:
        xp = backend.xp
        if backend is CPU and col.dtype.kind in "iuf":
            # Already numbers (the common case): no parse, nothing unparsed to report.
            arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
            infinite = np.isinf(arr)
            if infinite.any():
                _add(
                    reasons,
                    np.flatnonzero(infinite).tolist(),
                    f"field '{slot.name}': number is not finite",
                )
                arr = np.where(infinite, np.nan, arr)
            return arr  # the slot transform (log1p) is the core's: event_tensor()
        original = col
        if col.dtype == object:
            _check_scalars(backend, col, slot.name, reasons)
            # Booleans are not measurements: refuse them rather than read True as 1.
            plain = np.fromiter((_is_plain_scalar(v) for v in col.to_numpy()), bool, len(col))
            col = col.where(pd.Series(plain, index=col.index))
        values = backend.df.to_numeric(col, errors="coerce")
        arr = xp.asarray(
            values.astype("float64").to_numpy(na_value=np.nan)
            if backend is CPU
            else values.astype("float64").fillna(np.nan).values
        )
        given = original.isna()
        was_given = xp.asarray(~given.to_numpy()) if backend is CPU else ~given.values
        unparsed = was_given & xp.isnan(arr)
        for p in _positions(backend, unparsed):
            got = _show(original.iloc[p])
            reasons.setdefault(p, f"field '{slot.name}': expected a number, got {got}")
        infinite = xp.isinf(arr)
        _add(reasons, _positions(backend, infinite), f"field '{slot.name}': number is not finite")
        return xp.where(infinite, np.nan, arr)

    def _timestamps(self, backend: Backend, col: Any, reasons: dict[int, str]) -> Any:
        """Seconds since the epoch (float64); accepts ISO-8601 strings and epoch s/ms numbers.

        Strings are parsed first (the common case, a fast vectorised parse); only values that
        failed are retried as numbers, so a stream of ISO strings never pays for to_numeric.
        """
        xp = backend.xp
        lib = backend.df
        strict = iso_epoch_seconds(col) if backend is CPU and col.dtype.kind == "O" else None
        if strict is not None:
            out = strict
        else:
            if col.dtype.kind in "iuf":
                secs = col.astype("float64")
            else:
                parsed = lib.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
                secs = (parsed - lib.Timestamp(0, tz="UTC")).dt.total_seconds()
            out = xp.asarray(secs.to_numpy(na_value=np.nan) if backend is CPU else secs.values)
        given = ~col.isna()
        given = xp.asarray(given.to_numpy() if backend is CPU else given.values)
        retry = _positions(backend, given & xp.isnan(out)) if col.dtype.kind not in "iuf" else []
        if retry:
            sub = col.iloc[list(retry)]
            numbers = np.fromiter(
                (
                    _is_plain_scalar(v) and not isinstance(v, str)
                    for v in backend.to_host_frame(sub).to_numpy()
                ),
                bool,
                len(sub),
            )
            v = pd.to_numeric(backend.to_host_frame(sub).where(numbers), errors="coerce")
            out[xp.asarray(retry)] = xp.asarray(v.to_numpy(dtype=np.float64, na_value=np.nan))
        if col.dtype.kind in "iuf" or retry:
            out = xp.where(out > _EPOCH_MS_CUTOFF, out / 1000.0, out)
        bad = given & (xp.isnan(out) | xp.isinf(out))
        for p in _positions(backend, bad):
            reasons.setdefault(
                p, f"field '{self.spec.timestamp}': cannot parse {_show(col.iloc[p])} as a time"
            )
        lo, hi = TIME_RANGE_S
        outside = given & ~bad & ((out < lo) | (out >= hi))
        for p in _positions(backend, outside):
            reasons.setdefault(
                p,
                f"field '{self.spec.timestamp}': {_show(col.iloc[p])} is outside 1970-2199",
            )
        return out

    @staticmethod
    def _buckets(
        backend: Backend, col: Any, slot: FieldSlot, reasons: dict[int, str]
    ) -> tuple[Any, Any, Any]:
        """Factorize once, hash the uniques: (per-row code, per-code bucket, the uniques on the
        host). Code -1 = missing.

        Lists/dicts are unhashable, so factorize raising is the (rare) signal to find and reject
        them row by row; the common path never looks at single values in Python.
        """
        factorize = pd.factorize if backend is CPU else (lambda c: c.factorize())
        try:
            codes, uniques = factorize(col)
        except TypeError:
            _check_scalars(backend, col, slot.name, reasons)
            ok = np.fromiter((isinstance(v, _SCALARS) for v in col.to_numpy()), bool, len(col))
            codes, uniques = factorize(col.where(pd.Series(ok, index=col.index)))
        host_uniques = uniques.to_pandas() if backend is not CPU else uniques
        lut = np.fromiter(
            (bucket_of(slot.name, canonical_str(u), slot.width) for u in host_uniques),
            dtype=np.int64,
            count=len(host_uniques),
        )
        return backend.xp.asarray(codes), backend.xp.asarray(lut), host_uniques

    # ------------------------------------------------------------------ helpers for callers
    def labels(self, frame: pd.DataFrame) -> np.ndarray | None:
        """1 for anomalous, 0 for normal rows, per the spec's label declaration (None if absent)."""
        spec = self.spec.label
        if spec is None or spec.column not in frame.columns:
            return None
        normal = {canonical_str(v) for v in spec.normal}
        col = frame[spec.column]
        as_text = col.map(canonical_str, na_action="ignore")
        return (~as_text.isin(normal)).to_numpy(dtype=np.int8)

    def entities(self, frame: pd.DataFrame) -> pd.Series:
        """The entity of each row: the first non-null of the spec's entity columns."""
        out: np.ndarray | None = None
        for col in self.spec.entity:
            if col not in frame.columns:
                continue
            values = frame[col].to_numpy(dtype=object)
            if out is None:
                out = values.copy()
            else:  # NumPy, not Series.where: ~0.2 ms less per column and batch
                missing = pd.isna(out)
                out[missing] = values[missing]
        if out is None:
            out = np.full(len(frame), None, dtype=object)
        return pd.Series(out, index=frame.index, dtype=object)


def _is_plain_scalar(value: Any) -> bool:
    return isinstance(value, _SCALARS) and not isinstance(value, bool | np.bool_)


def _check_scalars(backend: Backend, col: Any, name: str, reasons: dict[int, str]) -> None:
    """Reject rows whose value is a list/dict/bool where a scalar is expected (object cols only)."""
    if backend is not CPU or col.dtype != object:
        return
    ok = np.fromiter((isinstance(v, _SCALARS) or v is None for v in col.to_numpy()), bool, len(col))
    for p in np.flatnonzero(~ok):
        reasons.setdefault(int(p), f"field '{name}': expected a scalar, got {_show(col.iloc[p])}")


def _check_identity(backend: Backend, col: Any, name: str, reasons: dict[int, str]) -> None:
    """An event id or entity must be a string or a finite number (stringified canonically):
    an object, a list or a boolean would become a Python repr as a Kafka key or an entity."""
    if backend is not CPU:
        return
    if col.dtype.kind == "b":  # a whole column of booleans (a batch where every value is one)
        for p in np.flatnonzero(col.notna().to_numpy()):
            reasons.setdefault(
                int(p), f"field '{name}': expected a string or number, got {_show(col.iloc[p])}"
            )
        return
    if col.dtype != object:
        return
    if pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):
        return  # (the usual batch, checked in C: every value a string or missing)
    for p, v in enumerate(col.to_numpy()):
        if v is None or isinstance(v, str) or (_is_plain_scalar(v) and np.isfinite(v)):
            continue
        if isinstance(v, float | np.floating) and np.isnan(v):
            continue  # missing: the required check names it
        reasons.setdefault(p, f"field '{name}': expected a string or number, got {_show(v)}")


def _positions(backend: Backend, mask: Any) -> Sequence[int]:
    arr = backend.to_numpy(mask.to_numpy() if hasattr(mask, "to_numpy") else mask)
    return [int(p) for p in np.flatnonzero(arr)]


def _add(reasons: dict[int, str], positions: Sequence[int] | range, reason: str) -> None:
    for p in positions:
        reasons.setdefault(p, reason)


def _show(value: Any, limit: int = 40) -> str:
    """A short, safe rendering of an offending value for a reject reason (never the full event)."""
    if isinstance(value, np.generic):
        value = value.item()  # -5, not np.int64(-5)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
