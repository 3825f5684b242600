"""``secureai demo``: the whole spine on the embedded default, no Kafka, no Triton server.

Synthetic auth + netflow events -> train (or take the committed version 1) -> stream a fresh
day of events through the in-process pipeline (progress bar, live events/s) -> score records,
dead letters, metrics and an HTML report in one run directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.featurizer import Featurizer
from morpheus_ext.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input import jsonl_file_source
from morpheus_ext.stages.output import JsonlSink
from morpheus_ext.synthetic import generate, write_events
from pipelines.config import DemoConfig, dump_config
from pipelines.evaluate import ScoredFrame, evaluate
from pipelines.rundir import new_run_dir, write_json
from pipelines.runner import BatchResult, ScoringPipeline, run_batches
from pipelines.train import train_centralized

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    run_dir: Path
    metrics: dict[str, Any]
    stream: dict[str, Any]


def run_demo(config: DemoConfig, progress: bool = True) -> DemoResult:
    run_dir = new_run_dir(config.training.runs_dir, config.name)
    dump_config(config, run_dir / "config.yaml")
    spec = load_spec(config.training.data.spec)
    train_normalized: np.ndarray | None = None
    if config.use_committed_models:
        repository = config.committed_repository
    else:
        trained = train_centralized(config.training, run_dir / "train")
        repository, train_normalized = trained.repository, trained.train_normalized

    events = write_events(generate(config.stream), run_dir / "events.jsonl")
    featurizer = Featurizer(spec)
    engine = InProcessEngine(repository, spec.spec_hash)
    pipeline = ScoringPipeline(featurizer, engine)
    kept: list[BatchResult] = []
    with (
        JsonlSink(run_dir / "scores.jsonl") as scores,
        JsonlSink(run_dir / "rejects.jsonl") as rejects,
    ):
        stats = run_batches(
            pipeline,
            jsonl_file_source(events, config.batch_size),
            scores.write,
            rejects.write,
            on_result=kept.append,
            total=config.stream.n_events,
            progress=progress,
        )
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
    )
    metrics["events_per_s"] = stats.events_per_s  # end-to-end: decode+featurize+infer+records
    write_json(run_dir / "metrics.json", metrics)
    return DemoResult(run_dir, metrics, stats.as_dict())
