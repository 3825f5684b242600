"""Membership-inference statistics: attack scores, attack metrics, an empirical epsilon bound.

Pure numpy/scipy/scikit-learn on per-example losses, so the numbers can be checked without a
model (the training half of the audit is :mod:`federated.audit`). Convention everywhere: a
**higher score means "member"**, ``is_member`` is 1 for rows the model trained on.

* :func:`loss_scores`: the loss-threshold attack (Yeom et al. 2018, "Privacy Risk in Machine
  Learning: Analyzing the Connection to Overfitting"): a model fits its training rows better,
  so a low reconstruction error says "member". One global threshold for every row.
* :func:`lira_scores`: the likelihood-ratio attack of Carlini et al. 2022, "Membership Inference
  Attacks From First Principles" (LiRA). Some rows are hard to reconstruct whatever the model
  saw; reference models trained with and without each row calibrate its loss per row. The
  statistic is the log of the reconstruction error (close to Gaussian across models); offline
  LiRA asks how unlikely the target's loss is under the row's OUT distribution, online LiRA
  compares the IN and OUT Gaussians.
* :func:`attack_metrics`: ROC AUC and TPR at low FPR (Carlini et al. argue the low-FPR regime is
  what matters: an attack that is sure about a few rows is a real leak even at AUC 0.5).
* :func:`epsilon_lower_bound`: what the attack proves about epsilon. An (eps, delta)-DP training
  run bounds every test "member if score >= t": TPR <= e^eps FPR + delta and
  TNR <= e^eps FNR + delta (Kairouz et al. 2015; used for auditing by Jagielski et al. 2020,
  "Auditing Differentially Private Machine Learning: How Private is Private SGD?", and Nasr et
  al. 2021, "Adversary Instantiation: Lower Bounds for Differentially Private Machine
  Learning"). With Clopper-Pearson bounds on TPR/FPR at a stated confidence, the bound is a
  statistically valid lower bound; the threshold is chosen on one half of the rows and the
  bound evaluated on the other half, so picking the best of many thresholds does not inflate it.

>>> member = np.array([1] * 50 + [0] * 50)
>>> loss = np.r_[np.full(50, 0.1), np.full(50, 1.0)]   # members fit perfectly: a total leak
>>> m = attack_metrics(member, loss_scores(loss))
>>> m["auc"], m["tpr_at_fpr"]["0.01"]
(1.0, 1.0)
>>> bound = epsilon_lower_bound(member, loss_scores(loss), delta=1e-5, confidence=0.95)
>>> round(bound.epsilon, 2)   # 25 + 25 rows evaluated, all right: eps >= 1.84 at 95%
1.84
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import beta, norm
from sklearn.metrics import roc_auc_score, roc_curve

FPR_TARGETS = (0.001, 0.01)


def loss_scores(loss: np.ndarray) -> np.ndarray:
    """Yeom et al.'s attack: the lower the loss, the more likely a member."""
    return -np.asarray(loss, dtype=np.float64)


def log_loss(loss: np.ndarray) -> np.ndarray:
    """LiRA's per-model statistic: log reconstruction error (the floor keeps log finite)."""
    return np.log(np.maximum(np.asarray(loss, dtype=np.float64), 1e-12))


def lira_scores(
    target_loss: np.ndarray,
    reference_loss: np.ndarray,
    reference_in: np.ndarray,
    online: bool = False,
    global_variance: bool = True,
) -> np.ndarray:
    """LiRA membership scores of every row (Carlini et al. 2022, Algorithm 1).

    ``target_loss``: (n,) the audited model's losses; ``reference_loss``: (K, n) the reference
    models' losses on the same rows; ``reference_in``: (K, n) whether reference model k trained
    on row n. Offline (``online=False``): score = -log Pr[OUT loss <= observed], i.e. how far
    below the row's OUT mean the target's loss is, in OUT standard deviations. Online: the
    log-likelihood ratio of the IN and OUT Gaussians. With few reference models per row the
    per-row variance is noise; ``global_variance`` pools it over rows (the paper's advice for
    small K). A row with no OUT (IN) model falls back to the mean over rows.

    >>> rng = np.random.default_rng(0)
    >>> ref_in = rng.random((8, 4)) < 0.5
    >>> ref = np.where(ref_in, 0.5, 1.0) * np.array([1.0, 1.0, 10.0, 10.0])  # rows 2, 3 are hard
    >>> s = lira_scores(np.array([0.5, 1.0, 5.0, 10.0]), ref, ref_in)
    >>> bool(s[0] > s[1] and s[2] > s[3])   # calibrated per row: hard row 2 still a member
    True
    """
    stat = log_loss(target_loss)
    ref = log_loss(reference_loss)
    inside = np.asarray(reference_in, dtype=bool)
    out_mu, out_sd = _gaussian(ref, ~inside, global_variance)
    if not online:
        return -norm.logcdf(stat, loc=out_mu, scale=out_sd)
    in_mu, in_sd = _gaussian(ref, inside, global_variance)
    return norm.logpdf(stat, loc=in_mu, scale=in_sd) - norm.logpdf(stat, loc=out_mu, scale=out_sd)


def _gaussian(
    ref: np.ndarray, mask: np.ndarray, global_variance: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and standard deviation of ``ref`` over the models ``mask`` selects."""
    count = mask.sum(axis=0)
    total = np.where(mask, ref, 0.0).sum(axis=0)
    fallback = float(ref[mask].mean()) if mask.any() else float(ref.mean())
    mu = np.where(count > 0, total / np.maximum(count, 1), fallback)
    resid = np.where(mask, ref - mu, 0.0)
    if global_variance or (count < 2).any():
        pooled = float((resid**2).sum() / max(1, int(mask.sum()) - int((count > 0).sum())))
        sd = np.full(ref.shape[1], np.sqrt(max(pooled, 1e-12)))
    else:
        sd = np.sqrt(np.maximum((resid**2).sum(axis=0) / (count - 1), 1e-12))
    return mu, sd


def tpr_at_fpr(is_member: np.ndarray, score: np.ndarray, target: float) -> float:
    """The highest TPR of any threshold whose FPR is at most ``target`` (ROC from sklearn)."""
    fpr, tpr, _ = roc_curve(is_member, score)
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def attack_metrics(
    is_member: np.ndarray, score: np.ndarray, fpr_targets: tuple[float, ...] = FPR_TARGETS
) -> dict[str, Any]:
    """AUC and TPR at each low FPR of one attack; 0.5 / ~FPR mean the attack learns nothing.

    With n non-members an FPR below 1/n cannot be measured: such entries are reported but say
    "no row may be misclassified", so read TPR@0.1% only with >= 1000 non-members.
    """
    y = np.asarray(is_member, dtype=int)
    s = np.asarray(score, dtype=np.float64)
    return {
        "auc": float(roc_auc_score(y, s)),
        "tpr_at_fpr": {f"{t:g}": tpr_at_fpr(y, s, t) for t in fpr_targets},
        "members": int(y.sum()),
        "non_members": int(len(y) - y.sum()),
    }


def clopper_pearson(k: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson bounds of a binomial rate: each holds with prob >= 1 - alpha.

    >>> lo, hi = clopper_pearson(np.array([0, 10]), 10, 0.05)
    >>> round(float(lo[1]), 3), round(float(hi[0]), 3)
    (0.741, 0.259)
    """
    k = np.asarray(k, dtype=np.float64)
    lo = np.where(k > 0, beta.ppf(alpha, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha, k + 1, n - k), 1.0)
    return lo, hi


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical lower bound on epsilon and the test that achieved it."""

    epsilon: float
    """0.0 when no threshold beats chance with the stated confidence."""
    confidence: float
    delta: float
    threshold: float | None
    direction: str
    """``tpr/fpr`` (members caught) or ``tnr/fnr`` (non-members cleared)."""
    tpr: float | None
    fpr: float | None
    tpr_low: float | None
    fpr_high: float | None
    rows_evaluated: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bounds(
    is_member: np.ndarray, score: np.ndarray, thresholds: np.ndarray, alpha: float, delta: float
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Epsilon implied by every threshold, both directions, with confidence bounds."""
    pos, neg = score[is_member == 1], score[is_member == 0]
    tp = (pos[None, :] >= thresholds[:, None]).sum(axis=1)
    fp = (neg[None, :] >= thresholds[:, None]).sum(axis=1)
    # both rates bounded at alpha/2 each: the pair holds jointly with prob >= 1 - alpha
    tpr_lo, _ = clopper_pearson(tp, len(pos), alpha / 2)
    _, fpr_hi = clopper_pearson(fp, len(neg), alpha / 2)
    _, fnr_hi = clopper_pearson(len(pos) - tp, len(pos), alpha / 2)
    tnr_lo, _ = clopper_pearson(len(neg) - fp, len(neg), alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps_pos = np.log(np.maximum(tpr_lo - delta, 0.0) / fpr_hi)
        eps_neg = np.log(np.maximum(tnr_lo - delta, 0.0) / fnr_hi)
    rates = {
        "tpr": tp / max(1, len(pos)),
        "fpr": fp / max(1, len(neg)),
        "tpr_lo": tpr_lo,
        "fpr_hi": fpr_hi,
        "tnr_lo": tnr_lo,
        "fnr_hi": fnr_hi,
    }
    return np.nan_to_num(eps_pos, neginf=0.0), np.nan_to_num(eps_neg, neginf=0.0), rates


def epsilon_lower_bound(
    is_member: np.ndarray,
    score: np.ndarray,
    delta: float,
    confidence: float = 0.95,
    seed: int = 0,
) -> EpsilonBound:
    """Largest epsilon the attack proves at ``confidence`` (Jagielski et al. 2020).

    Rows are split at random (stratified) into a selection half, where the threshold and
    direction with the largest bound are picked, and an evaluation half, where the bound is
    computed with Clopper-Pearson intervals. Treats rows as independent trials of the DP
    distinguishing game: exact when membership was assigned at random (the run's seeded
    train/validation split), the usual one-run heuristic otherwise (Steinke et al. 2023 give a
    rigorous one-run analysis).
    """
    y = np.asarray(is_member, dtype=int)
    s = np.asarray(score, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pick = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == label))
        pick[rows[: len(rows) // 2]] = True
    alpha = 1.0 - confidence
    _, _, candidates = roc_curve(y[pick], s[pick])  # the ROC's corners: every distinct test
    candidates = candidates[np.isfinite(candidates)]
    if len(candidates) > 2000:
        candidates = np.quantile(candidates, np.linspace(0, 1, 2001))
    sel_pos, sel_neg, _ = _bounds(y[pick], s[pick], candidates, alpha, delta)
    best_pos, best_neg = int(np.argmax(sel_pos)), int(np.argmax(sel_neg))
    if sel_pos[best_pos] >= sel_neg[best_neg]:
        threshold, direction = float(candidates[best_pos]), "tpr/fpr"
    else:
        threshold, direction = float(candidates[best_neg]), "tnr/fnr"
    ev = ~pick
    pos, neg, r = _bounds(y[ev], s[ev], np.array([threshold]), alpha, delta)
    eps = float(max(0.0, (pos if direction == "tpr/fpr" else neg)[0]))
    return EpsilonBound(
        epsilon=eps,
        confidence=confidence,
        delta=delta,
        threshold=threshold,
        direction=direction,
        tpr=float(r["tpr"][0]),
        fpr=float(r["fpr"][0]),
        tpr_low=float(r["tpr_lo"][0]),
        fpr_high=float(r["fpr_hi"][0]),
        rows_evaluated=int(ev.sum()),
    )
