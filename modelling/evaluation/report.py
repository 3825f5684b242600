"""Self-contained HTML evaluation report with its plots.

One folder per run holds ``report.html`` and the PNGs it shows (referenced by relative
path), so the folder can be zipped, attached to a ticket or served as-is without a
notebook or a server.

Plots are drawn with matplotlib's object API on an explicit Agg canvas rather than
``pyplot``: no display is needed, and the process-wide backend that other code (or a
notebook) may rely on is left alone.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from modelling.evaluation.analyst import COMBINED_NAME, AnalystSection, build_section
from modelling.evaluation.baselines import BaselineResult
from modelling.evaluation.metrics import compute_metrics, curves, validate_inputs

__all__ = ["write_report"]

_DPI = 110
_HIST_BINS = 60
_OURS = "ours"
_MIN_FPR = 1e-4
"""Left end of the ROC's log FPR axis: alerting runs at <= 1% FPR, which a linear axis
squeezes into its first percent; lower rates are drawn at this edge."""

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1f2933; background: #f5f7fa; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; }
.meta { color: #627d98; margin: 0 0 8px; }
.note { color: #627d98; font-size: 13px; margin: 6px 0 0; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { padding: 6px 14px; border-bottom: 1px solid #e4e7eb; text-align: left;
         vertical-align: top; }
th { background: #f0f4f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ours td { font-weight: 600; }
pre { margin: 0; font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace;
      white-space: pre-wrap; word-break: break-word; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; padding: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #627d98; font-size: 13px; padding: 4px 2px 0; }
"""


def write_report(
    out_dir: Path,
    title: str,
    y_true: np.ndarray,
    scores: np.ndarray,
    metrics: dict[str, Any],
    kinds: np.ndarray | None = None,
    baselines: Sequence[BaselineResult] = (),
    extra: dict[str, Any] | None = None,
    *,
    records: Sequence[dict[str, Any]] | None = None,
    incidents: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write the plots and ``report.html`` into ``out_dir``; return the HTML path.

    ``metrics`` is the output of :func:`~modelling.evaluation.metrics.compute_metrics`
    (an ``"events_per_s"`` entry, if the caller adds one, fills our row of the baseline
    table). Baseline curves are overlaid on the ROC/PR plots; ``extra`` holds free-form
    run details (config, model version, ...) shown at the end.

    The analyst section (:mod:`modelling.evaluation.analyst`) comes first: the counts
    explained, and, when given, the top flagged ``records`` (the score records of the same
    events, in the same order) with their reasons in words and the top ``incidents``. With
    per-entity baselines (records with ``combined_score``) the combined score's curves are
    overlaid on the ROC/PR plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, s = validate_inputs(y_true, scores)
    per_kind = _per_kind(y, s, metrics, kinds)
    analyst = build_section(y, s, metrics.get("threshold"), records, incidents, metrics)
    images = _write_plots(out, y, s, metrics, baselines, per_kind, analyst.combined_scores)
    page = _render_page(title, metrics, baselines, per_kind, images, extra or {}, analyst)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- plots


def _per_kind(
    y: np.ndarray, s: np.ndarray, metrics: Mapping[str, Any], kinds: np.ndarray | None
) -> dict[str, dict[str, Any]]:
    """Per-kind recall from ``metrics``, computed here if kinds were given but it is absent."""
    if "per_kind_recall" in metrics:
        return dict(metrics["per_kind_recall"])
    if kinds is None:
        return {}
    computed = compute_metrics(y, s, kinds=kinds, threshold=metrics.get("threshold"))
    return dict(computed["per_kind_recall"])


def _write_plots(
    out: Path,
    y: np.ndarray,
    s: np.ndarray,
    metrics: Mapping[str, Any],
    baselines: Sequence[BaselineResult],
    per_kind: Mapping[str, Mapping[str, Any]],
    combined: np.ndarray | None = None,
) -> list[tuple[str, str]]:
    """Save every plot; return ``(file name, caption)`` pairs in display order."""
    runs = [(_OURS, y, s)]
    if combined is not None:
        runs.append((COMBINED_NAME, y, combined))
    runs += [(b.name, b.labels_for(y), b.scores) for b in baselines]
    images = [
        _save(
            out,
            "roc.png",
            _roc_figure(runs),
            "ROC curve, log false-positive rate (baselines overlaid)",
        ),
        _save(out, "pr.png", _pr_figure(runs, y), "Precision-recall curve"),
        _save(
            out,
            "score_hist.png",
            _hist_figure(y, s, metrics.get("threshold")),
            "Score distribution by label (log count)",
        ),
    ]
    if per_kind:
        images.append(
            _save(out, "per_kind_recall.png", _per_kind_figure(per_kind), "Recall per kind")
        )
    return images


def _save(out: Path, name: str, fig: Figure, caption: str) -> tuple[str, str]:
    """Render ``fig`` to ``out/name`` through an Agg canvas."""
    FigureCanvasAgg(fig)
    fig.savefig(out / name, dpi=_DPI)
    return name, caption


_CURVE_SIZE = (5.6, 5.2)
"""ROC/PR figures: taller than the others, for the legend under the axes."""


def _new_axes(
    figsize: tuple[float, float] = (5.6, 4.6), layout: Literal["tight", "constrained"] = "tight"
) -> tuple[Figure, Axes]:
    """A figure with one axes and a light grid, shared look for every plot."""
    fig = Figure(figsize=figsize, layout=layout)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend_below(fig: Figure, ax: Axes) -> None:
    """The legend under the plot, outside the axes, so it never hides a curve (a PR curve
    runs through every corner a legend could take)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)))


def _roc_figure(runs: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """ROC curves, ours first, with the chance diagonal for reference, on a log FPR axis
    from ``_MIN_FPR`` to 1 so the low false-positive region alerts run in is readable."""
    fig, ax = _new_axes(_CURVE_SIZE, layout="constrained")
    for name, y, s in runs:
        roc = curves(y, s)["roc"]
        fpr = np.clip(np.asarray(roc["fpr"], dtype=np.float64), _MIN_FPR, 1.0)
        ax.plot(fpr, roc["tpr"], label=name, lw=2.2 if name == _OURS else 1.4)
    diagonal = np.geomspace(_MIN_FPR, 1.0, 50)
    ax.plot(diagonal, diagonal, ls="--", color="grey", lw=1, label="chance")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x * 100:g}%"))  # 0.01% .. 100%
    ax.set(
        xlabel="False positive rate (log scale)",
        ylabel="True positive rate",
        xlim=(_MIN_FPR, 1),
        ylim=(0, 1.01),
    )
    _legend_below(fig, ax)
    return fig


def _pr_figure(runs: Iterable[tuple[str, np.ndarray, np.ndarray]], y: np.ndarray) -> Figure:
    """Precision-recall curves, with the anomaly rate (a random detector's precision)."""
    fig, ax = _new_axes(_CURVE_SIZE, layout="constrained")
    for name, yy, s in runs:
        pr = curves(yy, s)["pr"]
        ax.plot(pr["recall"], pr["precision"], label=name, lw=2.2 if name == _OURS else 1.4)
    ax.axhline(float(y.mean()), ls="--", color="grey", lw=1, label="anomaly rate")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    _legend_below(fig, ax)
    return fig


def _hist_figure(y: np.ndarray, s: np.ndarray, threshold: float | None) -> Figure:
    """Overlaid score histograms for normal and anomalous events on shared bins."""
    fig, ax = _new_axes()
    bins, log_x = _hist_bins(s)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"normal (n={int((y == 0).sum()):,})")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"anomaly (n={int(y.sum()):,})")
    if threshold is not None:
        ax.axvline(float(threshold), color="crimson", ls="--", lw=1.5, label="threshold")
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="Anomaly score", ylabel="Events")
    ax.legend()
    return fig


def _hist_bins(s: np.ndarray) -> tuple[list[float], bool]:
    """Shared bin edges; logarithmic when positive scores span over three decades.

    Reconstruction errors are heavy-tailed: on linear bins nearly every normal event
    lands in the first bin and the interesting overlap region is invisible.
    """
    lo, hi = float(s.min()), float(s.max())
    if lo > 0 and hi / lo > 1e3:
        return np.geomspace(lo, hi, _HIST_BINS + 1).tolist(), True
    return np.histogram_bin_edges(s, bins=_HIST_BINS).tolist(), False


def _per_kind_figure(per_kind: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Horizontal bars of recall per anomaly kind, worst at the top, counts annotated."""
    items = sorted(per_kind.items(), key=lambda kv: kv[1]["recall"], reverse=True)
    names = [k for k, _ in items]
    recalls = [float(v["recall"]) for _, v in items]
    fig, ax = _new_axes((5.6, max(2.4, 0.45 * len(items) + 1.2)))
    bars = ax.barh(names, recalls, color="#3e7cb1")
    for bar, (_, v) in zip(bars, items, strict=True):
        ax.annotate(
            f" {float(v['recall']):.2f} (n={int(v['count']):,})",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
        )
    ax.set(xlabel="Recall", xlim=(0, 1.25), xticks=np.linspace(0, 1, 6))  # room for labels
    return fig


# --------------------------------------------------------------------------- HTML


def _render_page(
    title: str,
    metrics: Mapping[str, Any],
    baselines: Sequence[BaselineResult],
    per_kind: Mapping[str, Mapping[str, Any]],
    images: Sequence[tuple[str, str]],
    extra: Mapping[str, Any],
    analyst: AnalystSection | None = None,
) -> str:
    """The whole HTML document; every caller-supplied string is escaped."""
    sections = [
        *(_section(h, body) for h, body in (analyst.html_sections() if analyst else [])),
        _section("Detection metrics", _metrics_table(metrics)),
        _section("Baselines", _baselines_table(metrics, baselines)) if baselines else "",
        _section("Recall per anomaly kind", _per_kind_table(metrics, per_kind)) if per_kind else "",
        _section("Plots", _figures(images)),
        _section("Run details", _extra_table(extra)) if extra else "",
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"{_fmt(metrics.get('n'))} events, {_fmt(metrics.get('n_positive'))} anomalies"
        f" &middot; generated {generated}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{_esc(title)}</h1>\n<p class="meta">{meta}</p>\n'
        + "".join(sections)
        + "</main>\n</body>\n</html>\n"
    )


def _section(heading: str, body: str) -> str:
    return f"<section>\n<h2>{_esc(heading)}</h2>\n{body}\n</section>\n"


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    """Threshold-free metrics, then the operating point at the chosen threshold if any."""
    rows: list[tuple[str, Any]] = [
        ("AUROC", metrics.get("auroc")),
        ("AUPRC (average precision)", metrics.get("auprc")),
        ("Best F1", metrics.get("best_f1")),
        ("Best-F1 threshold", metrics.get("best_f1_threshold")),
    ]
    rows += [(f"TPR @ {_pct(k)} FPR", v) for k, v in metrics.get("tpr_at_fpr", {}).items()]
    for key, label in [
        ("threshold", "Threshold"),
        ("precision", "Precision @ threshold"),
        ("recall", "Recall @ threshold"),
        ("f1", "F1 @ threshold"),
        ("fpr", "FPR @ threshold"),
    ]:
        if key in metrics:
            rows.append((label, metrics[key]))
    body = "".join(f'<tr><th>{_esc(k)}</th><td class="num">{_fmt(v)}</td></tr>' for k, v in rows)
    return f"<table>{body}</table>"


def _baselines_table(metrics: Mapping[str, Any], baselines: Sequence[BaselineResult]) -> str:
    """Our model next to each baseline on the same test split."""
    head = _tr(["Model", "AUROC", "AUPRC", "Events/s", "Fit (s)", "Scored events"], "th")
    m = metrics
    ours = _model_row(
        _OURS, m.get("auroc"), m.get("auprc"), m.get("events_per_s"), None, m.get("n"), "ours"
    )
    rows = "".join(
        _model_row(b.name, b.auroc, b.auprc, b.events_per_s, b.fit_seconds, b.n_scored)
        for b in baselines
    )
    note = (
        '<p class="note">Events/s: scoring throughput, one process. Baselines that score a '
        "subsample report their AUROC/AUPRC on that subsample.</p>"
    )
    return f"<table>{head}{ours}{rows}</table>{note}"


def _model_row(
    name: str,
    auroc: float | None,
    auprc: float | None,
    events_per_s: float | None,
    fit_seconds: float | None,
    n_scored: int | None,
    cls: str = "",
) -> str:
    """One row of the baselines table."""
    cells = [_esc(name), _fmt(auroc), _fmt(auprc), _fmt_rate(events_per_s)]
    return _tr([*cells, _fmt(fit_seconds), _fmt(n_scored)], cls=cls)


def _per_kind_table(metrics: Mapping[str, Any], per_kind: Mapping[str, Mapping[str, Any]]) -> str:
    """Recall and count per kind, weakest first, with the threshold it was measured at."""
    items = sorted(per_kind.items(), key=lambda kv: kv[1]["recall"])
    rows = "".join(_tr([_esc(k), _fmt(v.get("count")), _fmt(v.get("recall"))]) for k, v in items)
    thr = metrics.get("per_kind_threshold", metrics.get("threshold"))
    source = metrics.get("per_kind_threshold_source")
    how = f" ({_esc(str(source))})" if source else ""
    note = f'<p class="note">Measured at threshold {_fmt(thr)}{how}.</p>'
    return f"<table>{_tr(['Kind', 'Count', 'Recall'], 'th')}{rows}</table>{note}"


def _figures(images: Sequence[tuple[str, str]]) -> str:
    figs = "".join(
        f'<figure><img src="{_esc(name)}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
        for name, caption in images
    )
    return f'<div class="grid">{figs}</div>'


def _extra_table(extra: Mapping[str, Any]) -> str:
    """Key/value rows: plain scalars as text, anything structured as pretty JSON."""
    rows = "".join(
        f"<tr><th>{_esc(str(k))}</th><td>{_extra_value(v)}</td></tr>" for k, v in extra.items()
    )
    return f"<table>{rows}</table>"


def _extra_value(value: Any) -> str:
    if value is None or isinstance(value, str | int | float | bool):
        return _esc(str(value))
    return f"<pre>{_esc(json.dumps(value, indent=2, default=str))}</pre>"


def _tr(cells: Sequence[str], tag: str = "td", cls: str = "") -> str:
    """One row of already-escaped cells; data cells after the first are right-aligned."""
    attr = f' class="{cls}"' if cls else ""
    parts = [
        f'<{tag} class="num">{c}</{tag}>' if i and tag == "td" else f"<{tag}>{c}</{tag}>"
        for i, c in enumerate(cells)
    ]
    return f"<tr{attr}>{''.join(parts)}</tr>"


def _fmt(value: Any) -> str:
    """Human-readable, escaped cell text; ``None`` shows as an em dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool | str):
        return _esc(str(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 else f"{v:.4g}"
    return _esc(str(value))


def _fmt_rate(value: Any) -> str:
    """Throughput as a whole number with thousands separators."""
    return "&mdash;" if value is None else f"{float(value):,.0f}"


def _pct(fpr_key: str) -> str:
    """``"0.001" -> "0.1%"``."""
    return f"{float(fpr_key) * 100:g}%"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
