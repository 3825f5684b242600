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
                return pd.read_csv(path, header=None, names=spec.columns)
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    raise DataError(f"unsupported data file {path.name}: use one of {', '.join(SUPPORTED)}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
