"""``secureai demo``: the whole spine on the embedded default, no Kafka, no Triton server.

Synthetic auth + netflow events -> train (or take the committed version 1) -> stream a fresh
day of events through the in-process pipeline (progress bar, live events/s) -> score records,
dead letters, incidents, metrics, an HTML report and the top incidents and alerts with their
reasons in one run directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelling.centralized import train_centralized
from modelling.evaluation import compute_metrics
from modelling.evaluation.evaluate import ScoredFrame, evaluate
from modelling.evaluation.incident_metrics import incident_metrics
from modelling.rundir import new_run_dir, write_json
from morpheus_ext.config_io import dump_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import BatchResult, ScoringPipeline, run_batches
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import jsonl_file_source
from morpheus_ext.stages.output.files import JsonlSink
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
from morpheus_ext.stages.postprocess.incidents import (
    IncidentTracker,
    latest_revisions,
    render_incidents,
)
from morpheus_ext.stages.postprocess.leakage import leakage_detector
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.config import DemoConfig
from pipelines.top_alerts import TopAlerts
from synthetic import generate, write_events

log = logging.getLogger(__name__)


TOP_ALERTS = 10
"""Alerts listed at the end of the demo (and in ``top_alerts.txt``), as ``secureai tail``."""
TOP_INCIDENTS = 10
"""Incidents listed at the end of the demo (and in ``top_incidents.txt``)."""


@dataclass
class DemoResult:
    run_dir: Path
    metrics: dict[str, Any]
    stream: dict[str, Any]
    top_alerts: str = ""
    """The highest-ranked flagged records with their reasons."""
    top_incidents: str = ""
    """The most severe incidents in words (the analyst's first look), with incidents on."""


def run_demo(config: DemoConfig, progress: bool = True) -> DemoResult:
    run_dir = new_run_dir(config.training.runs_dir, config.name)
    dump_config(config, run_dir / "config.yaml")
    spec = load_spec(config.training.data.spec)
    train_normalized: np.ndarray | None = None
    if config.use_committed_models:
        repository = config.committed_repository
    else:
        trained = train_centralized(config.training, run_dir / "train", progress=progress)
        repository, train_normalized = trained.repository, trained.train_normalized

    events = write_events(generate(config.stream), run_dir / "events.jsonl")
    featurizer = Featurizer(spec)
    engine = InProcessEngine(repository, spec.spec_hash)
    baselines = _baselines(config, featurizer, engine)
    tracker = (
        IncidentTracker(config.incidents)
        if config.incidents is not None and config.incidents.enabled
        else None
    )
    pipeline = ScoringPipeline(
        featurizer,
        engine,
        baselines=baselines,
        leakage=leakage_detector(config.leakage),
        incidents=tracker,
    )
    kept: list[BatchResult] = []
    with (
        JsonlSink(run_dir / "scores.jsonl") as scores,
        JsonlSink(run_dir / "rejects.jsonl") as rejects,
        JsonlSink(run_dir / "incidents.jsonl") as incident_log,
    ):
        emitted: list[dict[str, Any]] = []

        def keep(result: BatchResult) -> None:
            kept.append(result)
            incident_log.write(result.incidents)  # each revision as it happens (key: id)
            emitted.extend(result.incidents)

        stats = run_batches(
            pipeline,
            jsonl_file_source(events, config.batch_size),
            scores.write,
            rejects.write,
            on_result=keep,
            total=config.stream.n_events,
            progress=progress,
        )
        if tracker is not None:
            closed = tracker.close_all()  # the stream ended: every incident closes
            incident_log.write(closed)
            emitted.extend(closed)
    write_json(run_dir / "stream.json", stats.as_dict())

    done = [r for r in kept if r.featurized is not None and r.outputs]
    frame = pd.concat(
        [r.featurized.frame for r in done if r.featurized is not None], ignore_index=True
    )
    outputs = {k: np.concatenate([r.outputs[k] for r in done]) for k in done[0].outputs}
    tensors = [np.asarray(r.featurized.tensor) for r in done if r.featurized is not None]
    labels = featurizer.labels(frame)
    kinds = frame["anomaly_kind"].astype(str).to_numpy() if "anomaly_kind" in frame else None
    scored = ScoredFrame(
        frame,
        labels,
        kinds,
        outputs,
        engine.normalize(np.concatenate(tensors)),
        stats.rejected,
        stats.seconds,
    )
    incidents = list(latest_revisions(emitted).values()) if tracker is not None else None
    metrics = evaluate(
        scored,
        run_dir,
        "SecureAI demo: synthetic auth + netflow stream",
        train_normalized,
        baselines=config.training.evaluation.baselines,
        seed=config.training.seed,
        extra={
            "run_dir": str(run_dir),
            "model_repository": str(repository),
            "feature_spec": f"{spec.name}:{spec.version} ({spec.spec_hash})",
            "stream": stats.as_dict(),
        },
        progress=progress,
        records=[r for result in done for r in result.records],
        incidents=incidents,
    )
    metrics["events_per_s"] = stats.events_per_s  # end-to-end: decode+featurize+infer+records
    if baselines is not None and labels is not None:
        metrics["fingerprint"] = _fingerprint_metrics(baselines, done, labels, kinds)
        baselines.checkpoint(run_dir / "baselines.npz", {f"{events}:0": stats.events_in})
    top_incidents = ""
    if tracker is not None and incidents is not None:
        ids = frame[spec.event_id].tolist() if spec.event_id in frame else []
        metrics["incidents"] = incident_metrics(incidents, ids, kinds, tracker.incident_of)
        top_incidents = render_incidents(incidents, TOP_INCIDENTS)
        (run_dir / "top_incidents.txt").write_text(top_incidents + "\n")
    write_json(run_dir / "metrics.json", metrics)
    top = TopAlerts(TOP_ALERTS, anomalies_only=True)
    for result in done:
        top.extend(result.records)
    (run_dir / "top_alerts.txt").write_text(top.render() + "\n")
    return DemoResult(run_dir, metrics, stats.as_dict(), top.render(), top_incidents)


def _baselines(
    config: DemoConfig, featurizer: Featurizer, engine: InProcessEngine
) -> EntityBaselines | None:
    """Per-entity baselines when ``fingerprint.enabled``, first fed the training events.

    A deployed pipeline would have learned them from the stream over the weeks the model was
    trained on; replaying that history here gives entities their ``min_events`` of history.
    """
    fp: FingerprintConfig | None = config.fingerprint
    if fp is None or not fp.enabled:
        return None
    baselines = EntityBaselines(featurizer.spec, fp)
    source = config.training.train_source.synthetic
    if source is not None:
        history = generate(source)
        for lo in range(0, len(history), config.batch_size):
            batch = featurizer.transform(history.iloc[lo : lo + config.batch_size])
            if len(batch):
                baselines.observe(batch, engine.infer(batch.tensor), explain=False)
    log.info("baselines: %d entities after the training history", len(baselines))
    return baselines


def _fingerprint_metrics(
    baselines: EntityBaselines,
    done: list[BatchResult],
    labels: np.ndarray,
    kinds: np.ndarray | None,
) -> dict[str, Any]:
    """The stream's metrics when ranked by ``combined_score`` instead of ``anomaly_score``."""
    records = [r for result in done for r in result.records]
    combined = np.array([r["combined_score"] for r in records], dtype=np.float64)
    entity = np.array([r["baseline"] == "entity" for r in records])
    threshold = baselines.threshold
    metrics = compute_metrics(labels, combined, kinds)
    return {
        "auroc": metrics["auroc"],
        "auprc": metrics["auprc"],
        "tpr_at_fpr": metrics["tpr_at_fpr"],
        "entity_baseline_share": float(entity.mean()),
        "entities": len(baselines),
        "state_mib": round(baselines.nbytes / 2**20, 1),
        "combined_threshold": threshold if np.isfinite(threshold) else None,
        "combined_anomaly_rate": float(np.mean([r["combined_anomaly"] for r in records])),
    }
