"""Anomaly post-processing: the one function that turns model outputs into score fields.

Shared by the in-process engine and by Triton's ``anomaly_postproc`` python model (whose
``model.py`` is a thin wrapper over :func:`postprocess`), so both paths score identically.
NumPy only: the Triton model environment carries no torch and no pandas.

Inputs come from the ``dfp_autoencoder`` model, which carries its own calibration:
``ANOMALY_SCORE`` (mean squared reconstruction error, [N, 1]), ``FIELD_Z`` (per-field error as a
z-score against the errors of normal validation data, [N, F]) and ``THRESHOLD`` (the score above
which an event is anomalous, calibrated to a target false-positive rate, [N, 1]).
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOP_K = 5


def postprocess(
    anomaly_score: np.ndarray,
    field_z: np.ndarray,
    threshold: np.ndarray,
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, np.ndarray]:
    """Flag, summarise and rank fields.

    Returns ``IS_ANOMALY`` (bool [N, 1]), ``MEAN_ABS_Z`` and ``MAX_ABS_Z`` (float32 [N, 1]),
    ``TOP_FIELDS`` (int32 [N, K], field indices, most unusual first) and ``TOP_Z`` (their z).

    Reasons rank fields by *signed* z (a field reconstructed better than usual is not a reason);
    ties break towards the lower field index so the order is deterministic.

    >>> out = postprocess(np.array([[0.5], [3.0]], np.float32),
    ...                   np.array([[0.1, -2.0, 1.0], [4.0, 0.5, 9.0]], np.float32),
    ...                   np.array([[1.0], [1.0]], np.float32), top_k=2)
    >>> out["IS_ANOMALY"].ravel().tolist(), out["TOP_FIELDS"].tolist()
    ([False, True], [[2, 0], [2, 0]])
    >>> out["MAX_ABS_Z"].ravel().tolist()
    [2.0, 9.0]
    """
    score = np.asarray(anomaly_score, dtype=np.float32).reshape(-1, 1)
    z = np.asarray(field_z, dtype=np.float32)
    thr = np.asarray(threshold, dtype=np.float32).reshape(-1, 1)
    k = min(top_k, z.shape[1])
    abs_z = np.abs(z)
    # argsort on -z with a stable sort keeps ties in field order.
    top = np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int32)
    return {
        "IS_ANOMALY": score > thr,
        "MEAN_ABS_Z": abs_z.mean(axis=1, keepdims=True, dtype=np.float32),
        "MAX_ABS_Z": abs_z.max(axis=1, keepdims=True),
        "TOP_FIELDS": top,
        "TOP_Z": np.take_along_axis(z, top, axis=1),
    }
