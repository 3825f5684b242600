"""The engine surface every inference backend (in-process ONNX Runtime, Triton) implements.

Example:

>>> from morpheus_ext.model_repository import DEFAULT_REPOSITORY
>>> from morpheus_ext.feature_spec import load_spec
>>> from morpheus_ext.stages.inference.inprocess import InProcessEngine
>>> spec_hash = load_spec("security_events").spec_hash
>>> engine: InferenceEngine = InProcessEngine(DEFAULT_REPOSITORY, spec_hash)
>>> engine.info.name, sorted(engine.infer(np.zeros((2, 256), np.float32)))[:3]
('dfp_ensemble', ['ANOMALY_SCORE', 'FIELD_Z', 'IS_ANOMALY'])
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What a score record says about the model that produced it."""

    name: str
    spec_hash: str
    max_batch_size: int


class InferenceEngine(Protocol):
    info: ModelInfo

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """EVENT_TENSOR [N, 256] -> the ensemble outputs (model_repository.ENSEMBLE_OUTPUTS)."""
        ...

    def submit(self, tensor: np.ndarray) -> Future[dict[str, np.ndarray]]:
        """Start inference; engines that work asynchronously overlap it with the caller."""
        ...

    def close(self) -> None: ...
