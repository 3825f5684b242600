"""Typed configuration for runs (YAML under ``configs/``, validated here by pydantic).

Every run writes its *resolved* config (defaults filled in) to its run directory, so a run is
reproducible from that one file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from modelling.config import CentralizedConfig
from morpheus_ext.config_io import ConfigError, StrictModel, dump_config, load_config
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.postprocess.incidents import IncidentConfig
from morpheus_ext.stages.postprocess.leakage import LeakageConfig
from synthetic import SyntheticConfig

__all__ = ["ConfigError", "dump_config", "load_config"]  # + the config models below


class DemoConfig(StrictModel):
    """The embedded default: synthetic events, train (or use the committed models), stream."""

    name: str = "demo"
    training: CentralizedConfig
    stream: SyntheticConfig
    use_committed_models: bool = False
    committed_repository: Path = Path("triton_model_repository")
    batch_size: int = Field(default=4096, ge=1)
    fingerprint: FingerprintConfig | None = None
    """Per-entity baselines (docs/fingerprinting.md); ``enabled: true`` turns them on."""
    leakage: LeakageConfig | None = None
    """Leakage detector (docs/triage.md); ``enabled: true`` turns it on."""
    incidents: IncidentConfig | None = None
    """Flagged records grouped into incidents (docs/triage.md); ``enabled: true`` turns it on."""
