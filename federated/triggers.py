"""When the coordinator starts a federation: on a schedule, and when sites report drift.

Pure decisions, so the rules are testable without processes:

* **drift**: at least ``min_sites`` sites have reported ``drifted`` (their flagged rate reached
  ``flagged_ratio`` x the served version's calibrated target, :mod:`federated.drift`) without
  a break for ``drift_sustain_s``, the latest such report *after* the last run ended and
  within ``report_max_age_s``. Sustained: a run needs the new behaviour in the sites' windows
  to learn it, and a burst that ends by itself needs no run; after a run, reports about the
  replaced version do not count;
* **schedule**: ``interval_s`` since the last run started (or since the coordinator started);
* neither within ``cooldown_s`` of the last run's end (a new version needs time to be judged).

>>> rules = TriggerConfig(schedule_interval_s=3600, min_sites=1, cooldown_s=60,
...                       drift_sustain_s=30)
>>> reports = {"alpha": Report(received=1000.0, drifted=True, drifted_since=950.0)}
>>> due(1010.0, started=0.0, last_start=None, last_end=None, reports=reports, rules=rules)
'drift: alpha'
>>> due(1010.0, started=0.0, last_start=900.0, last_end=990.0, reports=reports, rules=rules)
>>> due(4600.0, started=0.0, last_start=900.0, last_end=990.0, reports={}, rules=rules)
'schedule'
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from morpheus_ext.config_io import StrictModel


class TriggerConfig(StrictModel):
    schedule_interval_s: float | None = Field(default=86_400.0, gt=0)
    """A run at least this often (null: only on drift)."""
    min_sites: int = Field(default=1, ge=1)
    """Drift reports from this many sites start a run."""
    report_max_age_s: float = Field(default=900.0, gt=0)
    cooldown_s: float = Field(default=300.0, ge=0)
    """No run within this long of the last one's end."""
    drift_sustain_s: float = Field(default=900.0, ge=0)
    """A site counts as drifting once its reports have said so for this long without a break."""


@dataclass(frozen=True)
class Report:
    """The latest drift report of a site, as the coordinator received it."""

    received: float
    drifted: bool
    drifted_since: float | None = None
    """When the site's current unbroken run of drifted reports began (None: not drifting)."""

    def after(self, received: float, drifted: bool) -> Report:
        """The site's state once a new report arrives."""
        since = (self.drifted_since or received) if drifted else None
        return Report(received, drifted, since)


def due(
    now: float,
    *,
    started: float,
    last_start: float | None,
    last_end: float | None,
    reports: dict[str, Report],
    rules: TriggerConfig,
) -> str | None:
    """Why a run should start now (``"drift: <sites>"`` or ``"schedule"``), else ``None``."""
    if last_end is not None and now - last_end < rules.cooldown_s:
        return None
    if last_start is not None and (last_end is None or last_end < last_start):
        return None  # a run is in progress
    fresh = [
        site
        for site, r in sorted(reports.items())
        if r.drifted
        and r.drifted_since is not None
        and now - r.drifted_since >= rules.drift_sustain_s
        and now - r.received <= rules.report_max_age_s
        and (last_end is None or r.received > last_end)
    ]
    if len(fresh) >= rules.min_sites:
        return "drift: " + ", ".join(fresh)
    since = last_start if last_start is not None else started
    if rules.schedule_interval_s is not None and now - since >= rules.schedule_interval_s:
        return "schedule"
    return None
