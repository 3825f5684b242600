"""Does fingerprinting help? AUROC with and without per-entity baselines, and reason accuracy.

    python -m pipelines.fingerprint_eval [--out docs/results.md]

Protocol (docs/results.md, "Digital fingerprinting"): the committed model (trained on normal
events of week 1 of the synthetic organisation, ``configs/centralized.yml``) scores

1. a *history* stream — that same week 1, population anomalies included — from which the
   baselines learn (they skip what the model flags, ``update_from: normal``), then
2. a *test* stream three days later, same organisation (``population_seed``), once with
   entity-relative anomalies (common in the population, new for the user/host) and once with
   the default population anomalies. Baselines keep learning during the test stream.

"Without" ranks test events by ``anomaly_score``, "with" by ``combined_score``, from the same
run. The top reason of an anomaly is correct when it names the field its kind injects.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.metrics import average_precision_score, roc_auc_score

from morpheus_ext.config_io import StrictModel
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
from morpheus_ext.stages.postprocess.records import build_records
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

MARK_BEGIN = "<!-- eval_fingerprint:begin -->"
MARK_END = "<!-- eval_fingerprint:end -->"

INJECTED_FIELD: dict[str, str] = {
    "impossible_travel": "country",
    "new_device": "device",
    "unusual_hour": "hour",
    "exfiltration": "bytes_out",
    "port_scan": "dst_port",
    "brute_force": "result",
}
"""The field each entity-relative anomaly kind makes new for its entity (synthetic)."""


def _history() -> SyntheticConfig:
    return SyntheticConfig(n_events=60_000, seed=0, n_sites=3, heterogeneity=0.5, days=7)


def _test() -> SyntheticConfig:
    return SyntheticConfig(
        n_events=40_000,
        seed=1,
        population_seed=0,
        n_sites=3,
        heterogeneity=0.5,
        days=3,
        start="2026-11-08T00:00:00Z",
    )


class FingerprintEvalConfig(StrictModel):
    """What :func:`run_eval` streams; the defaults are the published protocol."""

    repository: Path = DEFAULT_REPOSITORY
    spec: str = "security_events"
    history: SyntheticConfig = Field(default_factory=_history)
    test: SyntheticConfig = Field(default_factory=_test)
    batch_size: int = Field(4096, ge=1)
    fingerprint: FingerprintConfig = Field(
        default_factory=lambda: FingerprintConfig(enabled=True, explain="all")
    )
    """``explain: all``: reasons are ranked for every event, so their quality is measured on
    every injected anomaly (``alerts`` ranks the flagged ones the same way)."""


def _stream(
    baselines: EntityBaselines,
    featurizer: Featurizer,
    engine: InProcessEngine,
    frame: pd.DataFrame,
    batch_size: int,
    records: bool,
) -> dict[str, Any]:
    """Featurize + infer + baselines (+ records) batch by batch; the arrays for the metrics."""
    frames, scores, combined, baseline, alert, top = [], [], [], [], [], []
    for lo in range(0, len(frame), batch_size):
        batch = featurizer.transform(frame.iloc[lo : lo + batch_size])
        if len(batch) == 0:
            continue
        outputs = engine.infer(batch.tensor)
        fp = baselines.observe(batch, outputs)
        if records:
            recs = build_records(batch, outputs, featurizer, engine.info, fingerprint=fp)
            top += [r["reasons"][0]["field"] if r["reasons"] else "" for r in recs]
        frames.append(batch.frame)
        scores.append(outputs["ANOMALY_SCORE"].reshape(-1))
        combined.append(fp.combined)
        baseline.append(fp.entity_baseline)
        alert.append(fp.combined_anomaly)
    return {
        "frame": pd.concat(frames, ignore_index=True),
        "score": np.concatenate(scores),
        "combined": np.concatenate(combined),
        "entity_baseline": np.concatenate(baseline),
        "alert": np.concatenate(alert),
        "top": np.array(top, dtype=object),
    }


def _scenario(
    config: FingerprintEvalConfig,
    entity_relative: bool,
    featurizer: Featurizer,
    engine: InProcessEngine,
) -> dict[str, Any]:
    spec = featurizer.spec
    baselines = EntityBaselines(spec, config.fingerprint)
    start = time.perf_counter()
    _stream(baselines, featurizer, engine, generate(config.history), config.batch_size, False)
    test = generate(config.test.model_copy(update={"entity_relative": entity_relative}))
    out = _stream(baselines, featurizer, engine, test, config.batch_size, True)
    labels = featurizer.labels(out["frame"])
    assert labels is not None
    kinds = out["frame"]["anomaly_kind"].astype(str).to_numpy()
    per_kind: dict[str, dict[str, Any]] = {}
    hits = total = hits_entity = total_entity = hits_alert = total_alert = 0
    for kind in sorted(set(kinds) - {"none"}):
        pick = (kinds == kind) | (kinds == "none")
        y, m = labels[pick], kinds == kind
        expected = INJECTED_FIELD.get(kind)
        right = out["top"][m] == expected
        ent = out["entity_baseline"][m]
        said = ent & out["alert"][m]  # what `explain: alerts` puts in words
        per_kind[kind] = {
            "events": int(m.sum()),
            "auroc_without": float(roc_auc_score(y, out["score"][pick])),
            "auroc_with": float(roc_auc_score(y, out["combined"][pick])),
            "entity_baseline_share": float(ent.mean()),
            "top_reason_field": expected,
            "top_reason_correct": float(right.mean()),
            "top_reason_correct_entity_baseline": float(right[ent].mean()) if ent.any() else None,
            "alerted_share": float(out["alert"][m].mean()),
        }
        hits, total = hits + int(right.sum()), total + int(m.sum())
        hits_entity, total_entity = (
            hits_entity + int(right[ent].sum()),
            total_entity + int(ent.sum()),
        )
        hits_alert, total_alert = hits_alert + int(right[said].sum()), total_alert + int(said.sum())
    return {
        "events": len(labels),
        "anomalies": int(labels.sum()),
        "entity_baseline_share": float(out["entity_baseline"].mean()),
        "auroc_without": float(roc_auc_score(labels, out["score"])),
        "auroc_with": float(roc_auc_score(labels, out["combined"])),
        "auprc_without": float(average_precision_score(labels, out["score"])),
        "auprc_with": float(average_precision_score(labels, out["combined"])),
        "top_reason_correct": hits / total if total else None,
        "top_reason_correct_entity_baseline": (
            hits_entity / total_entity if total_entity else None
        ),
        "top_reason_correct_alerted": hits_alert / total_alert if total_alert else None,
        "alerted_share": float(out["alert"][kinds != "none"].mean()),
        "entities": len(baselines),
        "baseline_bytes": baselines.nbytes,
        "seconds": time.perf_counter() - start,
        "per_kind": per_kind,
    }


def run_eval(config: FingerprintEvalConfig | None = None) -> dict[str, Any]:
    """Both scenarios; plain Python numbers (JSON-ready)."""
    config = config or FingerprintEvalConfig()
    spec = load_spec(config.spec)
    featurizer = Featurizer(spec)
    engine = InProcessEngine(config.repository, spec.spec_hash)
    return {
        "entity_relative": _scenario(config, True, featurizer, engine),
        "population": _scenario(config, False, featurizer, engine),
        "fingerprint": config.fingerprint.model_dump(mode="json"),
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "min_events 20": {"min_events": 20},
    "bursts: all": {"bursts": "all"},
    "bursts: off": {"bursts": "off"},
    "combine: top2": {"combine": "top2"},
}
"""Other settings measured for docs/results.md (each changes one knob of the default)."""


def run_variants(config: FingerprintEvalConfig | None = None) -> dict[str, dict[str, Any]]:
    config = config or FingerprintEvalConfig()
    out = {}
    for name, change in VARIANTS.items():
        varied = config.model_copy(
            update={"fingerprint": config.fingerprint.model_copy(update=change)}
        )
        out[name] = run_eval(varied)
    return out


def markdown(
    result: dict[str, Any], command: str, variants: dict[str, dict[str, Any]] | None = None
) -> str:
    """The results.md section (between markers, so re-running replaces it)."""
    er, pop = result["entity_relative"], result["population"]
    lines = [
        MARK_BEGIN,
        "## Digital fingerprinting",
        "",
        f"`{command}` — the committed model; baselines learn from the 60k-event week 1 "
        "(the training week, its 2% population anomalies skipped when the model flags them), "
        "then score the 40k-event test stream three days later (same organisation, seed 1), "
        "learning as they go. Default `FingerprintConfig` (min_events 50, combine max, "
        "weight 1). Without = `anomaly_score`, with = `combined_score`, same run.",
        "",
        "| test stream | AUROC without | AUROC with | AUPRC without | AUPRC with "
        "| events with an entity baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("entity-relative anomalies", er), ("population anomalies (default)", pop)):
        lines.append(
            f"| {name} | {r['auroc_without']:.4f} | **{r['auroc_with']:.4f}** "
            f"| {r['auprc_without']:.4f} | {r['auprc_with']:.4f} "
            f"| {r['entity_baseline_share']:.0%} |"
        )
    lines += [
        "",
        "Entity-relative stream, per kind (AUROC of that kind against all normal events; top "
        "reason = the record's first reason names the injected field):",
        "",
        "| kind | events | AUROC without | AUROC with | entity baseline | top reason "
        "| top reason (entity baseline) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, k in er["per_kind"].items():
        ent = k["top_reason_correct_entity_baseline"]
        lines.append(
            f"| {kind} (`{k['top_reason_field']}`) | {k['events']} | {k['auroc_without']:.3f} "
            f"| {k['auroc_with']:.3f} | {k['entity_baseline_share']:.0%} "
            f"| {k['top_reason_correct']:.0%} | {'-' if ent is None else f'{ent:.0%}'} |"
        )
    lines += [
        "",
        f"Top reason names the injected field for {er['top_reason_correct_entity_baseline']:.1%} "
        "of the entity-relative anomalies scored against an entity baseline "
        f"({er['top_reason_correct']:.1%} of all of them: the rest, from entities with fewer "
        "than 50 events, get the model's population reasons). Brute force injects no new "
        "value, only a burst of failures at the attacker's hour: its top reason is mostly "
        "`hour` (new for the user too); `bursts: all` makes it `result` (below).",
        "",
        "Reasons in words go to the flagged records by default (`explain: alerts`): "
        f"{er['alerted_share']:.1%} of the entity-relative anomalies are flagged (model or "
        "`combined_anomaly`); among those with an entity baseline the top reason names the "
        f"injected field for {_pct(er['top_reason_correct_alerted'])}. This run ranks reasons "
        "for every event (`explain: all`) so that the figures above cover all of them.",
    ]
    if variants:
        lines += [
            "",
            "One knob changed at a time (same protocol):",
            "",
            "| setting | AUROC with, entity-relative | AUPRC with, entity-relative "
            "| AUROC with, population | AUPRC with, population | top reason (entity baseline) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| default | {er['auroc_with']:.4f} | {er['auprc_with']:.4f} "
            f"| {pop['auroc_with']:.4f} | {pop['auprc_with']:.4f} "
            f"| {er['top_reason_correct_entity_baseline']:.1%} |",
        ]
        for name, v in variants.items():
            e, p = v["entity_relative"], v["population"]
            lines.append(
                f"| {name} | {e['auroc_with']:.4f} | {e['auprc_with']:.4f} | {p['auroc_with']:.4f} "
                f"| {p['auprc_with']:.4f} | {e['top_reason_correct_entity_baseline']:.1%} |"
            )
        lines += [
            "",
            "AUPRC on the population stream drops a little (0.85 -> 0.82 by default): normal "
            "events that are new for their entity (a first visit to an app) now rank above some "
            "low-scoring population anomalies. Most of the remaining entity-relative misses "
            "are events of entities with fewer than `min_events`: with 20, 98% of events get an "
            "entity baseline.",
        ]
    lines.append(MARK_END)
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Results\n"
    if MARK_BEGIN in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="Markdown file to update (section in markers)")
    parser.add_argument("--min-events", type=int, default=None)
    args = parser.parse_args(argv)
    config = FingerprintEvalConfig()
    if args.min_events is not None:
        config.fingerprint = config.fingerprint.model_copy(update={"min_events": args.min_events})
    result = run_eval(config)
    for name in ("entity_relative", "population"):
        r = result[name]
        print(
            f"{name}: AUROC {r['auroc_without']:.4f} -> {r['auroc_with']:.4f}  "
            f"AUPRC {r['auprc_without']:.4f} -> {r['auprc_with']:.4f}  "
            f"top reason {r['top_reason_correct']:.3f} "
            f"(entity baseline {r['top_reason_correct_entity_baseline']:.3f})  "
            f"entity baseline {r['entity_baseline_share']:.2f}  flagged {r['alerted_share']:.2f}"
            f" (top reason {_pct(r['top_reason_correct_alerted'])})  {r['seconds']:.1f}s"
        )
    if args.out:
        command = "python -m pipelines.fingerprint_eval " + " ".join(sys.argv[1:])
        variants = run_variants(config)
        _write_section(args.out, markdown(result, command.strip(), variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
