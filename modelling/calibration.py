"""Calibration of a model version on normal validation data (it never leaves the site).

Gives the scoring head its constants: per-field error mean/std (so field errors become z-scores
an analyst can compare across fields) and the score threshold at a target false-positive rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelling.models import ScoredAutoencoder, field_errors
from morpheus_ext.feature_spec import TensorLayout

_MIN_STD = 1e-6


@dataclass(frozen=True)
class Calibration:
    field_mean: np.ndarray
    field_std: np.ndarray
    threshold: float
    target_fpr: float
    n_samples: int
    contamination: float = 0.0
    """Share of the calibration rows believed to be attacks: the threshold is the
    ``1 - target_fpr - contamination`` quantile, so they do not use up the FP budget."""

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["field_mean"] = [round(float(v), 6) for v in self.field_mean]
        d["field_std"] = [round(float(v), 6) for v in self.field_std]
        return d


def calibrate(
    autoencoder: nn.Module,
    normal_val: np.ndarray,
    layout: TensorLayout,
    target_fpr: float = 0.01,
    contamination: float = 0.0,
) -> Calibration:
    """``normal_val``: *normalized* tensor rows believed benign (label normal, or all rows);
    ``contamination``: the share of them estimated to be attacks (unlabelled site data)."""
    if len(normal_val) == 0:
        raise ValueError("calibration needs at least one normal validation row")
    score, field_err = field_errors(
        autoencoder, torch.from_numpy(normal_val), layout.field_index(), len(layout.fields)
    )
    s = score.numpy().astype(np.float64)
    fe = field_err.numpy().astype(np.float64)
    threshold = float(np.quantile(s, max(0.0, 1.0 - target_fpr - contamination)))
    return Calibration(
        field_mean=fe.mean(axis=0).astype(np.float32),
        field_std=np.maximum(fe.std(axis=0), _MIN_STD).astype(np.float32),
        threshold=threshold,
        target_fpr=target_fpr,
        n_samples=len(normal_val),
        contamination=contamination,
    )


def calibrated_head(
    autoencoder: nn.Module, layout: TensorLayout, calibration: Calibration, version: int
) -> ScoredAutoencoder:
    """The served graph for ``layout``, with ``calibration``'s constants and ``version``."""
    return ScoredAutoencoder(
        autoencoder,
        layout.field_index(),
        len(layout.fields),
        calibration.field_mean,
        calibration.field_std,
        calibration.threshold,
        version,
    )
