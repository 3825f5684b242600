"""The report's analyst section (#19): counts explained, top alerts and incidents in words,
the combined score beside the model's, a log-FPR ROC and legends that hide no curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from modelling.evaluation import analyst, compute_metrics, write_report
from modelling.evaluation import report as report_module
from morpheus_ext.stages.postprocess import alert_text
from morpheus_ext.stages.postprocess.incidents import incident_order

N = 400
"""Events in the synthetic evaluation: 40 labelled anomalies."""


def _records(y: np.ndarray, fingerprint: bool = True) -> list[dict[str, Any]]:
    """Score records for ``y``: labelled anomalies score high; every 50th normal event is a
    false positive; with fingerprinting, every 40th normal event is new for its entity."""
    records = []
    for i, label in enumerate(y):
        score = 3.0 + i / N if label else 0.1 + (2.0 if i % 50 == 7 else 0.0) + i / (10 * N)
        rec: dict[str, Any] = {
            "event_id": f"e{i}",
            "entity": f"u{i % 17:04d}",
            "event_time": f"2026-11-01T08:{i % 60:02d}:00Z",
            "anomaly_score": score,
            "threshold": 1.0,
            "is_anomaly": score > 1.0,
            "reasons": [{"field": "bytes_out", "value": i, "z": 5.0 * score}],
        }
        if fingerprint:
            new = not label and i % 40 == 3
            rec["entity_score"] = 6.0 if new else 0.5
            rec["combined_score"] = float(np.log(score) + rec["entity_score"])
            rec["combined_anomaly"] = bool(rec["is_anomaly"] or new)
            if label or new:
                rec["reasons"].insert(
                    0,
                    {
                        "field": "country",
                        "value": "RU",
                        "z": 1.0,
                        "text": f"country=RU never seen for {rec['entity']} in 30 days",
                    },
                )
        records.append(rec)
    return records


def _labels() -> tuple[np.ndarray, np.ndarray]:
    y = np.zeros(N, dtype=int)
    y[np.arange(5, N, 10)] = 1
    records = _records(y, fingerprint=False)
    return y, np.array([r["anomaly_score"] for r in records])


def _incident(i: int, severity: str, entity: str = "u0442", **extra: Any) -> dict[str, Any]:
    inc: dict[str, Any] = {
        "record_version": 1,
        "incident_id": f"inc-{i:016x}",
        "status": "open",
        "revision": 1,
        "site": "site-0",
        "entities": [entity, "10.0.0.7"],
        "first_seen": "2026-11-01T08:00:00Z",
        "last_seen": "2026-11-01T08:05:00Z",
        "event_count": 4 * (i + 1),
        "event_ids": [f"e{j}" for j in range(4 * (i + 1))],
        "reasons": [
            {
                "field": "country",
                "text": f"country=RU never seen for {entity} in 30 days",
                "events": 3,
            }
        ],
        "leakage": [],
        "max_score": 10.0 + i,
        "combined_score": 5.0 + i / 10,
        "severity": severity,
        "campaign": None,
        **extra,
    }
    return inc


def _write(
    tmp_path: Path,
    records: list[dict[str, Any]] | None = None,
    incidents: list[dict[str, Any]] | None = None,
) -> str:
    y, scores = _labels()
    metrics = compute_metrics(y, scores, threshold=1.0)
    path = write_report(
        tmp_path, "analyst", y, scores, metrics, records=records, incidents=incidents
    )
    return path.read_text(encoding="utf-8")


def test_the_counts_table_matches_the_inputs() -> None:
    y, scores = _labels()
    records = _records(y)
    incidents = [_incident(i, "high") for i in range(3)]  # 4 + 8 + 12 events
    section = analyst.build_section(y, scores, 1.0, records, incidents)
    counts = {row.label: row for row in section.counts}

    model = sum(r["is_anomaly"] for r in records)
    combined = sum(r["combined_anomaly"] for r in records)
    assert counts["Events scored"].count == N
    assert counts["Labelled anomalies (ground truth)"].count == 40
    assert counts["Flagged by the model (is_anomaly)"].count == model == 40 + 8
    assert counts["Flagged by the model (is_anomaly)"].labelled == 40
    assert counts["Flagged on the combined score (combined_anomaly)"].count == combined
    assert combined == model + 10  # every 40th event (i % 40 == 3) is new for its entity
    assert counts["Flagged on the combined score (combined_anomaly)"].labelled == 40
    assert counts["Incidents"].count == 3
    assert counts["Flagged events per incident (mean)"].count == pytest.approx(8.0)
    assert all(row.meaning.endswith(".") for row in section.counts)  # each one explained

    page = "".join(body for _, body in section.html_sections())
    for number in ("400", "40", "48", "58", "3", "8.0"):
        assert f'<td class="num">{number}</td>' in page, number


def test_without_records_the_model_count_comes_from_the_threshold(tmp_path: Path) -> None:
    y, scores = _labels()
    section = analyst.build_section(y, scores, 1.0)
    counts = {row.label: row.count for row in section.counts}
    assert counts["Flagged by the model (is_anomaly)"] == int((scores > 1.0).sum())
    assert counts["Flagged on the combined score (combined_anomaly)"] is None
    page = _write(tmp_path)
    assert "No score records given" in page and "no incidents given" in page.lower()


def test_top_alerts_say_their_reasons_in_words(tmp_path: Path) -> None:
    y, _ = _labels()
    records = _records(y)
    page = _write(tmp_path, records)
    top = analyst.build_section(y, _labels()[1], 1.0, records).top_alerts
    assert len(top) == analyst.TOP_N
    assert [alert_text.rank(r) for r in top] == sorted(
        (alert_text.rank(r) for r in top), reverse=True
    )
    assert all(alert_text.flagged(r) for r in top)
    assert "never seen for" in page  # the fingerprint's words
    assert "Combined score" in page and "Entity score" in page
    assert "by combined score (model + entity baseline)" in page

    plain = _write(tmp_path / "plain", _records(y, fingerprint=False))
    assert "standard deviations from normal events" in plain  # the model's reasons, in words
    assert "Combined score" not in plain


def test_the_combined_score_metrics_sit_beside_the_model(tmp_path: Path) -> None:
    y, scores = _labels()
    records = _records(y)
    section = analyst.build_section(y, scores, 1.0, records)
    assert section.score_metrics is not None and section.combined_scores is not None
    combined = compute_metrics(y, np.array([r["combined_score"] for r in records]))
    assert section.score_metrics["combined"]["auroc"] == pytest.approx(combined["auroc"])
    page = _write(tmp_path, records)
    assert "Model score and combined score" in page
    assert f"{combined['auprc']:.4f}" in page


def test_top_incidents_render_when_given(tmp_path: Path) -> None:
    incidents = [_incident(i, s) for i, s in enumerate(["low", "critical", "medium", "high"])]
    incidents += [_incident(10 + i, "low") for i in range(12)]
    incidents.append({"incident_id": "inc-bare", "severity": "high"})  # optional keys missing
    incidents[0]["campaign"] = {"campaign_id": "c1", "sites": 3}
    incidents[1]["leakage"] = [{"type": "aws_access_key", "field": "url"}]
    top = analyst.top_incidents(incidents)
    assert len(top) == analyst.TOP_N
    complete = incidents[:-1]  # the order secureai tail and top_incidents.txt use
    assert analyst.top_incidents(complete) == sorted(complete, key=incident_order)[:10]
    assert [i["severity"] for i in top[:4]] == ["critical", "high", "high", "medium"]
    assert top[1]["incident_id"] == incidents[3]["incident_id"]  # bare: no combined score

    page = _write(tmp_path, incidents=incidents)
    assert "Top incidents" in page and "no incidents given" not in page.lower()
    assert "critical (open)" in page and "u0442, 10.0.0.7" in page
    assert "country=RU never seen for u0442 in 30 days (3 events)" in page
    assert "aws_access_key" in page
    assert "2026-11-01T08:05:00Z" in page


def test_no_incidents_line_when_not_given(tmp_path: Path) -> None:
    y, _ = _labels()
    page = _write(tmp_path, _records(y))
    assert "No incidents given." in page
    assert "Top alerts" in page and "Top incidents" in page


def _draw(fig: Figure) -> None:
    FigureCanvasAgg(fig).draw()


def _runs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    y, scores = _labels()
    return [("ours", y, scores), ("other", y, scores[::-1])]


def test_the_roc_has_a_log_fpr_axis() -> None:
    fig = report_module._roc_figure(_runs())
    _draw(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(1e-4) and hi == pytest.approx(1.0)


@pytest.mark.parametrize("which", ["roc", "pr"])
def test_the_legend_is_below_the_axes(which: str) -> None:
    y = _runs()[0][1]
    fig = (
        report_module._roc_figure(_runs())
        if which == "roc"
        else report_module._pr_figure(_runs(), y)
    )
    _draw(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    legends = [*fig.legends, *([ax.get_legend()] if ax.get_legend() else [])]
    assert len(legends) == 1
    legend_box = legends[0].get_window_extent(renderer)
    axes_box = ax.get_tightbbox(renderer)  # the axes with its tick labels and axis labels
    assert legend_box.y1 <= axes_box.y0
    assert legend_box.y0 >= 0  # still on the figure


def test_html_is_escaped(tmp_path: Path) -> None:
    y, _ = _labels()
    records = _records(y)
    records[5]["entity"] = "<script>"
    records[5]["combined_score"] = 100.0  # first of the top alerts
    records[5]["reasons"][0]["text"] = "country=RU never seen for <script> in 30 days"
    incidents = [_incident(0, "critical", entity="<script>")]
    page = _write(tmp_path, records, incidents)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "never seen for &lt;script&gt; in 30 days" in page
