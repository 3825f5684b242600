"""Settings of digital fingerprinting (per-entity baselines), validated by pydantic.

Every size that bounds memory is here, so the cap in docs/fingerprinting.md is a function of this
model alone: ``max_entities`` x (bytes per entity from ``values_per_entity``, the tracked fields
and ``numeric_bins``). The demo reads it from ``configs/demo.yml`` (``fingerprint:``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FingerprintConfig(BaseModel):
    """Knobs of :class:`~morpheus_ext.stages.postprocess.fingerprint.baselines.EntityBaselines`.

    Defaults are the ones measured in docs/fingerprinting.md and docs/results.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Off by default: records then carry none of the fingerprint fields (schema-compatible)."""
    min_events: int = Field(50, ge=1)
    """Events an entity needs before its own baseline is used (before: ``baseline: population``)."""
    categorical: list[str] | None = None
    """Categorical fields whose per-entity seen values are kept; None = the spec's categoricals."""
    numeric: list[str] | None = None
    """Numeric (volume) fields with a per-entity histogram; None = the spec's numeric fields."""
    hour_profile: bool = True
    """Keep a 24-bin hour-of-day profile per entity (needs the spec's ``hour`` time feature)."""
    field_z_stats: bool = True
    """Running mean/std of each field's z per entity (128 bytes per entity for 16 fields)."""
    values_per_entity: int = Field(32, ge=4, le=256)
    """Capacity of an entity's seen-value table, shared by all tracked categorical fields."""
    probes: int = Field(8, ge=1, le=64)
    """Slots a value may occupy in that table (linear probing window); bounds lookup cost."""
    numeric_bins: int = Field(24, ge=4, le=64)
    """Histogram bins per numeric field, over ``sign(x)·log1p(|x|)``."""
    bin_width: float = Field(1.0, gt=0.0)
    """Bin width in natural-log units (1.0: a bin spans a factor e = 2.7)."""
    max_entities: int = Field(1_000_000, ge=1)
    """Hard cap on entities kept; above it the least recently seen are evicted (LRU)."""
    evict_to: float = Field(0.95, gt=0.0, le=1.0)
    """LRU eviction goes down to this share of ``max_entities`` so it runs rarely, not per batch."""
    ttl_days: float = Field(30.0, gt=0.0)
    """Entities not seen for this long (event time) are dropped."""
    update_from: Literal["all", "normal"] = "normal"
    """``normal``: learn only from events the *global* model did not flag (see docs)."""
    entity_weight: float = Field(1.0, ge=0.0)
    """w in ``combined = ln(anomaly_score / threshold) + w · entity_score``."""
    bursts: Literal["off", "new", "all"] = "new"
    """Score one entity's burst of new values within a batch together (``b · KL(m/b || p)``,
    e.g. a port scan's many new ports); ``all`` also bursts of rare seen values (brute force's
    failures), at the cost of flagging normal shifts in habits (see docs)."""
    combine: Literal["sum", "max", "top2"] = "max"
    """How field novelties make ``entity_score``: the largest (default), the two largest, all."""
    hour_smoothing: int = Field(1, ge=0, le=4)
    """Hour profile smoothing: +-bins of a triangular kernel (1: 25/50/25 over 3 hours)."""
    combined_fpr: float = Field(0.01, gt=0.0, lt=0.5)
    """``combined_anomaly`` fires on about this share of the events the model does not flag:
    the threshold is that quantile of ``combined_score`` over the stream's normal events."""
    combined_threshold: float | None = None
    """A fixed threshold instead of the learned quantile."""
    calibration_events: int = Field(1000, ge=1)
    """Normal events seen before the learned threshold is used (until then: no extra alerts)."""
    explain: Literal["alerts", "all"] = "alerts"
    """Which score records get the entity-relative reasons (ranking, words, numbers):
    ``alerts``: those the model or ``combined_anomaly`` flags, the records an analyst opens;
    ``all``: every record, which roughly doubles the CPU of scoring a batch (the texts are
    most of the cost: docs/benchmarks.md). Other records keep the model's reasons (field,
    value, population z) and carry the fingerprint's scores."""
    reason_z_weight: float = Field(0.05, ge=0.0)
    """Reasons rank new-for-the-entity fields by novelty (ties: layout order), then the others
    by this x clip(global z, 0, 20), i.e. a z of 20 counts like 1 nat of novelty."""

    @model_validator(mode="after")
    def _check(self) -> FingerprintConfig:
        if self.probes > self.values_per_entity:
            raise ValueError("probes must not exceed values_per_entity")
        return self
