"""An organisation-wide change of behaviour, injected into generated traffic.

What the loop must learn rather than alert on: a new SaaS app (default ``ai-assistant``) that
a share of the users (a third by default) adopt at once. From ``start`` on, each auth event of
an adopting user goes to the new app with probability ``share`` (same user, device, country
and method mix as their other SaaS logins: only the destination is new). The rows stay normal
(``label`` 0); ``drifted`` marks them, for measuring only (no spec uses it as a feature).

The served model has never seen the app, so it flags these logins (an unseen value in
``dst_app``): its flagged rate climbs to several times its calibrated target, which is the
drift signal (:mod:`federated.drift`).

>>> from synthetic import SyntheticConfig, generate
>>> events = generate(SyntheticConfig(n_events=3000, seed=1, anomaly_rate=0.0))
>>> drifted = adopt_new_app(events, start="2026-11-01T00:00:00Z", seed=0)
>>> int(drifted["drifted"].sum()) > 0, set(drifted.loc[drifted["drifted"], "dst_app"])
(True, {'ai-assistant'})
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEW_APP = "ai-assistant"


def adopt_new_app(
    events: pd.DataFrame,
    start: str,
    app: str = NEW_APP,
    users_fraction: float = 1 / 3,
    share: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """A copy of ``events`` where, from ``start``, adopting users' auth events move to ``app``."""
    rng = np.random.default_rng(seed)
    out = events.copy()
    users = np.array(sorted(u for u in out["user"].dropna().unique()))
    adopters = set(rng.choice(users, size=round(len(users) * users_fraction), replace=False))
    times = pd.to_datetime(out["timestamp"], utc=True, format="ISO8601", errors="coerce")
    eligible = (
        (out["event_type"] == "auth")
        & out["user"].isin(adopters)
        & (times >= pd.Timestamp(start))
        & (out["label"] == 0)
    ).to_numpy()
    moved = eligible & (rng.random(len(out)) < share)
    out["drifted"] = moved
    out.loc[moved, "dst_app"] = app
    if "dst_host" in out:
        out.loc[moved, "dst_host"] = f"{app}.saas.example"
    return out
