"""Off-the-shelf anomaly detectors to compare the autoencoder against.

A learned model is only worth its cost if it beats simple detectors on the same split, so
every evaluation run scores the same train/test features with:

* scikit-learn's ``IsolationForest`` (batch, always available), and
* River's ``HalfSpaceTrees`` (streaming, only when the optional ``river`` extra is
  installed), the usual online baseline for log streams.

Scores follow the convention of :mod:`modelling.evaluation.metrics`: higher = more
anomalous.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from modelling.evaluation.metrics import validate_labels

__all__ = ["BaselineResult", "half_space_trees", "isolation_forest", "run_baselines"]


@dataclass(eq=False)
class BaselineResult:
    """Outcome of one baseline on the test split.

    ``scores`` has one value per *scored* test row. For a detector that scores a
    subsample (Half-Space Trees), ``indices`` gives the rows of ``X_test`` those scores
    belong to, so ``y_test[indices]`` lines up with ``scores``; ``None`` means every row.
    """

    name: str
    auroc: float
    auprc: float
    fit_seconds: float
    events_per_s: float  # scoring throughput on this machine, one process
    scores: np.ndarray
    n_scored: int
    indices: np.ndarray | None = field(default=None, repr=False)

    def labels_for(self, y_test: np.ndarray) -> np.ndarray:
        """The labels matching ``scores`` (``y_test`` itself, or its scored subsample)."""
        y = np.asarray(y_test)
        return y if self.indices is None else y[self.indices]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary without the per-event arrays."""
        d = asdict(self)
        del d["scores"], d["indices"]
        return d


def isolation_forest(
    X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> BaselineResult:
    """Fit an ``IsolationForest`` on the training rows and score every test row.

    ``n_jobs=1`` keeps the throughput figure comparable with a single-worker pipeline.
    """
    train, test, y = _validate(X_train, X_test, y_test)
    model = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1)
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = -model.score_samples(test)
    score_s = time.perf_counter() - t0
    return _result("isolation_forest", y, scores, fit_s, score_s)


def half_space_trees(
    X_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    max_train: int = 20000,
    max_test: int = 20000,
) -> BaselineResult | None:
    """River ``HalfSpaceTrees``, or ``None`` when ``river`` is not installed.

    River works one event (one dict) at a time, at tens of microseconds each, so at most
    ``max_train`` training rows and ``max_test`` test rows are used, chosen by a seeded
    generator (time order kept; the test subsample is stratified so both classes stay
    in it). Features are min-max scaled with the training range and clipped, because
    Half-Space Trees assume every feature lies in [0, 1].
    """
    try:
        from river import anomaly  # optional dependency: imported only when asked for
    except ImportError:
        return None
    train, test, y_all = _validate(X_train, X_test, y_test)
    rng = np.random.default_rng(seed)
    train = train[_subsample(len(train), max_train, rng)]
    test_idx = _stratified_subsample(y_all, max_test, rng)
    lo, span = _minmax(train)
    model = anomaly.HalfSpaceTrees(seed=seed)
    t0 = time.perf_counter()
    for row in _scaled_rows(train, lo, span):
        model.learn_one(row)
    fit_s = time.perf_counter() - t0
    test = test[test_idx]
    t0 = time.perf_counter()
    scores = np.fromiter(
        (model.score_one(row) for row in _scaled_rows(test, lo, span)),
        dtype=np.float64,
        count=len(test),
    )
    score_s = time.perf_counter() - t0
    indices = None if len(test_idx) == len(y_all) else test_idx
    return _result("half_space_trees", y_all[test_idx], scores, fit_s, score_s, indices)


def run_baselines(
    X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> list[BaselineResult]:
    """Every available baseline, in a fixed order; River's is skipped when not installed."""
    results = [isolation_forest(X_train, X_test, y_test, seed=seed)]
    hst = half_space_trees(X_train, X_test, y_test, seed=seed)
    if hst is not None:
        results.append(hst)
    return results


def _validate(
    X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float matrices with matching widths and usable labels, or ``ValueError``."""
    train = np.asarray(X_train, dtype=np.float64)
    test = np.asarray(X_test, dtype=np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"need 2-D X with equal widths, got {train.shape} and {test.shape}")
    if len(train) == 0:
        raise ValueError("X_train is empty")
    y = validate_labels(y_test)
    if len(y) != len(test):
        raise ValueError(f"X_test has {len(test)} rows but y_test has {len(y)}")
    return train, test, y


def _result(
    name: str,
    y: np.ndarray,
    scores: np.ndarray,
    fit_s: float,
    score_s: float,
    indices: np.ndarray | None = None,
) -> BaselineResult:
    """Package scores with their AUROC/AUPRC and timings."""
    return BaselineResult(
        name=name,
        auroc=float(roc_auc_score(y, scores)),
        auprc=float(average_precision_score(y, scores)),
        fit_seconds=float(fit_s),
        events_per_s=float(len(scores) / max(score_s, 1e-9)),
        scores=scores,
        n_scored=len(scores),
        indices=indices,
    )


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``min(n, k)`` rows drawn without replacement (all rows if n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def _stratified_subsample(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of up to ``k`` rows keeping the anomaly rate, with >= 1 of each class.

    Anomalies are rare, so a plain random draw could keep none of them and leave the
    AUROC undefined.
    """
    if len(y) <= k:
        return np.arange(len(y))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_pos = min(len(pos), max(1, round(k * len(pos) / len(y))))
    n_neg = min(len(neg), k - n_pos)
    picked = np.concatenate(
        [rng.choice(pos, size=n_pos, replace=False), rng.choice(neg, size=n_neg, replace=False)]
    )
    return np.sort(picked)


def _minmax(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and range of the training data (constant features get range 1)."""
    lo = train.min(axis=0)
    span = train.max(axis=0) - lo
    span[span == 0] = 1.0
    return lo, span


def _scaled_rows(X: np.ndarray, lo: np.ndarray, span: np.ndarray) -> list[dict[int, float]]:
    """Rows scaled into [0, 1] as the ``{feature: value}`` dicts River expects."""
    scaled = np.clip((X - lo) / span, 0.0, 1.0)
    return [dict(enumerate(row)) for row in scaled.tolist()]
