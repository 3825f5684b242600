"""SecureAI beside its peers on the same events: events/s and AUROC in one table.

    python benchmarks/bench_peers.py --out docs/benchmarks.md

One protocol for every detector (issue #20's side-by-side):

* **data**: the events of ``configs/centralized.yml`` — its training events (the rows labelled
  normal: the labels only pick clean rows) and its 40k test events with 2% injected attacks,
  the test events as JSON lines, the way they arrive on Kafka;
* **SecureAI**: the committed model (``triton_model_repository``, what ``make models`` trains
  on exactly those training events), in-process engine; events/s is the product path, raw JSON
  bytes -> decode -> featurize -> ONNX ensemble -> score records as the JSON lines the sinks
  write;
* **peers**: scikit-learn ``IsolationForest`` (200 trees) and River ``HalfSpaceTrees`` (the
  project's own :mod:`modelling.evaluation.baselines`), fitted here on our featurizer's
  EVENT_TENSOR of the training rows — the best features we have, so the comparison is of
  detectors, not of feature engineering. Their events/s is raw JSON -> decode -> featurize ->
  score (no records: that favours them slightly), from the measured featurize rate and their
  own scoring rate: ``1 / (1/featurize + 1/score)``. River scores one event at a time, so it
  is measured on a stratified sample of at most 20k test events (AUROC on that sample);
* one process, one thread each (``OMP_NUM_THREADS=1``), batch 4096, median of ``--repeats``.

AUROC/AUPRC are scikit-learn's on the test labels. The SecureAI row is the autoencoder alone
(no per-entity baselines), which is what the peers are comparable with.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from report import git_commit, machine_info, update_section
from sklearn.metrics import average_precision_score, roc_auc_score

from modelling.centralized import load_source
from modelling.config import CentralizedConfig
from modelling.evaluation.baselines import (
    BaselineResult,
    half_space_trees,
    isolation_forest,
)
from morpheus_ext.config_io import load_config
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import RawBatch, frame_source
from morpheus_ext.stages.postprocess.records import build_score_records
from morpheus_ext.stages.preprocess.decode import decode_batch
from morpheus_ext.stages.preprocess.featurizer import Featurizer

ROOT = Path(__file__).resolve().parent.parent
SECTION = "bench_peers"


def median_rate(fn: Callable[[], int], repeats: int) -> float:
    """Events/s of ``fn`` (which returns how many events it handled), median after a warm-up."""
    fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def end_to_end(featurize_rate: float, score_rate: float) -> float:
    """Events/s of featurize then score, one after the other on one core.

    >>> round(end_to_end(100.0, 100.0), 1)
    50.0
    """
    return 1.0 / (1.0 / featurize_rate + 1.0 / score_rate)


def peer_row(result: BaselineResult, featurize_rate: float) -> dict[str, Any]:
    return {
        "detector": {
            "isolation_forest": "scikit-learn IsolationForest (200 trees)",
            "half_space_trees": "River HalfSpaceTrees",
        }.get(result.name, result.name),
        "auroc": result.auroc,
        "auprc": result.auprc,
        "scored": result.n_scored,
        "score_events_per_s": result.events_per_s,
        "events_per_s": end_to_end(featurize_rate, result.events_per_s),
        "fit_s": result.fit_seconds,
    }


def run(config_path: Path, repository: Path, batch: int, repeats: int, limit: int | None) -> dict:
    """Every row of the table, plus what the numbers were measured on."""
    config = load_config(config_path, CentralizedConfig)
    assert config.data.test is not None, "the config needs a test set"
    spec = load_spec(config.data.spec)
    featurizer = Featurizer(spec)
    # As ScoringPipeline decodes: the timestamp stays text (Arrow would infer a timestamp
    # column and send every batch down the slower per-value path).
    text = (spec.timestamp,) if spec.timestamp else ()
    engine = InProcessEngine(str(repository), spec.spec_hash)

    train_frame, _ = load_source(config.data.train, spec)
    test_frame, _ = load_source(config.data.test, spec)
    if limit is not None:
        train_frame, test_frame = train_frame.iloc[:limit], test_frame.iloc[:limit]
    train = featurizer.transform(train_frame)
    train_labels = featurizer.labels(train.frame)
    x_train = np.asarray(train.tensor)
    if train_labels is not None and config.data.fit_on == "normal":
        x_train = x_train[train_labels == 0]
    test = featurizer.transform(test_frame)
    y_test = featurizer.labels(test.frame)
    assert y_test is not None, "the test events need labels"
    x_test = np.asarray(test.tensor)
    raws: list[RawBatch] = list(frame_source(test_frame, batch))

    def featurize() -> int:
        return sum(
            len(featurizer.transform(decode_batch(r, string_columns=text).frame)) for r in raws
        )

    def secureai() -> int:
        n = 0
        for raw in raws:
            fb = featurizer.transform(decode_batch(raw, string_columns=text).frame)
            records = build_score_records(fb, engine.infer(fb.tensor), featurizer, engine.info)
            n += len(records.json_lines())  # what the sinks write
        return n

    print(f"{len(x_train):,} training rows, {len(x_test):,} test events; measuring", flush=True)
    featurize_rate = median_rate(featurize, repeats)
    ours_rate = median_rate(secureai, repeats)
    scores = np.concatenate(
        [np.asarray(engine.infer(x_test[i : i + batch])["ANOMALY_SCORE"]).ravel()
         for i in range(0, len(x_test), batch)]
    )  # fmt: skip
    rows = [
        {
            "detector": "SecureAI (autoencoder, in-process ONNX Runtime)",
            "auroc": float(roc_auc_score(y_test, scores)),
            "auprc": float(average_precision_score(y_test, scores)),
            "scored": len(scores),
            "score_events_per_s": None,
            "events_per_s": ours_rate,
            "fit_s": None,
        }
    ]
    print(f"SecureAI: {ours_rate:,.0f} events/s, AUROC {rows[0]['auroc']:.4f}", flush=True)
    forest = isolation_forest(x_train, x_test, y_test)
    rows.append(peer_row(forest, featurize_rate))
    print(f"IsolationForest: AUROC {forest.auroc:.4f}", flush=True)
    hst = half_space_trees(x_train, x_test, y_test)
    if hst is not None:
        rows.append(peer_row(hst, featurize_rate))
        print(f"HalfSpaceTrees: AUROC {hst.auroc:.4f}", flush=True)
    river = next((r for r in rows if r["detector"].startswith("River")), None)
    for r in rows:
        r["x_river"] = None if river is None else r["events_per_s"] / river["events_per_s"]
    return {
        "rows": rows,
        "featurize_events_per_s": featurize_rate,
        "train_rows": len(x_train),
        "test_events": len(x_test),
        "attack_rate": float(np.mean(y_test)),
        "batch": batch,
        "repeats": repeats,
    }


def markdown(result: dict, command: str) -> list[str]:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return [
        "## SecureAI beside its peers (same events, one core each)",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- Data: configs/centralized.yml — {result['train_rows']:,} normal training rows, "
        f"{result['test_events']:,} test events ({result['attack_rate']:.1%} attacks) as JSON "
        f"lines; batch {result['batch']}; median of {result['repeats']} runs. events/s: raw "
        "JSON -> score (SecureAI: score records; peers: decode + our featurizer at "
        f"{result['featurize_events_per_s']:,.0f} events/s, then their scoring). Protocol: "
        "benchmarks/bench_peers.py docstring.",
        "",
        "| detector | AUROC | AUPRC | events scored | events/s, raw JSON -> score "
        "| scoring alone, events/s | x River |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['detector']} | {r['auroc']:.4f} | {r['auprc']:.4f} | {r['scored']:,} "
            f"| {r['events_per_s']:,.0f} | {num(r['score_events_per_s'], ',.0f')} "
            f"| {num(r['x_river'], '.1f')} |"
            for r in result["rows"]
        ],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "centralized.yml"))
    parser.add_argument("--repository", default=str(ROOT / "triton_model_repository"))
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, help="at most this many train and test events")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    result = run(Path(args.config), Path(args.repository), args.batch, args.repeats, args.limit)
    command = "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:])
    lines = markdown(result, command)
    print("\n".join(lines[-(len(result["rows"]) + 2) :]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.out:
        update_section(Path(args.out), SECTION, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
