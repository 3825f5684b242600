"""The promotion gate: may a candidate version replace the served one? Decided on rows the
candidate was *not* calibrated on.

Rows: a candidate's threshold is calibrated on normal rows (its target false-positive rate). A
gate scored on those same rows always sees exactly that rate, so it cannot refuse anything. So
:func:`split_rows` keeps calibration and gate rows apart: with a separate ``holdout`` the
validation rows calibrate and the holdout gates (sharing an event id is refused); without one the
validation rows are split once, seeded, into a calibration part and a gate part.

Checks (both versions scored by ONNX Runtime, each at its own threshold):

* **labelled** gate rows (both classes): AUROC of candidate vs served; refused when the candidate
  is worse by more than ``tolerance``.
* **unlabelled** (or normal-only) gate rows, the usual case at a site:
  1. false-positive rate on the gate's normal rows: refused when the candidate flags more than
     the served version plus ``tolerance`` plus two standard errors of a rate near the
     calibrated ``target_fpr`` measured on that many rows (small gate slices are noisy);
  2. **canary recall** (:mod:`modelling.evaluation.canaries`): the gate's normal rows, each
     perturbed in one documented way. A version's recall is the share of canaries it flags among
     those whose *original* row it does not flag: a served model that flags a drifted row
     anyway gets no credit for flagging its canary. Refused when the candidate's recall is below
     the served one's minus ``canary_tolerance``: it has lost detection.

A refusal raises :class:`GateRefused` naming every check with both numbers; a pass returns the
same numbers for the version's manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from modelling.evaluation.canaries import BASE_COLUMN, KIND_COLUMN, make_canaries
from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.stages.preprocess.featurizer import Featurizer

Scorer = Callable[[np.ndarray], tuple[np.ndarray, float]]
"""Normalized rows -> (anomaly score per row, the version's threshold)."""

MIN_GATE_ROWS = 100


class GateRefused(SecureAIError, RuntimeError):
    """The candidate failed a gate check (the message has both numbers of every check)."""


class GateConfig(StrictModel):
    gate: Literal["auto", "holdout", "unlabelled"] = "auto"
    """``auto``: AUROC when the gate rows have both labels, else ``unlabelled`` (FPR + canaries)."""
    tolerance: float = Field(default=0.01, ge=0)
    """Largest allowed AUROC loss, or false-positive-rate increase."""
    canary_tolerance: float = Field(default=0.05, ge=0)
    """Largest allowed loss of canary recall."""
    canaries: int = Field(default=900, ge=0)
    calibration_fraction: float = Field(default=0.5, gt=0, lt=1)
    """Without a holdout: the share of validation rows that calibrate (the rest gate)."""
    seed: int = 0


class PublishConfig(GateConfig):
    """The gate's settings plus the publisher's own (``secureai model publish``, and
    ``publish:`` of a federated config whose sites publish the final model themselves)."""

    target_fpr: float = Field(default=0.01, gt=0, lt=0.5)
    keep_last: int = Field(default=5, ge=1)
    parity_atol: float = Field(default=1e-5, gt=0)


class SitePublishConfig(PublishConfig):
    """``publish:`` of a federated config: after the last round each site gates the global
    model on its own held-out window rows and publishes it into its own repository."""

    enabled: bool = False


@dataclass
class GateRows:
    """What the publisher calibrates on and what the gate scores (normalized tensors)."""

    calibration: np.ndarray
    gate: np.ndarray
    gate_labels: np.ndarray | None
    canaries: np.ndarray
    canary_kinds: np.ndarray
    canary_base: np.ndarray
    """For each canary, the gate row (index into ``gate``) it was made from."""
    source: str


def _featurize(
    featurizer: Featurizer, normalizer: Normalizer, frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    batch = featurizer.transform(frame)
    return (
        normalizer.transform(np.asarray(batch.tensor)),
        featurizer.labels(batch.frame),
        batch.frame,
    )


def split_rows(
    spec: FeatureSpec,
    normalizer: Normalizer,
    validation: pd.DataFrame,
    holdout: pd.DataFrame | None,
    config: GateConfig,
) -> GateRows:
    """Calibration rows and gate rows, never the same; canaries from the gate's normal rows."""
    featurizer = Featurizer(spec)
    if holdout is not None:
        if spec.event_id and spec.event_id in validation and spec.event_id in holdout:
            shared = set(validation[spec.event_id].dropna()) & set(holdout[spec.event_id].dropna())
            if shared:
                raise GateRefused(
                    f"the holdout shares {len(shared)} event id(s) with the validation data: "
                    "calibration and gate must not use the same rows (pass disjoint files, or "
                    "no --holdout to split the validation data)"
                )
        x_cal, cal_labels, _ = _featurize(featurizer, normalizer, validation)
        x_gate, gate_labels, gate_frame = _featurize(featurizer, normalizer, holdout)
        source = "holdout"
    else:
        x_all, labels, frame = _featurize(featurizer, normalizer, validation)
        order = np.random.default_rng(config.seed).permutation(len(x_all))
        cut = round(len(order) * config.calibration_fraction)
        cal_idx, gate_idx = np.sort(order[:cut]), np.sort(order[cut:])
        x_cal, x_gate = x_all[cal_idx], x_all[gate_idx]
        cal_labels = None if labels is None else labels[cal_idx]
        gate_labels = None if labels is None else labels[gate_idx]
        gate_frame = frame.iloc[gate_idx].reset_index(drop=True)
        source = f"validation split {config.calibration_fraction:g}/seed {config.seed}"
    calibration = x_cal if cal_labels is None else x_cal[cal_labels == 0]
    normal = np.ones(len(x_gate), bool) if gate_labels is None else gate_labels == 0
    if len(calibration) < MIN_GATE_ROWS or int(normal.sum()) < MIN_GATE_ROWS:
        raise GateRefused(
            f"too few normal rows to calibrate and gate apart: {len(calibration)} calibration, "
            f"{int(normal.sum())} gate (each needs at least {MIN_GATE_ROWS}); pass more "
            "validation data"
        )
    normal_pos = np.flatnonzero(normal)
    canary_frame = make_canaries(
        gate_frame.iloc[normal_pos].reset_index(drop=True), spec, config.canaries, config.seed
    )
    batch = featurizer.transform(canary_frame)
    accepted = canary_frame.iloc[np.asarray(batch.positions)]
    return GateRows(
        calibration=calibration,
        gate=x_gate,
        gate_labels=gate_labels,
        canaries=normalizer.transform(np.asarray(batch.tensor)),
        canary_kinds=accepted[KIND_COLUMN].to_numpy(dtype=object),
        canary_base=normal_pos[accepted[BASE_COLUMN].to_numpy(dtype=np.int64)],
        source=source,
    )


def _canary_recall(scorer: Scorer, rows: GateRows) -> tuple[float, dict[str, float]]:
    base_scores, threshold = scorer(rows.gate)
    scores, _ = scorer(rows.canaries)
    counted = base_scores[rows.canary_base] <= threshold  # base row not already flagged
    flagged = scores > threshold
    by_kind = {
        str(k): float(flagged[counted & (rows.canary_kinds == k)].mean())
        for k in sorted(set(rows.canary_kinds))
        if (counted & (rows.canary_kinds == k)).any()
    }
    return (float(flagged[counted].mean()) if counted.any() else 0.0), by_kind


def _normal_mask(rows: GateRows) -> np.ndarray:
    if rows.gate_labels is None:
        return np.ones(len(rows.gate), bool)
    return np.asarray(rows.gate_labels == 0)


def _fpr(scorer: Scorer, rows: GateRows) -> float:
    scores, threshold = scorer(rows.gate)
    return float(np.mean(scores[_normal_mask(rows)] > threshold))


def decide(
    config: GateConfig,
    candidate: Scorer,
    served: Scorer | None,
    rows: GateRows,
    target_fpr: float = 0.01,
) -> dict[str, Any]:
    """Run the gate; the numbers for the manifest, or :class:`GateRefused`."""
    counts = {
        "calibration": len(rows.calibration),
        "gate": len(rows.gate),
        "canaries": len(rows.canaries),
    }
    if served is None:
        return {"gate": "none", "reason": "first version", "rows": counts, "rows_from": rows.source}
    labels = rows.gate_labels
    both = labels is not None and 0 < int(labels.sum()) < len(labels)
    kind = config.gate if config.gate != "auto" else ("holdout" if both else "unlabelled")
    if kind == "holdout":
        if not both:
            raise GateRefused("holdout gate needs labelled gate rows with both classes")
        assert labels is not None
        from sklearn.metrics import roc_auc_score  # only labelled gates: not in every ClientApp

        cand = float(roc_auc_score(labels, candidate(rows.gate)[0]))
        cur = float(roc_auc_score(labels, served(rows.gate)[0]))
        numbers = {
            "gate": "holdout_auroc",
            "candidate": cand,
            "served": cur,
            "tolerance": config.tolerance,
            "rows": counts,
            "rows_from": rows.source,
        }
        if cand < cur - config.tolerance:
            raise GateRefused(
                f"candidate AUROC {cand:.4f} is worse than served {cur:.4f} "
                f"by more than {config.tolerance}"
            )
        return numbers
    fpr = {"candidate": _fpr(candidate, rows), "served": _fpr(served, rows)}
    cand_recall, cand_kinds = _canary_recall(candidate, rows)
    served_recall, served_kinds = _canary_recall(served, rows)
    numbers = {
        "gate": "unlabelled",
        "candidate": cand_recall,
        "served": served_recall,
        "false_positive_rate": fpr,
        "canary_recall": {"candidate": cand_recall, "served": served_recall},
        "canary_recall_by_kind": {"candidate": cand_kinds, "served": served_kinds},
        "tolerance": config.tolerance,
        "canary_tolerance": config.canary_tolerance,
        "rows": counts,
        "rows_from": rows.source,
    }
    # The candidate may flag what the served version flags plus the tolerance and two
    # standard errors of a rate near its calibrated target measured on this many rows: a
    # candidate is not refused for sampling noise on a small gate slice.
    n_normal = int(np.sum(_normal_mask(rows)))
    rate = max(fpr["served"], target_fpr)
    noise = 2.0 * float(np.sqrt(rate * (1.0 - rate) / max(n_normal, 1)))
    fpr_limit = fpr["served"] + config.tolerance + noise
    fpr["limit"] = fpr_limit  # the same dict as numbers["false_positive_rate"]
    fpr_ok = fpr["candidate"] <= fpr_limit
    recall_ok = cand_recall >= served_recall - config.canary_tolerance
    if not (fpr_ok and recall_ok):
        kinds = ", ".join(
            f"{k} {cand_kinds.get(k, 0.0):.2f}/{served_kinds.get(k, 0.0):.2f}"
            for k in sorted(set(cand_kinds) | set(served_kinds))
        )
        raise GateRefused(
            "candidate refused by the unlabelled gate: "
            f"canary recall {cand_recall:.3f} vs served {served_recall:.3f} "
            f"({'ok' if recall_ok else f'FAILED: fell by more than {config.canary_tolerance}'}; "
            f"by kind candidate/served: {kinds}); "
            f"false-positive rate on {counts['gate']} held-out rows {fpr['candidate']:.4f} vs "
            f"served {fpr['served']:.4f} "
            f"({'ok' if fpr_ok else f'FAILED: above the limit {fpr_limit:.4f}'}: served + "
            f"tolerance {config.tolerance} + 2 standard errors)"
        )
    return numbers
