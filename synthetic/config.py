"""The generator's typed config, and how many events of each type and kind it asks for."""

from __future__ import annotations

import pandas as pd
from pydantic import Field, field_validator, model_validator

from morpheus_ext.config_io import StrictModel
from synthetic.schema import (
    ALL_KINDS,
    ANOMALY_KINDS,
    AUTH_KINDS,
    NETFLOW_KINDS,
)


# --- configuration ----------------------------------------------------------------------------
class SyntheticConfig(StrictModel):
    """Knobs of the generator; validated up front so impossible requests fail with one line."""

    n_events: int = Field(100_000, ge=1, le=50_000_000)
    auth_fraction: float = Field(0.6, ge=0.0, le=1.0)
    anomaly_rate: float = Field(0.02, ge=0.0, le=0.5)
    n_sites: int = Field(3, ge=1, le=64)
    n_users: int = Field(600, ge=1, le=1_000_000)
    n_hosts: int = Field(400, ge=1, le=60_000)
    heterogeneity: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    population_seed: int | None = Field(None, ge=0)
    """Seed of the organisation (sites, users, hosts, habits); ``None`` means ``seed``."""
    start: str = "2026-11-01T00:00:00Z"
    days: int = Field(7, ge=1, le=3660)
    anomaly_kinds: list[str] = Field(default_factory=lambda: list(ANOMALY_KINDS))
    entity_relative: bool = False

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        """Reject unparseable or non-UTC starts early; timestamps are always emitted in UTC."""
        _parse_start_ms(value)
        return value

    @field_validator("anomaly_kinds")
    @classmethod
    def _check_kinds(cls, value: list[str]) -> list[str]:
        """Unknown kinds would silently produce no anomalies, so name them instead."""
        unknown = sorted(set(value) - set(ALL_KINDS))
        if unknown:
            raise ValueError(f"unknown anomaly kinds {unknown}; choose from {list(ALL_KINDS)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _check_budget(self) -> SyntheticConfig:
        """Anomalies are carved out of each event type's budget, so that budget must suffice."""
        counts = kind_counts(self)
        if sum(counts.values()) and not self.anomaly_kinds:
            raise ValueError("anomaly_rate > 0 needs at least one anomaly kind")
        n_auth, n_net = event_type_counts(self)
        need_auth = sum(v for k, v in counts.items() if k in AUTH_KINDS)
        need_net = sum(v for k, v in counts.items() if k in NETFLOW_KINDS)
        if need_auth > n_auth or need_net > n_net:
            raise ValueError(
                f"{need_auth} auth and {need_net} netflow anomalies do not fit in {n_auth} auth "
                f"and {n_net} netflow events; lower anomaly_rate or change auth_fraction"
            )
        return self


def event_type_counts(config: SyntheticConfig) -> tuple[int, int]:
    """Total (auth, netflow) events, anomalies included."""
    n_auth = round(config.n_events * config.auth_fraction)
    return n_auth, config.n_events - n_auth


def kind_counts(config: SyntheticConfig) -> dict[str, int]:
    """Split round(n_events * anomaly_rate) equally over the kinds, remainder to the first ones.

    Deterministic (no rng) so the budget check in the config and generate() agree exactly.
    """
    total = round(config.n_events * config.anomaly_rate)
    kinds = config.anomaly_kinds
    if not kinds:
        return {}
    base, rest = divmod(total, len(kinds))
    return {k: base + (1 if i < rest else 0) for i, k in enumerate(kinds)}


def _parse_start_ms(start: str) -> int:
    """Milliseconds since the epoch for a UTC ISO-8601 string (naive strings count as UTC)."""
    try:
        ts = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start {start!r} is not an ISO-8601 timestamp") from exc
    if ts is pd.NaT:
        raise ValueError(f"start {start!r} is not an ISO-8601 timestamp")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)
