"""Tests for modelling.evaluation: metrics with known answers, baselines and the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modelling.evaluation import (
    BaselineResult,
    compute_metrics,
    curves,
    half_space_trees,
    isolation_forest,
    run_baselines,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _hand_made() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 normals scored 0..9 and 5 anomalies scored 10, 11, 8.5, 5, 2 (kinds a, a, b, b, c).

    Working the ROC by hand: threshold 10 flags 2/5 anomalies and no normal; threshold 8.5
    flags 3/5 anomalies and one normal (score 9), i.e. FPR 0.1; the next threshold, 8,
    takes FPR to 0.2 with no new anomaly.
    """
    y = np.array([0] * 10 + [1] * 5)
    scores = np.array([*range(10), 10.0, 11.0, 8.5, 5.0, 2.0])
    kinds = np.array(["none"] * 10 + ["a", "a", "b", "b", "c"])
    return y, scores, kinds


def _gaussian_with_outliers(
    seed: int = 0, n_train: int = 2000, n_normal: int = 950, n_outliers: int = 50, dim: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard-normal training data; a test set with far-out uniform outliers mixed in."""
    rng = np.random.default_rng(seed)
    X_train = rng.normal(size=(n_train, dim))
    outliers = rng.uniform(4.0, 8.0, size=(n_outliers, dim)) * rng.choice(
        [-1, 1], (n_outliers, dim)
    )
    X_test = np.vstack([rng.normal(size=(n_normal, dim)), outliers])
    y_test = np.array([0] * n_normal + [1] * n_outliers)
    order = rng.permutation(len(y_test))
    return X_train, X_test[order], y_test[order]


# --------------------------------------------------------------------------- metrics


def test_perfect_separation_scores_one_everywhere() -> None:
    y = np.array([0] * 90 + [1] * 10)
    scores = np.concatenate([np.linspace(0, 1, 90), np.linspace(2, 3, 10)])
    m = compute_metrics(y, scores)
    assert (m["n"], m["n_positive"]) == (100, 10)
    assert m["auroc"] == 1.0
    assert m["auprc"] == pytest.approx(1.0)
    assert m["best_f1"] == 1.0
    assert 1.0 < m["best_f1_threshold"] <= 2.0
    assert m["tpr_at_fpr"] == {"0.01": 1.0, "0.001": 1.0}


def test_random_scores_give_auroc_near_half() -> None:
    rng = np.random.default_rng(42)
    y = (rng.random(20_000) < 0.1).astype(int)
    m = compute_metrics(y, rng.random(20_000))
    assert abs(m["auroc"] - 0.5) < 0.03
    assert abs(m["auprc"] - y.mean()) < 0.03


def test_tpr_at_fpr_on_hand_made_example() -> None:
    y, scores, _ = _hand_made()
    m = compute_metrics(y, scores, fprs=(0.0, 0.1, 0.2, 0.5))
    assert m["tpr_at_fpr"] == {"0.0": 0.4, "0.1": 0.6, "0.2": 0.6, "0.5": 0.8}
    assert m["threshold_at_fpr"]["0.0"] == 10.0
    assert m["threshold_at_fpr"]["0.1"] == 8.5


def test_threshold_metrics() -> None:
    y, scores, _ = _hand_made()
    m = compute_metrics(y, scores, threshold=8.5)
    assert m["threshold"] == 8.5
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert m["fpr"] == pytest.approx(0.1)


def test_per_kind_recall_at_given_threshold() -> None:
    y, scores, kinds = _hand_made()
    m = compute_metrics(y, scores, kinds=kinds, threshold=8.5)
    assert m["per_kind_recall"] == {
        "a": {"recall": 1.0, "count": 2},
        "b": {"recall": 0.5, "count": 2},
        "c": {"recall": 0.0, "count": 1},
    }
    assert m["per_kind_threshold_source"] == "given"


def test_per_kind_recall_defaults_to_one_percent_fpr_threshold() -> None:
    y, scores, kinds = _hand_made()
    kinds[kinds == "c"] = ""  # blank means "no kind", like "none"
    m = compute_metrics(y, scores, kinds=kinds)
    # With 10 normals, FPR <= 1% allows no false positive: threshold 10.
    assert m["per_kind_threshold"] == 10.0
    assert m["per_kind_recall"] == {
        "a": {"recall": 1.0, "count": 2},
        "b": {"recall": 0.0, "count": 2},
    }


def test_metrics_are_strict_json() -> None:
    y, scores, kinds = _hand_made()
    # The top-scored event is a normal one, so "flag nothing" (+inf) is the only 0%-FPR
    # operating point: it must come out as null, not Infinity.
    scores = np.append(scores, 100.0)
    y, kinds = np.append(y, 0), np.append(kinds, "none")
    m = compute_metrics(y, scores, kinds=kinds, threshold=5.0, fprs=(0.0, 0.01))
    assert m["threshold_at_fpr"]["0.0"] is None
    assert m["tpr_at_fpr"]["0.0"] == 0.0
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize("y", [np.zeros(10, dtype=int), np.ones(10, dtype=int)])
def test_single_class_raises(y: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"only .* both classes"):
        compute_metrics(y, np.arange(10.0))
    with pytest.raises(ValueError, match="both classes"):
        curves(y, np.arange(10.0))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="scores has 3"):
        compute_metrics(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="binary"):
        compute_metrics(np.array([0, 2]), np.array([0.1, 0.2]))


def test_curves_are_downsampled_but_keep_end_points() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(10_000) < 0.3).astype(int)
    c = curves(y, rng.random(10_000) + y * 0.2)
    for xs in (*c["roc"].values(), *c["pr"].values()):
        assert 10 < len(xs) <= 2000
    assert c["roc"]["fpr"][0] == 0.0 and c["roc"]["fpr"][-1] == 1.0
    assert c["roc"]["tpr"][-1] == 1.0
    assert c["pr"]["recall"][0] == 1.0 and c["pr"]["recall"][-1] == 0.0


# --------------------------------------------------------------------------- baselines


def test_isolation_forest_finds_gaussian_outliers() -> None:
    X_train, X_test, y_test = _gaussian_with_outliers()
    r = isolation_forest(X_train, X_test, y_test, seed=0)
    assert r.name == "isolation_forest"
    assert r.auroc > 0.9
    assert r.scores.shape == (len(y_test),) and r.n_scored == len(y_test)
    assert r.indices is None
    assert r.events_per_s > 0 and r.fit_seconds >= 0
    json.dumps(r.to_dict(), allow_nan=False)


def test_isolation_forest_is_deterministic() -> None:
    X_train, X_test, y_test = _gaussian_with_outliers()
    a = isolation_forest(X_train, X_test, y_test, seed=3)
    b = isolation_forest(X_train, X_test, y_test, seed=3)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_half_space_trees_is_none_without_river(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import river` raise ImportError.
    monkeypatch.setitem(sys.modules, "river", None)
    monkeypatch.setitem(sys.modules, "river.anomaly", None)
    X_train, X_test, y_test = _gaussian_with_outliers()
    assert half_space_trees(X_train, X_test, y_test) is None
    assert [r.name for r in run_baselines(X_train, X_test, y_test)] == ["isolation_forest"]


def test_half_space_trees_subsamples_when_river_is_installed() -> None:
    pytest.importorskip("river")
    X_train, X_test, y_test = _gaussian_with_outliers()
    r = half_space_trees(X_train, X_test, y_test, seed=0, max_train=1000, max_test=400)
    assert r is not None
    assert r.n_scored == 400 and r.scores.shape == (400,)
    assert r.indices is not None and len(r.indices) == 400
    labels = r.labels_for(y_test)
    assert 0 < labels.sum() < len(labels)  # stratified: both classes kept
    assert r.auroc > 0.8


def test_baselines_reject_mismatched_shapes() -> None:
    X_train, X_test, y_test = _gaussian_with_outliers()
    with pytest.raises(ValueError, match="equal widths"):
        isolation_forest(X_train[:, :3], X_test, y_test)
    with pytest.raises(ValueError, match="rows"):
        isolation_forest(X_train, X_test, y_test[:-1])


# --------------------------------------------------------------------------- report


def _report_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[BaselineResult]]:
    X_train, X_test, y = _gaussian_with_outliers()
    rng = np.random.default_rng(1)
    scores = np.abs(rng.normal(size=len(y))) + 3.0 * y
    kinds = np.where(y == 1, rng.choice(["port_scan", "brute_force"], size=len(y)), "none")
    forest = isolation_forest(X_train, X_test, y)
    # A subsampled baseline, as Half-Space Trees produces, to exercise the overlay path.
    idx = np.arange(0, len(y), 2)
    sub = BaselineResult("subsampled", 0.5, 0.1, 0.0, 1e6, rng.random(idx.size), idx.size, idx)
    return y, scores, kinds, [forest, sub]


def test_report_writes_all_files(tmp_path: Path) -> None:
    y, scores, kinds, baselines = _report_inputs()
    metrics = compute_metrics(y, scores, kinds=kinds, threshold=2.5)
    metrics["events_per_s"] = 123456.0
    extra = {"model_version": "v<3>", "config": {"epochs": 5, "layers": [32, 8]}}
    html_path = write_report(
        tmp_path / "run", "Eval <demo>", y, scores, metrics, kinds, baselines, extra
    )

    assert html_path == tmp_path / "run" / "report.html"
    for name in ("roc.png", "pr.png", "score_hist.png", "per_kind_recall.png"):
        assert (tmp_path / "run" / name).read_bytes()[:8] == PNG_MAGIC, name
    page = html_path.read_text(encoding="utf-8")
    assert page.count("<img ") == 4
    for name in ("roc.png", "pr.png", "score_hist.png", "per_kind_recall.png"):
        assert f'src="{name}"' in page
    for key in ("auroc", "auprc", "best_f1", "precision", "recall", "f1", "fpr"):
        assert f"{metrics[key]:.4f}" in page, key
    assert f"{metrics['tpr_at_fpr']['0.01']:.4f}" in page
    assert "TPR @ 1% FPR" in page and "TPR @ 0.1% FPR" in page
    assert f"{baselines[0].auroc:.4f}" in page and "isolation_forest" in page
    assert "123,456" in page
    assert "port_scan" in page and "brute_force" in page
    assert "Eval &lt;demo&gt;" in page and "v&lt;3&gt;" in page
    assert "&quot;epochs&quot;: 5" in page  # pretty JSON, escaped
    assert "<demo>" not in page


def test_report_without_kinds_or_baselines(tmp_path: Path) -> None:
    y, scores, _, _ = _report_inputs()
    html_path = write_report(tmp_path, "plain", y, scores, compute_metrics(y, scores))
    assert not (tmp_path / "per_kind_recall.png").exists()
    page = html_path.read_text(encoding="utf-8")
    assert page.count("<img ") == 3
    assert "Baselines" not in page and "Run details" not in page


def test_report_log_bins_for_heavy_tailed_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.05).astype(int)
    scores = np.exp(rng.normal(scale=3.0, size=2000) + 4 * y)  # spans many decades
    write_report(tmp_path, "t", y, scores, compute_metrics(y, scores, threshold=10.0))
    assert (tmp_path / "score_hist.png").read_bytes()[:8] == PNG_MAGIC
