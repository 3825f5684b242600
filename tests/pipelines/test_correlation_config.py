"""Cross-site correlation's pipeline and correlator configs: mistakes answer at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipelines.correlate import load_correlator_config
from pipelines.kafka.config import PipelineConfig, load_pipeline_config

REPO = Path(__file__).resolve().parents[2]


def _doc(**extra: Any) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": "x:1", "topics": ["events"]}, **extra}


def test_correlation_needs_incidents_with_a_site() -> None:
    with pytest.raises(ValidationError, match="correlation needs incidents"):
        PipelineConfig.model_validate(_doc(correlation={"enabled": True}))
    with pytest.raises(ValidationError, match="correlation needs incidents"):
        PipelineConfig.model_validate(
            _doc(correlation={"enabled": True}, incidents={"enabled": True})
        )
    ok = PipelineConfig.model_validate(
        _doc(correlation={"enabled": True}, incidents={"enabled": True, "site": "a"})
    )
    assert ok.kafka.correlation_topic == "security-correlation"
    assert ok.correlation is not None and ok.correlation.fields == ["src_ip"]
    clash = _doc(correlation={"enabled": True}, incidents={"enabled": True, "site": "a"})
    clash["kafka"]["campaigns_topic"] = "security-incidents"
    with pytest.raises(ValidationError, match="must differ"):
        PipelineConfig.model_validate(clash)


def test_shipped_configs_load() -> None:
    config = load_correlator_config(REPO / "configs" / "correlator.yml")
    assert config.correlation.enabled and config.correlation.min_sites == 2
    pipeline = load_pipeline_config(REPO / "configs" / "pipeline.yml")
    assert pipeline.correlation is not None and not pipeline.correlation.enabled
