"""Run directories: every run writes its resolved config, seeds, versions and metrics here."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from morpheus_ext.markdown_sections import cpu_model

_PACKAGES = (
    "numpy",
    "pandas",
    "torch",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "pyarrow",
    "flwr",
    "opacus",
    "tritonclient",
    "confluent-kafka",
)


def new_run_dir(runs_dir: Path, name: str) -> Path:
    """``runs/<name>-<UTC time>``; a suffix keeps two runs in one second apart."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = runs_dir / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "packages": versions,
        # Training kernels (modelling/numerics.py), when this process has torch loaded.
        "kernels": _kernels(),
    }


def _kernels() -> dict[str, Any] | None:
    """Training kernels (modelling/numerics.py) when this process trains (has torch loaded)."""
    if "torch" not in sys.modules:
        return None
    from modelling.numerics import kernel_report

    return kernel_report()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(_jsonable(doc), indent=2, sort_keys=False) + "\n")
    return path


DEMO_TRAINING = "train"
"""Where ``secureai demo`` keeps its training run inside the demo's run directory."""


def training_run_dir(path: str | Path) -> Path:
    """The training run a command should read: ``path`` itself, or, for the directory
    ``secureai demo`` writes (its training run under ``train/``), that run. A directory that
    is neither raises ``FileNotFoundError`` naming what was expected.

    >>> import tempfile
    >>> demo = Path(tempfile.mkdtemp())
    >>> (demo / "train" / "model").mkdir(parents=True)
    >>> _ = (demo / "train" / "config.yaml").write_text("name: x")
    >>> training_run_dir(demo) == demo / "train"
    True
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    nested = path / DEMO_TRAINING
    if (path / "model").is_dir():
        return path
    if (nested / "config.yaml").is_file():  # the demo's own config.yaml is not a training one
        return nested
    if (path / "config.yaml").is_file():
        return path
    raise FileNotFoundError(
        f"{path} is not a training run directory (no config.yaml or model/; a run of "
        "secureai train, or the directory secureai demo printed)"
    )
