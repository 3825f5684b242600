"""``secureai spec draft FILE``: propose a feature spec from a labelled data file.

A model engineer with a new CSV should not read source code to write a spec. The draft reads
the file (a header row is recognised; without one the columns are named ``c0, c1 ...``), looks
at every column once and decides, with the reason written next to it in the YAML:

* **label** (``--label COL``, else a column named ``label``/``class``/``attack``/``target``...):
  never a feature; ``normal`` values from ``--normal``, else ``normal``/``benign``/``0`` when
  present;
* **event id** (unique per row, named like an id), **timestamp** (named like a time and parsed
  as one: ``hour`` and ``weekday`` features), **entity** (``user``/``host``/``src_ip`` ...):
  roles, not features;
* **excluded**: constant columns, per-row identifiers, and ``--exclude`` columns;
* **numeric**: every other column that is numbers (signed ``log1p`` tames heavy tails);
* **categorical**: every other column; few values get fixed buckets (the next power of two
  >= 2x their count, so a new value rarely shares a bucket), many share the remaining dims.

A file wider than the 256-dim tensor gets a wider ``tensor_width`` (a multiple of 64: every
model, ONNX graph and Triton config follows it). The spec lists ``columns`` so the file reads
the same with or without its header row.

>>> frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "bytes": [1, 20, 300, 4000],
...                       "proto": ["tcp", "udp", "tcp", "tcp"], "site": ["x"] * 4,
...                       "class": ["normal", "normal", "dos", "normal"]})
>>> doc = draft_spec(frame, "mydata")
>>> doc["label"], doc["numeric"], doc["categorical"]
({'column': 'class', 'normal': ['normal']}, ['bytes'], [{'name': 'proto', 'buckets': 4}])
>>> doc["exclude"], doc["event_id"]
(['site'], 'id')
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pandas as pd

from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import TENSOR_WIDTH, TIME_FEATURE_DIMS

LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "attack",
    "attack_cat",
    "target",
    "is_anomaly",
    "anomaly",
)
NORMAL_VALUES = ("normal", "benign", "BENIGN", "Normal", "0", "false", "False")
ENTITY_NAMES = ("user", "username", "user_id", "host", "hostname", "src_ip", "source_ip")
_ID = re.compile(r"(^|_)(id|uuid|guid)$|^event_?id$", re.I)
_TIME = re.compile(r"time|date|(^|_)ts$", re.I)
MAX_FIXED_VALUES = 32
"""A categorical with at most this many values gets fixed buckets; more share the rest."""


class DraftError(SecureAIError, ValueError):
    """A file a spec cannot be drafted from (message names the file and what is wrong)."""


def read_sample(path: Path, header: bool | None = None, rows: int = 200_000) -> pd.DataFrame:
    """The first ``rows`` rows of a CSV (header detected unless ``header`` says), Parquet or
    JSON Lines file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DraftError(f"data file not found: {path}")
    if suffix == ".parquet":
        return pd.read_parquet(path).head(rows)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=True, dtype=False, nrows=rows)
    if header is None:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            head = fh.read(64 * 1024)
        try:
            header = csv.Sniffer().has_header(head)
        except csv.Error:
            header = False
    frame = pd.read_csv(path, header=0 if header else None, nrows=rows, low_memory=False)
    if not header:
        frame.columns = [f"c{i}" for i in range(frame.shape[1])]
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _is_numeric(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    parsed = pd.to_numeric(col.dropna(), errors="coerce")
    return len(parsed) > 0 and parsed.notna().mean() >= 0.99


def _is_time(name: str, col: pd.Series) -> bool:
    if not _TIME.search(name) or pd.api.types.is_numeric_dtype(col):
        return False
    parsed = pd.to_datetime(col.dropna().astype(str).head(1000), errors="coerce", utc=True)
    return len(parsed) > 0 and parsed.notna().mean() >= 0.95


def _buckets(n_values: int) -> int:
    return max(4, 1 << (2 * n_values - 1).bit_length())


def draft_spec(
    frame: pd.DataFrame,
    name: str,
    label: str | None = None,
    normal: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, Any]:
    """The spec document for ``frame`` (see the module doc for the rules)."""
    columns = [str(c) for c in frame.columns]
    exclude = list(exclude or [])
    unknown = [c for c in [*exclude, *([label] if label else [])] if c not in columns]
    if unknown:
        raise DraftError(
            f"no column {unknown[0]!r} in the file; columns: {', '.join(columns[:20])}"
            + (" ..." if len(columns) > 20 else "")
        )
    if label is None:
        label = next((c for c in columns if c.lower() in LABEL_NAMES), None)
    doc: dict[str, Any] = {"name": name, "version": 1, "description": "", "columns": columns}
    reasons: dict[str, str] = {}
    if label is not None:
        values = frame[label].dropna().astype(str).str.strip()
        if normal is None:
            normal = [v for v in NORMAL_VALUES if v in set(values.unique())][:1]
            if not normal:
                raise DraftError(
                    f"label column {label!r}: which values are normal? none of "
                    f"{', '.join(NORMAL_VALUES)} occurs (values: "
                    f"{', '.join(sorted(values.unique())[:8])}); pass --normal VALUE"
                )
        typed: list[str | int] = [int(v) if v.lstrip("-").isdigit() else v for v in normal]
        doc["label"] = {"column": label, "normal": typed}
    n = len(frame)
    numeric: list[str] = []
    categorical: list[Any] = []
    for c in columns:
        if c == label:
            continue
        col = frame[c]
        distinct = col.nunique(dropna=True)
        if c in exclude:
            doc.setdefault("exclude", []).append(c)
        elif distinct <= 1:
            doc.setdefault("exclude", []).append(c)
            reasons[c] = "constant"
        elif "event_id" not in doc and _ID.search(c) and distinct == n:
            doc["event_id"] = c
        elif "timestamp" not in doc and _is_time(c, col):
            doc["timestamp"] = c
            doc["time_features"] = ["hour", "weekday"]
        elif c.lower() in ENTITY_NAMES:
            doc.setdefault("entity", []).append(c)
        elif _is_numeric(col):
            numeric.append(c)
        elif distinct == n and n > 100:
            doc.setdefault("exclude", []).append(c)
            reasons[c] = "a different value on every row (an identifier)"
        elif distinct <= MAX_FIXED_VALUES:
            categorical.append({"name": c, "buckets": _buckets(distinct)})
        else:
            categorical.append(c)
    doc["numeric"] = numeric
    doc["categorical"] = categorical
    doc.setdefault("exclude", [])
    fixed = sum(c["buckets"] for c in categorical if isinstance(c, dict))
    auto = sum(1 for c in categorical if isinstance(c, str))
    time_dims = sum(TIME_FEATURE_DIMS[t] for t in doc.get("time_features", []))
    need = len(numeric) + time_dims + fixed + 8 * auto  # >= 8 buckets per shared categorical
    if need > TENSOR_WIDTH:
        doc["tensor_width"] = -(-need // 64) * 64
    doc["_reasons"] = reasons
    return doc


def render(doc: dict[str, Any], source: Path) -> str:
    """The spec as commented YAML (what ``spec draft --out`` writes)."""
    import yaml

    reasons = doc.pop("_reasons", {})
    lines = [
        f"# Drafted by `secureai spec draft {source}`: check it, then train with it.",
        "# Rules: docs/own_data.md. Excluded columns and why:",
    ]
    lines += [f"#   {c}: {reasons.get(c, 'asked (--exclude)')}" for c in doc.get("exclude", [])]
    if "tensor_width" in doc:
        lines.append(
            f"# {doc['tensor_width']} dims: the file has more features than the default 256"
        )
    body = yaml.safe_dump(doc, sort_keys=False, width=100, default_flow_style=None)
    return "\n".join(lines) + "\n" + body
