"""DataFrame/array backend selection: pandas + NumPy on CPU, cuDF + CuPy on a GPU.

The featurizer is written once against the small surface below, so the CPU and GPU paths run the
same code and produce the same numbers. cuDF/CuPy are imported lazily: importing this module (or
the serving path) never needs a GPU library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd

BackendName = Literal["pandas", "cudf"]


@dataclass(frozen=True)
class Backend:
    """The DataFrame library (``pd`` or ``cudf``) and its array module (``np`` or ``cupy``)."""

    name: BackendName
    df: ModuleType
    xp: ModuleType

    def to_numpy(self, array: Any) -> np.ndarray:
        """Host copy of an array of this backend (no-op on CPU)."""
        if self.name == "cudf":
            return np.asarray(self.xp.asnumpy(array))
        return np.asarray(array)

    def to_host_frame(self, frame: Any) -> Any:
        """Host (pandas) copy of a DataFrame or Series of this backend."""
        return frame.to_pandas() if self.name == "cudf" else frame


CPU = Backend("pandas", pd, np)


def to_host_array(array: Any) -> np.ndarray:
    """A NumPy view of a featurizer array (a host copy of a CuPy one; CuPy stays unimported)."""
    if hasattr(array, "__cuda_array_interface__"):
        return np.asarray(array.get())
    return np.asarray(array)


def gpu_available() -> bool:
    """True when cuDF and CuPy import and a CUDA device is visible."""
    try:
        cupy = importlib.import_module("cupy")
        importlib.import_module("cudf")
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def get_backend(name: BackendName | Literal["auto"] = "pandas") -> Backend:
    """Return the named backend; ``auto`` picks cuDF when a GPU is usable, else pandas."""
    if name == "pandas" or (name == "auto" and not gpu_available()):
        return CPU
    try:
        cudf = importlib.import_module("cudf")
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        raise RuntimeError(
            "backend 'cudf' needs the GPU extras: pip install 'secureai[gpu]' on a CUDA machine"
        ) from exc
    return Backend("cudf", cudf, cupy)


def backend_of(frame: Any) -> Backend:
    """The backend a DataFrame belongs to (cuDF frames live in the ``cudf`` package)."""
    if type(frame).__module__.startswith("cudf"):
        return get_backend("cudf")
    return CPU
