"""Evaluation: score a labelled DataFrame with a model repository, compute metrics, report.

Metrics come from scikit-learn (``modelling.evaluation``); the report is HTML with PNG plots and
puts our model beside IsolationForest (and River HalfSpaceTrees when installed) on the same split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelling.evaluation import compute_metrics, run_baselines, write_report
from modelling.progress import Steps
from modelling.rundir import write_json
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.preprocess.featurizer import Featurizer

KIND_COLUMN = "anomaly_kind"


@dataclass
class ScoredFrame:
    frame: pd.DataFrame
    labels: np.ndarray | None
    kinds: np.ndarray | None
    outputs: dict[str, np.ndarray]
    normalized: np.ndarray
    rejected: int
    seconds: float

    @property
    def scores(self) -> np.ndarray:
        return self.outputs["ANOMALY_SCORE"].reshape(-1)


def score_frame(
    engine: InProcessEngine, featurizer: Featurizer, frame: pd.DataFrame, batch_size: int = 8192
) -> ScoredFrame:
    """Featurize + infer a whole frame in batches (timed: featurize + infer, not I/O)."""
    parts: list[dict[str, np.ndarray]] = []
    normalized: list[np.ndarray] = []
    frames: list[pd.DataFrame] = []
    rejected = 0
    start = time.perf_counter()
    for lo in range(0, len(frame), batch_size):
        batch = featurizer.transform(frame.iloc[lo : lo + batch_size])
        rejected += len(batch.rejects)
        if len(batch) == 0:
            continue
        parts.append(engine.infer(batch.tensor))
        normalized.append(engine.normalize(batch.tensor))
        frames.append(batch.frame)
    seconds = time.perf_counter() - start
    accepted = pd.concat(frames, ignore_index=True) if frames else frame.iloc[:0]
    outputs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    labels = featurizer.labels(accepted)
    kinds = None
    if KIND_COLUMN in accepted.columns:
        kinds = accepted[KIND_COLUMN].astype(str).to_numpy()
    elif featurizer.spec.label_column in accepted.columns and labels is not None:
        kinds = np.where(labels == 1, accepted[featurizer.spec.label_column].astype(str), "none")
    width = featurizer.spec.tensor_width
    norm = np.concatenate(normalized) if normalized else np.zeros((0, width), np.float32)
    return ScoredFrame(accepted, labels, kinds, outputs, norm, rejected, seconds)


def evaluate(
    scored: ScoredFrame,
    out_dir: Path,
    title: str,
    train_normalized: np.ndarray | None,
    baselines: bool = True,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    progress: bool = False,
    *,
    records: Sequence[dict[str, Any]] | None = None,
    incidents: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics (+ baselines on the same split) -> ``metrics.json`` and ``report.html``.

    With ``progress``, a line per finished step on stderr (the baselines can take a minute).
    ``records`` (the score records of ``scored``'s events, same order) and ``incidents``
    (incident dicts) fill the report's analyst section: top alerts with their reasons in
    words, top incidents, and the combined score beside the model's; without them the
    section still explains the counts and says what was not given.
    """
    if scored.labels is None:
        raise ValueError("evaluation needs a label column (see the spec's `label`)")
    threshold = float(scored.outputs["THRESHOLD"].reshape(-1)[0])
    metrics = compute_metrics(scored.labels, scored.scores, scored.kinds, threshold=threshold)
    metrics["events_per_s"] = len(scored.scores) / scored.seconds if scored.seconds else None
    metrics["rejected_rows"] = scored.rejected
    metrics["model_version"] = int(scored.outputs["MODEL_VERSION"].reshape(-1)[0])
    results = []
    steps = Steps("evaluate", enabled=progress)
    if baselines and train_normalized is not None:
        with steps(f"fitted and scored the baselines ({len(train_normalized):,} training rows)"):
            results = run_baselines(train_normalized, scored.normalized, scored.labels, seed=seed)
        metrics["baselines"] = [r.to_dict() for r in results]
    out_dir.mkdir(parents=True, exist_ok=True)
    with steps(f"wrote the report to {out_dir}"):
        report = write_report(
            out_dir,
            title,
            scored.labels,
            scored.scores,
            metrics,
            kinds=scored.kinds,
            baselines=results,
            extra=extra,
            records=records,
            incidents=incidents,
        )
    metrics["report"] = str(report)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
