"""``secureai fl compare``: several runs on the same data split, one table, one plot.

A compare config holds one base federated config and a list of experiments, each either the
centralized baseline (``modelling.centralized.train_centralized`` on the same training rows) or a
federated run of the base config with ``overrides`` (DP off, another epsilon, another strategy,
malicious sites...). Every experiment is scored on the same test data through the served path
(ONNX, in-process engine), so the numbers are comparable line by line.

Outputs: ``results.json``, ``results.md`` and a figure in the compare run directory; the same
table and figure in a marker-delimited section of ``docs/results.md`` (other sections are left
alone) with the acceptance checks (``criteria``) evaluated.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from pydantic import Field

from federated.audit import AuditConfig, audit_run
from federated.config import FLConfig, merge_overrides
from federated.runs import evaluate_on_test
from federated.simulation import simulate
from modelling.centralized import train_centralized
from modelling.config import CentralizedConfig, EvaluationConfig, TrainConfig
from modelling.rundir import environment, new_run_dir, write_json
from morpheus_ext.config_io import StrictModel, dump_config
from morpheus_ext.markdown_sections import cpu_model, update_section


class ExperimentConfig(StrictModel):
    name: str
    kind: Literal["centralized", "federated"] = "federated"
    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Deep-merged into the base federated config (``federated``) for this experiment."""


class Criterion(StrictModel):
    """An acceptance check: ``experiment``'s AUROC may trail ``reference``'s by at most this."""

    experiment: str
    reference: str
    max_auroc_drop: float


class ReportConfig(StrictModel):
    kind: Literal["privacy_utility", "robustness"] = "privacy_utility"
    title: str
    section: str
    """Marker name of the section in ``results_md`` (``<!-- fl_compare:NAME:begin -->``)."""
    description: str = ""
    reference: str
    """Experiment the ``ΔAUROC`` column is computed against."""
    results_md: Path | None = Path("docs/results.md")
    figures_dir: Path = Path("docs/figures")
    command: str = ""


class CompareConfig(StrictModel):
    name: str = "compare"
    federated: FLConfig
    centralized_train: TrainConfig = Field(default_factory=TrainConfig)
    experiments: list[ExperimentConfig]
    criteria: list[Criterion] = Field(default_factory=list)
    report: ReportConfig
    audit: AuditConfig | None = None
    """A membership-inference audit of every federated experiment (docs/privacy_audit.md):
    its AUC and empirical epsilon land in the table and figure beside the accountant's
    epsilon. None: no audit."""
    runs_dir: Path = Path("runs")


@dataclass
class CompareResult:
    run_dir: Path
    rows: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    figure: Path


def experiment_config(base: FLConfig, exp: ExperimentConfig, runs_dir: Path) -> FLConfig:
    doc = merge_overrides(base.model_dump(mode="json"), exp.overrides)
    doc.update(name=exp.name, runs_dir=str(runs_dir))
    return FLConfig.model_validate(doc)


def _centralized(config: CompareConfig, out: Path, exp: ExperimentConfig) -> dict[str, Any]:
    fl = config.federated
    cfg = CentralizedConfig(
        name=exp.name,
        seed=fl.seed,
        data=fl.data,
        model=fl.model,
        train=config.centralized_train,
        calibration=fl.calibration,
        evaluation=EvaluationConfig(baselines=False),
        runs_dir=out,
    )
    started = time.monotonic()
    result = train_centralized(cfg, out / exp.name)
    metrics = evaluate_on_test(fl.data, result.run_dir, f"{exp.name}: test set", fl.seed)
    return {
        "kind": "centralized",
        "strategy": "-",
        "dp": "off",
        "epsilon_spent": None,
        "attack": "none",
        "rounds": None,
        "metrics": metrics,
        "wall_s": time.monotonic() - started,
        "run_dir": str(result.run_dir),
    }


def _federated(config: CompareConfig, out: Path, exp: ExperimentConfig) -> dict[str, Any]:
    cfg = experiment_config(config.federated, exp, out)
    result = simulate(cfg, out / exp.name)
    dp = result.result.get("dp")
    a = cfg.attack
    attack = f"{a.kind} x{a.scale:g}, sites {a.malicious_sites}" if a.malicious_sites else "none"
    return {
        "kind": "federated",
        "strategy": cfg.strategy.name,
        "dp": f"ε={cfg.privacy.target_epsilon:g}" if cfg.privacy.enabled else "off",
        "target_epsilon": cfg.privacy.target_epsilon if cfg.privacy.enabled else None,
        "epsilon_spent": dp["epsilon_max"] if dp else None,
        "attack": attack,
        "rounds": cfg.federation.rounds,
        "metrics": result.test_metrics,
        "wall_s": result.wall_s,
        "mean_round_s": (result.result.get("summary") or {}).get("mean_round_seconds"),
        "run_dir": str(result.run_dir),
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def audit_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The audit numbers a table row carries: the strongest attack's AUC (LiRA when it ran),
    its TPR at 1% FPR, and the empirical epsilon (the larger of both attacks' bounds)."""
    attacks = doc["attacks"]
    best = attacks.get("lira") or attacks["loss"]
    return {
        "attack": "lira" if "lira" in attacks else "loss",
        "auc": best["auc"],
        "loss_auc": attacks["loss"]["auc"],
        "tpr_at_1pct_fpr": best["tpr_at_fpr"]["0.01"],
        "empirical_epsilon": doc["empirical_epsilon"],
        "confidence": doc["confidence"],
        "members": doc["rows"]["members"],
        "seconds": doc["seconds"],
    }


def table_markdown(rows: list[dict[str, Any]], reference: str, audit: bool = False) -> str:
    """One line per experiment; with ``audit``, two more columns: the membership-inference
    AUC and the epsilon the attacks prove (a lower bound, beside the accountant's)."""
    extra_head = " | MIA AUC | ε proved (95%)" if audit else ""
    head = (
        "| experiment | strategy | DP | ε spent (max site) | attack | AUROC | AUPRC | best F1 "
        f"| TPR@1%FPR | ΔAUROC vs {reference}{extra_head} | wall s |\n"
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|"
        + ("---:|---:|" if audit else "")
        + "---:|\n"
    )
    lines = []
    for r in rows:
        m = r["metrics"] or {}
        a = r.get("audit") or {}
        extra = (
            f" | {_fmt(a.get('auc'), 3)} | {_fmt(a.get('empirical_epsilon'), 2)}" if audit else ""
        )
        lines.append(
            f"| {r['label']} | {r['strategy']} | {r['dp']} | {_fmt(r['epsilon_spent'], 3)} "
            f"| {r['attack']} | {_fmt(m.get('auroc'))} | {_fmt(m.get('auprc'))} "
            f"| {_fmt(m.get('best_f1'))} | {_fmt((m.get('tpr_at_fpr') or {}).get('0.01'))} "
            f"| {_fmt(r.get('delta_auroc'), 4)}{extra} | {r['wall_s']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def _metric(row: dict[str, Any], metric: str) -> float | None:
    if metric == "mia_auc":
        return (row.get("audit") or {}).get("auc")
    return float(row["metrics"][metric])


def _privacy_utility_figure(rows: list[dict[str, Any]], path: Path) -> None:
    audited = any(r.get("audit") for r in rows)
    metrics = ("auroc", "auprc", "mia_auc") if audited else ("auroc", "auprc")
    fig = Figure(figsize=(5 * len(metrics), 4))
    FigureCanvasAgg(fig)
    dp_rows = sorted(
        (r for r in rows if r.get("target_epsilon") is not None and r["attack"] == "none"),
        key=lambda r: r["target_epsilon"],
    )
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        points = [
            (r["target_epsilon"], v) for r in dp_rows if (v := _metric(r, metric)) is not None
        ]
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        ax.plot(xs, ys, "o-", color="#2f6fde", label="FL + DP-SGD")
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
        styles = {"centralized": ("#222222", "--"), "federated": ("#d9822b", ":")}
        for r in rows:
            value = _metric(r, metric)
            if r.get("target_epsilon") is None and r["attack"] == "none" and value is not None:
                color, style = styles[r["kind"]]
                ax.axhline(value, color=color, ls=style, label=r["label"])
        if metric == "mia_auc":
            ax.axhline(0.5, color="#999999", lw=0.8, label="coin flip")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs or [1])
        ax.set_xticklabels([f"{x:g}" for x in xs] or ["1"])
        ax.set_xlabel("target ε per site (δ = 1e-5)")
        name = "membership-inference AUC" if metric == "mia_auc" else metric.upper()
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs ε")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _robustness_figure(rows: list[dict[str, Any]], path: Path) -> None:
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels = [r["label"] for r in rows]
    values = [(r["metrics"] or {}).get("auroc", 0.0) for r in rows]
    colors = ["#2f6fde" if r["attack"] == "none" else "#c23030" for r in rows]
    ax.barh(range(len(rows)), values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(min(0.4, min(values, default=0.4)), 1.02)
    ax.set_xlabel("AUROC (blue: clean, red: one malicious site of five)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def evaluate_criteria(
    rows: list[dict[str, Any]], criteria: list[Criterion]
) -> list[dict[str, Any]]:
    by_name = {r["experiment"]: r for r in rows}
    checks = []
    for c in criteria:
        got, ref = by_name[c.experiment]["metrics"], by_name[c.reference]["metrics"]
        drop = ref["auroc"] - got["auroc"]
        checks.append(
            {
                "experiment": c.experiment,
                "reference": c.reference,
                "auroc_drop": drop,
                "max_auroc_drop": c.max_auroc_drop,
                "passed": bool(drop <= c.max_auroc_drop),
            }
        )
    return checks


def _machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical cores"


def compare(config: CompareConfig, run_dir: Path | None = None) -> CompareResult:
    out = (run_dir or new_run_dir(config.runs_dir, config.name)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    rows: list[dict[str, Any]] = []
    for exp in config.experiments:
        if exp.kind == "centralized":
            row = _centralized(config, out, exp)
        else:
            row = _federated(config, out, exp)
            if config.audit is not None:
                row["audit"] = audit_summary(audit_run(Path(row["run_dir"]), config.audit))
        row.update(experiment=exp.name, label=exp.label or exp.name)
        rows.append(row)
        write_json(out / "results.json", {"rows": rows})  # progress survives a crash
    ref = next(r for r in rows if r["experiment"] == config.report.reference)
    for r in rows:
        if r["metrics"] and ref["metrics"]:
            r["delta_auroc"] = r["metrics"]["auroc"] - ref["metrics"]["auroc"]
    checks = evaluate_criteria(rows, config.criteria)
    figure = out / f"fl_{config.report.section}.png"
    if config.report.kind == "privacy_utility":
        _privacy_utility_figure(rows, figure)
    else:
        _robustness_figure(rows, figure)
    ref_label = ref["label"]
    table = table_markdown(rows, ref_label, audit=config.audit is not None)
    check_lines = "".join(
        f"- {c['experiment']} vs {c['reference']}: AUROC drop {c['auroc_drop']:+.4f} "
        f"(allowed {c['max_auroc_drop']}) — {'PASS' if c['passed'] else 'FAIL'}\n"
        for c in checks
    )
    write_json(
        out / "results.json",
        {"rows": rows, "checks": checks, "environment": environment(), "machine": _machine()},
    )
    (out / "results.md").write_text(table + ("\n" + check_lines if check_lines else ""))
    if config.report.results_md is not None:
        config.report.figures_dir.mkdir(parents=True, exist_ok=True)
        doc_figure = config.report.figures_dir / figure.name
        shutil.copyfile(figure, doc_figure)
        rel = os.path.relpath(doc_figure, config.report.results_md.parent)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        cwd = Path.cwd()
        where = out.relative_to(cwd) if out.is_relative_to(cwd) else out
        intro = (f"`{config.report.command}` — " if config.report.command else "") + (
            config.report.description.strip()
        )
        parts = [
            f"## {config.report.title}\n",
            intro + "\n",
            f"Measured {stamp} on {_machine()}, shared with other jobs (wall times are "
            f"indicative). Run directory: `{where}`.\n",
            table,
            f"![{config.report.title}]({rel})\n",
        ]
        if check_lines:
            parts.append("Checks:\n\n" + check_lines)
        update_section(config.report.results_md, f"fl_compare:{config.report.section}", parts)
    return CompareResult(out, rows, checks, figure)
