"""Labelled multi-site campaigns: the same attacker infrastructure hitting several sites.

Opt-in (``anomaly_kinds: [..., campaign]``). A campaign is one attacker's kit: a couple of
public source IPs, one scripted user agent and one rare country, used within a few hours
against users at 2-3 sites (password spraying against the internet-facing apps: mostly failed
logins). Each site sees only its own share; only cross-site correlation of the shared
infrastructure (``morpheus_ext/stages/postprocess/correlation.py``) can tell it is one
campaign. Ground truth in a column of its own: ``campaign_id`` (``cmp-<n>``, null on other
events); ``benchmarks/bench_correlation.py`` scores campaign detection against it.

Campaigns are about ``EVENTS_PER_CAMPAIGN`` events each (at least one), spread evenly over
their sites.

>>> from synthetic import SyntheticConfig, generate
>>> df = generate(SyntheticConfig(n_events=20_000, anomaly_rate=0.02, seed=3, n_sites=4,
...                               anomaly_kinds=["brute_force", "campaign"]))
>>> camp = df[df["campaign_id"].notna()]
>>> len(camp), int(camp.groupby("campaign_id")["site"].nunique().min()) >= 2
(200, True)
>>> int(camp.groupby("campaign_id")["src_ip"].nunique().max()) <= IPS_PER_CAMPAIGN
True
"""

from __future__ import annotations

import numpy as np

from synthetic.catalogue import (
    _HOUR_MS,
    _INTERNET_FACING_APPS,
    _PASSWORD,
    _RARE_OCTETS,
    RARE_COUNTRIES,
    SCRIPTED_USER_AGENTS,
)
from synthetic.normal_traffic import _auth_block, _Block, _Ctx, _result
from synthetic.sampling import _categorical, _public_ips

EVENTS_PER_CAMPAIGN = 40
CAMPAIGN_HOURS = 3.0
"""A campaign's events fall within this many hours of its start."""
IPS_PER_CAMPAIGN = 2


def _campaign(ctx: _Ctx, n: int) -> _Block:
    """``n`` logins from a few campaigns' infrastructure, each at 2-3 sites (1 if one site)."""
    rng, pop, tl = ctx.rng, ctx.pop, ctx.tl
    n_campaigns = max(1, round(n / EVENTS_PER_CAMPAIGN))
    camp = np.sort(np.arange(n) % n_campaigns)  # event -> campaign, contiguous
    n_sites = pop.sites.n
    span = int(CAMPAIGN_HOURS * _HOUR_MS)
    u = np.zeros(n, dtype=np.int64)
    t = np.zeros(n, dtype=np.int64)
    src_ip = np.empty(n, dtype=object)
    ua = np.empty(n, dtype=object)
    country = np.empty(n, dtype=object)
    for c in range(n_campaigns):
        rows = np.flatnonzero(camp == c)
        k = min(n_sites, int(rng.integers(2, 4)))
        sites = rng.choice(n_sites, size=k, replace=False)
        site_of = sites[np.arange(rows.size) % k]
        for s in sites:
            at = rows[site_of == s]
            pool = np.flatnonzero(pop.users.site == s)
            if pool.size == 0:
                pool = np.arange(pop.users.name.size)
            u[at] = pool[_categorical(rng, pop.users.activity[pool], at.size)]
        start = tl.start_ms + int(rng.integers(0, max(1, tl.span_ms - span)))
        t[rows] = np.sort(start + rng.integers(0, span, size=rows.size))
        ips = _public_ips(rng, IPS_PER_CAMPAIGN, _RARE_OCTETS)
        src_ip[rows] = ips[rng.integers(0, IPS_PER_CAMPAIGN, size=rows.size)]
        ua[rows] = SCRIPTED_USER_AGENTS[int(rng.integers(len(SCRIPTED_USER_AGENTS)))]
        country[rows] = RARE_COUNTRIES[int(rng.integers(len(RARE_COUNTRIES)))]
    app = np.array(_INTERNET_FACING_APPS)[rng.integers(0, 2, size=n)]
    return _auth_block(
        pop,
        "campaign",
        u,
        t,
        app,
        np.full(n, _PASSWORD),
        result=_result(rng, n, 0.85),
        src_ip=src_ip,
        src_host=np.full(n, "external", dtype=object),
        country=country,
        device=np.full(n, "unknown", dtype=object),
        user_agent=ua,
        campaign_id=np.array([f"cmp-{c}" for c in camp], dtype=object),
    )
