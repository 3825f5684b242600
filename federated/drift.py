"""The drift signal a site's sidecar reports: is the served model flagging far more of this
site's recent traffic than it was calibrated to?

Every served version carries its calibration: a threshold set so that ``target_fpr`` of normal
traffic scores above it (the manifest's ``calibration.target_fpr``, 1% by default). Attacks are
rare, so on a healthy stream the share of events the served version flags stays near that
target. The signal is the ratio

    flagged rate over the last ``hours`` (events scored by the *served* version only)
    ---------------------------------------------------------------------------------
                          the version's calibrated target_fpr

and a site reports drift when it reaches ``flagged_ratio`` (3x by default) on at least
``min_rows`` events. An organisation-wide change of behaviour (a new app or egress country
adopted by a third of users) drives it to 10-30x within the hour; a rare attack campaign moves
it little (and is what the window's trim keeps out of training). Events scored by an older
version are not counted, so a switch to a new version starts a fresh measurement. Only these
aggregates leave the site (never an event): site name, version, row count, rates, score median.

>>> import numpy as np, pandas as pd
>>> window = pd.DataFrame({"score": np.r_[np.zeros(900), np.ones(100) * 5],
...                        "threshold": 1.0, "model_version": 2})
>>> signal(window, served=2, target_fpr=0.01, config=DriftConfig())
(0.1, 10.0, True)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from morpheus_ext.config_io import StrictModel
from morpheus_ext.model_repository import AUTOENCODER, ModelRepository, served_version
from morpheus_ext.stages.output.training_window import read_window


class DriftConfig(StrictModel):
    hours: float = Field(default=1.0, gt=0)
    """How far back the signal looks."""
    min_rows: int = Field(default=500, ge=1)
    """Fewer events scored by the served version: no verdict."""
    flagged_ratio: float = Field(default=3.0, gt=1)
    """Flagged rate / calibrated target at which the site reports drift."""


def signal(
    window: pd.DataFrame, served: int, target_fpr: float, config: DriftConfig
) -> tuple[float, float, bool]:
    """(flagged rate, ratio to the target, drifted) over the served version's rows."""
    rows = window[window["model_version"] == served]
    if len(rows) < config.min_rows:
        return float("nan"), float("nan"), False
    flagged = float(np.mean(rows["score"].to_numpy() > rows["threshold"].to_numpy()))
    ratio = flagged / target_fpr
    return flagged, ratio, ratio >= config.flagged_ratio


def measure(
    site: str,
    window_dir: Path,
    repository: Path,
    config: DriftConfig,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report a sidecar sends: the signal for the version its repository serves."""
    now = now or datetime.now(UTC)
    served = served_version(repository)
    manifest = ModelRepository(repository).manifest(AUTOENCODER, served)
    target = float((manifest.get("calibration") or {}).get("target_fpr", 0.01))
    window = read_window(
        window_dir, hours=config.hours, now=now, columns=("score", "threshold", "model_version")
    )
    rows = window[window["model_version"] == served]
    flagged, ratio, drifted = signal(window, served, target, config)
    return {
        "site": site,
        "served_version": served,
        "rows": len(rows),
        "flagged_rate": None if np.isnan(flagged) else flagged,
        "target_fpr": target,
        "ratio": None if np.isnan(ratio) else ratio,
        "drifted": drifted,
        "median_score": float(rows["score"].median()) if len(rows) else None,
        "hours": config.hours,
        "at": now.isoformat(timespec="seconds"),
    }
