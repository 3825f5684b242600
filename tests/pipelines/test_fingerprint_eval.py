"""Fingerprinting earns its keep: AUROC uplift on entity-relative anomalies, reasons that name
the injected field, and no AUROC loss on the default population anomalies (docs/results.md)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.fingerprint_eval import run_eval


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return run_eval()  # the published protocol: committed model, ~10 s on 2 cores


def test_baselines_lift_auroc_on_entity_relative_anomalies(result: dict[str, Any]) -> None:
    er = result["entity_relative"]
    assert er["auroc_with"] >= er["auroc_without"] + 0.05
    assert er["entity_baseline_share"] > 0.5  # the min_events rule leaves most events judged


def test_population_anomalies_do_not_lose_auroc(result: dict[str, Any]) -> None:
    pop = result["population"]
    assert pop["auroc_with"] >= pop["auroc_without"]


def test_top_reason_names_the_injected_field(result: dict[str, Any]) -> None:
    er = result["entity_relative"]
    assert er["top_reason_correct_entity_baseline"] >= 0.8
    for kind in ("impossible_travel", "new_device", "unusual_hour", "exfiltration", "port_scan"):
        assert er["per_kind"][kind]["top_reason_correct_entity_baseline"] >= 0.8, kind
