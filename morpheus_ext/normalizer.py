"""The fitted part of feature normalization: robust per-slot centre and scale.

Numeric slots are centred on the median and scaled by IQR/1.349 (the normal-consistent IQR),
falling back to the standard deviation, then to 1, for slots whose IQR is zero (mostly-constant
counters); missing values (NaN) become the centre; results are clipped to +-``clip`` so one
absurd value cannot dominate the reconstruction loss. Time and one-hot slots pass through.

This NumPy version is what training uses; ``dfp_encoder`` serves the same arithmetic as ONNX
(built in ``modelling.export``), and a test holds the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from morpheus_ext.feature_spec import TensorLayout

DEFAULT_CLIP = 10.0
_MIN_SCALE = 1e-6


@dataclass(frozen=True)
class Normalizer:
    center: np.ndarray  # float32 [W]
    scale: np.ndarray  # float32 [W], > 0
    clip: float = DEFAULT_CLIP

    @classmethod
    def fit(
        cls, tensor: np.ndarray, layout: TensorLayout, clip: float = DEFAULT_CLIP
    ) -> Normalizer:
        width = layout.width
        center = np.zeros(width, dtype=np.float32)
        scale = np.ones(width, dtype=np.float32)
        for slot in layout.fields:
            if slot.kind != "numeric":
                continue
            col = tensor[:, slot.offset].astype(np.float64)
            col = col[~np.isnan(col)]
            if col.size == 0:
                continue
            q1, med, q3 = np.percentile(col, [25, 50, 75])
            s = (q3 - q1) / 1.349
            if s < _MIN_SCALE:
                s = float(col.std())
            center[slot.offset] = med
            scale[slot.offset] = s if s >= _MIN_SCALE else 1.0
        return cls(center, scale, clip)

    def transform(self, tensor: np.ndarray) -> np.ndarray:
        z = (tensor - self.center) / self.scale
        z = np.where(np.isnan(z), np.float32(0.0), z)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)
