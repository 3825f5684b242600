"""Detection metrics for anomaly scores, computed with scikit-learn.

Convention used everywhere in this module: a higher score means "more anomalous", and an
event is flagged when ``score >= threshold`` (the same convention as
:func:`sklearn.metrics.roc_curve`), so a threshold read off a curve here means the same
thing when it is applied to live traffic.

Everything returned by :func:`compute_metrics` is plain Python (``int``, ``float``,
``str``, ``None``, ``dict``) so the result can be written straight to JSON; non-finite
values (for example the ``+inf`` threshold that ``roc_curve`` puts first) become ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

__all__ = ["NORMAL_KINDS", "compute_metrics", "curves", "validate_inputs", "validate_labels"]

# Values of ``kinds`` that mean "not an anomaly"; they get no per-kind recall entry.
NORMAL_KINDS: frozenset[str] = frozenset({"none", ""})

# The FPR used to pick the per-kind threshold when the caller gives none.
_DEFAULT_KIND_FPR = 0.01
# Slack for comparing FPRs: fp / n_neg is not always bit-equal to the decimal target
# (e.g. 10 / 1000 vs 0.01), and an operating point exactly at the target must count.
_FPR_EPS = 1e-12


def validate_labels(y_true: Any) -> np.ndarray:
    """Return ``y_true`` as a 1-D int array of 0/1 with both classes, or raise ``ValueError``.

    AUROC/AUPRC are undefined with one class; saying so here beats a scikit-learn
    traceback from deep inside a curve function.
    """
    y = np.asarray(y_true).ravel()
    if y.size == 0:
        raise ValueError("y_true is empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be binary (0 = normal, 1 = anomaly)")
    y = y.astype(np.int64)
    if np.unique(y).size < 2:
        only = "anomalies" if y[0] == 1 else "normal events"
        raise ValueError(
            f"y_true contains only {only} ({y.size} samples); AUROC/AUPRC need both classes"
        )
    return y


def validate_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y_true, scores)`` as 1-D int / float arrays, or raise ``ValueError``.

    Besides :func:`validate_labels`, rejects length mismatches and NaN/inf scores, which
    scikit-learn would otherwise report far from their cause.
    """
    y = validate_labels(y_true)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf values")
    return y, s


def compute_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    kinds: np.ndarray | None = None,
    threshold: float | None = None,
    fprs: tuple[float, ...] = (0.01, 0.001),
) -> dict[str, Any]:
    """Summarise how well ``scores`` separate anomalies (``y_true == 1``) from normal events.

    Returns threshold-free metrics (AUROC, AUPRC, best F1, TPR at fixed FPRs), the
    operating-point metrics at ``threshold`` when one is given, and, when ``kinds`` is
    given, the recall of each anomaly kind (at ``threshold``, or else at the threshold that
    gives 1% FPR) so a weak spot on one attack type is not hidden by the average.
    """
    y, s = validate_inputs(y_true, scores)
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
    }
    out.update(_best_f1(y, s))
    fpr_points = {f: _operating_point_at_fpr(y, s, f) for f in fprs}
    out["tpr_at_fpr"] = {_fpr_key(f): tpr for f, (tpr, _) in fpr_points.items()}
    out["threshold_at_fpr"] = {_fpr_key(f): _finite(t) for f, (_, t) in fpr_points.items()}
    if threshold is not None:
        out.update(_threshold_metrics(y, s, float(threshold)))
    if kinds is not None:
        out.update(_per_kind_section(y, s, kinds, threshold))
    return out


def curves(y_true: np.ndarray, scores: np.ndarray, max_points: int = 2000) -> dict[str, Any]:
    """ROC and PR curves, each thinned to at most ``max_points`` points for plotting.

    A PR curve has one point per distinct score, which makes plots of 10⁶ events slow
    and huge without adding anything visible, hence the downsampling.
    """
    y, s = validate_inputs(y_true, scores)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    roc_idx = _thin(fpr.size, max_points)
    pr_idx = _thin(precision.size, max_points)
    return {
        "roc": {"fpr": fpr[roc_idx], "tpr": tpr[roc_idx]},
        "pr": {"precision": precision[pr_idx], "recall": recall[pr_idx]},
    }


def _best_f1(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """Best F1 over all thresholds: the ceiling any threshold choice could reach."""
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last (precision=1, recall=0) point has no threshold; drop it to align arrays.
    p, r = precision[:-1], recall[:-1]
    denom = p + r
    f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return {"best_f1": float(f1[best]), "best_f1_threshold": _finite(thresholds[best])}


def _operating_point_at_fpr(y: np.ndarray, s: np.ndarray, target: float) -> tuple[float, float]:
    """``(tpr, threshold)``: the highest TPR reachable without exceeding ``target`` FPR.

    This is the achievable (step-wise) value, not a linear interpolation between ROC
    points, because a deployed threshold can only sit at a real operating point.
    ``drop_intermediate=False`` keeps every point so none that qualifies is skipped.
    The threshold is the lowest one with that TPR; ``+inf`` means "flag nothing".
    """
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    idx = int(np.searchsorted(fpr, target + _FPR_EPS, side="right")) - 1
    return float(tpr[idx]), float(thresholds[idx])


def _threshold_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision / recall / F1 / FPR for the alerts a fixed threshold would raise."""
    pred = (s >= threshold).astype(np.int64)
    tn, fp, _, _ = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "threshold": threshold,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "fpr": float(fp / (fp + tn)),
    }


def _per_kind_section(
    y: np.ndarray, s: np.ndarray, kinds: np.ndarray, threshold: float | None
) -> dict[str, Any]:
    """Per-kind recall plus the threshold it was measured at and where that came from."""
    k = np.asarray(kinds).astype(str).ravel()
    if k.shape != y.shape:
        raise ValueError(f"kinds has {k.size} values but y_true has {y.size}")
    if threshold is None:
        _, thr = _operating_point_at_fpr(y, s, _DEFAULT_KIND_FPR)
        source = f"fpr={_fpr_key(_DEFAULT_KIND_FPR)}"
    else:
        thr, source = float(threshold), "given"
    return {
        "per_kind_recall": _per_kind_recall(y, s, k, thr),
        "per_kind_threshold": _finite(thr),
        "per_kind_threshold_source": source,
    }


def _per_kind_recall(
    y: np.ndarray, s: np.ndarray, kinds: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    """``{kind: {"recall", "count"}}`` over the anomalies (``y == 1``) of each kind.

    Only labelled anomalies count, so a kind string left on a normal row (a labelling
    slip) cannot dilute that kind's recall.
    """
    pred = (s >= threshold).astype(np.int64)
    result: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds[y == 1].tolist()) - NORMAL_KINDS):
        mask = (kinds == kind) & (y == 1)
        recall = recall_score(y[mask], pred[mask], zero_division=0)
        result[kind] = {"recall": float(recall), "count": int(mask.sum())}
    return result


def _thin(n: int, max_points: int) -> np.ndarray:
    """Evenly spaced indices into ``n`` points, always keeping the first and last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _fpr_key(fpr: float) -> str:
    """JSON key for an FPR target: ``0.01 -> "0.01"``, ``0.001 -> "0.001"``."""
    return repr(float(fpr))


def _finite(value: float) -> float | None:
    """``float(value)``, or ``None`` when it is NaN/inf (which strict JSON cannot hold)."""
    v = float(value)
    return v if math.isfinite(v) else None
