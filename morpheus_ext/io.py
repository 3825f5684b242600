"""Reading whole labelled files (training, evaluation) as DataFrames, by extension.

Streaming input goes through ``morpheus_ext.stages.input.sources`` instead; this is for files a
model
engineer points a config at: CSV (headerless when the spec lists ``columns``), Parquet, JSONL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec

SUPPORTED = (".csv", ".txt", ".parquet", ".jsonl", ".json")


class DataError(SecureAIError, ValueError):
    """A data file that cannot be read (message is user-facing)."""


def read_frame(path: str | Path, spec: FeatureSpec | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            if spec is not None and spec.columns:
                # the spec names the columns; the file may or may not repeat them as a header
                header = 0 if _first_row(path) == [c.strip() for c in spec.columns] else None
                return pd.read_csv(path, header=header, names=spec.columns, low_memory=False)
            return pd.read_csv(path, low_memory=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    raise DataError(f"unsupported data file {path.name}: use one of {', '.join(SUPPORTED)}")


def _first_row(path: Path) -> list[str]:
    """The first CSV row's cells, stripped (to tell a header row from data)."""
    import csv

    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        row = next(csv.reader(fh), [])
    return [cell.strip() for cell in row]


class LabelError(DataError):
    """A label column that cannot serve: missing, or one class only (message names it)."""


def check_labels(
    frame: pd.DataFrame, spec: FeatureSpec, where: str, need_both: bool, need_normal: bool
) -> None:
    """Refuse, before any training, a label column the run cannot use.

    ``need_both``: an evaluation set needs normal and anomalous rows (AUROC); ``need_normal``:
    fitting on normal rows needs some. A spec without a label passes (unsupervised).

    >>> from morpheus_ext.feature_spec import load_spec
    >>> spec = load_spec("nsl_kdd")
    >>> try:
    ...     check_labels(pd.DataFrame({"class": ["normal"]}), spec, "train.csv", False, True)
    ... except LabelError as exc:
    ...     print(exc)
    train.csv: no label column 'label' (the spec's label.column); columns: class
    """
    column = spec.label_column
    if column is None or spec.label is None:
        return
    if column not in frame.columns:
        names = ", ".join(map(str, frame.columns[:12])) + (" ..." if frame.shape[1] > 12 else "")
        raise LabelError(
            f"{where}: no label column {column!r} (the spec's label.column); columns: {names}"
        )
    from morpheus_ext.stages.preprocess.featurizer import canonical_str  # as the featurizer

    normal_values = {canonical_str(v) for v in spec.label.normal}
    values = frame[column].map(canonical_str)
    normal = values.isin(normal_values)
    seen = ", ".join(sorted(values.unique()[:6]))
    if need_normal and not normal.any():
        raise LabelError(
            f"{where}: no row of label column {column!r} is normal (label.normal: "
            f"{sorted(normal_values)}; values seen: {seen}): wrong column, or set label.normal"
        )
    if need_both and (normal.all() or not normal.any()):
        kind = "normal" if normal.all() else "anomalous"
        raise LabelError(
            f"{where}: every row of label column {column!r} is {kind} (label.normal: "
            f"{sorted(normal_values)}; values seen: {seen}): evaluation needs both classes"
        )


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
