"""Labelled auth attacks: brute force, impossible travel, unusual hour, new device."""

from __future__ import annotations

import numpy as np

from synthetic.catalogue import (
    _HOUR_MS,
    _INTERNET_FACING_APPS,
    _N_NORMAL_DEVICES,
    _PASSWORD,
    _RARE_DEVICE_HOSTNAME,
    _RARE_OCTETS,
    APPS,
    DESK_DEVICES,
    DEVICE_USER_AGENTS,
    DEVICES,
    NORMAL_APPS,
    NORMAL_FAILURE_RATE,
    RARE_COUNTRIES,
    RARE_DEVICES,
    SCRIPTED_USER_AGENTS,
    SITE_CATALOGUE,
)
from synthetic.normal_traffic import (
    _auth_block,
    _Block,
    _Ctx,
    _methods,
    _result,
    _user_times,
    _usual_device_cols,
)
from synthetic.sampling import _categorical, _cgnat_ips, _ips, _pick, _public_ips, _row_cum
from synthetic.schema import IntArr, ObjArr
from synthetic.timelines import _burst_sizes, _burst_times, _local_to_utc, _wrap


# --- auth anomalies ---------------------------------------------------------------------------
def _brute_force(ctx: _Ctx, n: int) -> _Block:
    """Bursts of 5-20 failed logins for one user within seconds.

    Population mode: one foreign IP, rare country, password, scripted user agent.
    Entity-relative mode: the user's own device/country/app; only the burst rate is odd.
    """
    rng, pop = ctx.rng, ctx.pop
    sizes = _burst_sizes(rng, n, 5, 20)
    burst = np.repeat(np.arange(sizes.size), sizes)
    target = _categorical(rng, pop.users.activity, sizes.size)
    u = target[burst]
    t = _burst_times(rng, ctx.tl, sizes, (300.0, 4000.0))
    failure = np.full(n, "failure", dtype=object)
    if ctx.config.entity_relative:
        app = pop.users.apps.items[
            target, _pick(rng, pop.users.apps.cum, target, pop.users.apps.n_valid)
        ]
        dev = {k: v[burst] for k, v in _usual_device_cols(rng, pop.users, target).items()}
        return _auth_block(
            pop, "brute_force", u, t, app[burst], _methods(rng, app)[burst], result=failure, **dev
        )
    app = np.array(_INTERNET_FACING_APPS)[rng.integers(0, 2, size=sizes.size)][burst]
    return _auth_block(
        pop,
        "brute_force",
        u,
        t,
        app,
        np.full(n, _PASSWORD),
        result=failure,
        src_ip=_public_ips(rng, sizes.size, _RARE_OCTETS)[burst],
        src_host=np.full(n, "external", dtype=object),
        country=rng.choice(np.array(RARE_COUNTRIES, dtype=object), size=sizes.size)[burst],
        device=np.full(n, "unknown", dtype=object),
        user_agent=rng.choice(np.array(SCRIPTED_USER_AGENTS, dtype=object), size=sizes.size)[burst],
    )


def _other_common_country(ctx: _Ctx, home: ObjArr) -> ObjArr:
    """A country frequent in normal logins but not the user's home (weighted by frequency)."""
    countries, counts = np.unique(ctx.auth.cols["country"].astype(str), return_counts=True)
    if countries.size == 0:
        countries, counts = np.array([SITE_CATALOGUE[0][0]]), np.array([1])
    weights = np.where(countries[None, :] == home.astype(str)[:, None], 0.0, counts[None, :])
    fallback = np.array(
        [SITE_CATALOGUE[(i + 1) % len(SITE_CATALOGUE)][0] for i in range(len(SITE_CATALOGUE))]
    )
    cat_idx = {c: i for i, (c, _) in enumerate(SITE_CATALOGUE)}
    alt = np.array([fallback[cat_idx.get(str(c), 0)] for c in home], dtype=object)
    pick = _pick(ctx.rng, _row_cum(weights.astype(np.float64)), np.arange(home.size))
    chosen = countries.astype(object)[pick]
    return np.where(weights.sum(axis=1) > 0, chosen, alt).astype(object)


def _travel_refs(ctx: _Ctx, n: int) -> tuple[IntArr, IntArr]:
    """(user, time) of successful home logins that an impossible-travel login will follow."""
    rng = ctx.rng
    ok = np.flatnonzero(
        (ctx.auth.cols["result"] == "success")
        & (ctx.auth.t < ctx.tl.start_ms + ctx.tl.span_ms - _HOUR_MS)
    )
    if ok.size == 0:  # no normal logins to anchor on: invent the anchor times
        u = _categorical(rng, ctx.pop.users.activity, n)
        return u, _user_times(rng, ctx.tl, ctx.pop.users, u)
    ref = ok[rng.integers(ok.size, size=n)]
    return ctx.auth.refs["user"][ref], ctx.auth.t[ref]


def _impossible_travel(ctx: _Ctx, n: int) -> _Block:
    """A successful login from far away minutes after a normal login from home.

    Population mode: a rare country and attacker IP. Entity-relative mode: a country common at
    another site and a mobile-carrier-shaped IP, i.e. values seen every day, just not for them.
    """
    rng, pop = ctx.rng, ctx.pop
    u, ref_t = _travel_refs(ctx, n)
    t = _wrap(ctx.tl, ref_t + rng.integers(2 * 60_000, 40 * 60_000, size=n))
    app = pop.users.apps.items[u, _pick(rng, pop.users.apps.cum, u, pop.users.apps.n_valid)]
    dev = _usual_device_cols(rng, pop.users, u)
    if ctx.config.entity_relative:
        country = _other_common_country(ctx, pop.users.country[u])
        src_ip = _cgnat_ips(rng, n)
    else:
        country = rng.choice(np.array(RARE_COUNTRIES, dtype=object), size=n)
        src_ip = _public_ips(rng, n, _RARE_OCTETS)
        dev.update(src_host=np.full(n, "external", dtype=object))
    dev.update(src_ip=src_ip)
    success = np.full(n, "success", dtype=object)
    return _auth_block(
        pop,
        "impossible_travel",
        u,
        t,
        app,
        _methods(rng, app),
        result=success,
        country=country,
        **dev,
    )


def _night_times(ctx: _Ctx, u: IntArr) -> IntArr:
    """01:00-04:59 local time of the user on a random day."""
    day = _categorical(ctx.rng, ctx.tl.day_p, u.size)
    local = ctx.rng.uniform(1.0, 5.0, size=u.size)
    return _local_to_utc(ctx.tl, day, local, ctx.pop.users.tz[u])


def _unusual_hour(ctx: _Ctx, n: int) -> _Block:
    """A day-shift user logging in at 01-05 local.

    Population mode: often to a rare app and/or failing, so the event is rare overall (night
    shift workers make the hour alone common). Entity-relative mode: usual app and device, only
    the hour is new for this user.
    """
    rng, pop = ctx.rng, ctx.pop
    day_users = np.flatnonzero(~pop.users.night)
    pool = day_users if day_users.size else np.arange(pop.users.name.size)
    u = pool[_categorical(rng, pop.users.activity[pool], n)]
    app = pop.users.apps.items[u, _pick(rng, pop.users.apps.cum, u, pop.users.apps.n_valid)]
    failure_p: float = NORMAL_FAILURE_RATE
    if not ctx.config.entity_relative:
        rare = rng.random(n) < 0.5
        app = np.where(rare, rng.integers(len(NORMAL_APPS), len(APPS), size=n), app)
        failure_p = 0.4
    dev = _usual_device_cols(rng, pop.users, u)
    return _auth_block(
        pop,
        "unusual_hour",
        u,
        _night_times(ctx, u),
        app,
        _methods(rng, app),
        result=_result(rng, n, failure_p),
        **dev,
    )


def _common_new_devices(ctx: _Ctx, u: IntArr) -> IntArr:
    """A device kind frequent in the population (>= 3% of logins) that the user never uses."""
    devs = ctx.auth.cols["device"].astype(str)
    freq = np.array([np.mean(devs == d) if devs.size else 0.0 for d in DEVICES[:_N_NORMAL_DEVICES]])
    freq = np.where(freq >= 0.03, freq, 0.0) if (freq >= 0.03).any() else np.ones_like(freq)
    owned = np.zeros((u.size, _N_NORMAL_DEVICES), dtype=bool)
    items, n_valid = ctx.pop.users.devices.items[u], ctx.pop.users.devices.n_valid[u]
    for slot in range(items.shape[1]):
        rows = np.flatnonzero(slot < n_valid)
        owned[rows, items[rows, slot]] = True
    weights = np.where(owned, 0.0, freq[None, :])
    weights[weights.sum(axis=1) == 0] = freq  # owns every common kind: reuse one
    return _pick(ctx.rng, _row_cum(weights), np.arange(u.size))


def _top_user_agents(ctx: _Ctx) -> ObjArr:
    """Per device kind, its most frequent user agent in normal logins (catalogue's first if unseen).

    Keeps an entity-relative new device's user agent as common as the device kind itself.
    """
    top = np.array([DEVICE_USER_AGENTS[d][0] for d in DEVICES], dtype=object)
    devices = ctx.auth.cols["device"].astype(str)
    agents = ctx.auth.cols["user_agent"].astype(str)
    for i, device in enumerate(DEVICES):
        values, counts = np.unique(agents[devices == device], return_counts=True)
        if values.size:
            top[i] = values[np.argmax(counts)]
    return top


def _new_device_entity(ctx: _Ctx, u: IntArr) -> dict[str, ObjArr]:
    """Columns for a login from a common device kind the user has never used."""
    rng, pop = ctx.rng, ctx.pop
    dev = _common_new_devices(ctx, u)
    ua = _top_user_agents(ctx)[dev]
    mobile = dev >= len(DESK_DEVICES)
    ws = np.flatnonzero(pop.hosts.role == 0)
    other_ws = ws[rng.integers(ws.size, size=u.size)]
    mob_host = np.array([f"mob-{name}-3" for name in pop.users.name[u]], dtype=object)
    return {
        "device": np.array(DEVICES, dtype=object)[dev],
        "user_agent": ua,
        "src_ip": np.where(mobile, _cgnat_ips(rng, u.size), pop.hosts.ip[other_ws]),
        "src_host": np.where(mobile, mob_host, pop.hosts.name[other_ws]),
    }


def _new_device_population(ctx: _Ctx, u: IntArr) -> dict[str, ObjArr]:
    """Columns for a login from a device nobody in the company uses (kali, headless linux)."""
    rng, pop = ctx.rng, ctx.pop
    dev = rng.choice(np.array(RARE_DEVICES, dtype=object), size=u.size)
    site = pop.users.site[u]
    octets = rng.integers(1, 255, size=u.size)
    return {
        "device": dev,
        "user_agent": np.array([DEVICE_USER_AGENTS[d][0] for d in dev], dtype=object),
        "src_ip": _ips([(10, int(s), 99, int(o)) for s, o in zip(site, octets, strict=True)]),
        "src_host": np.array([_RARE_DEVICE_HOSTNAME[d] for d in dev], dtype=object),
    }


def _new_device(ctx: _Ctx, n: int) -> _Block:
    """A login from a device the user (population mode: anyone) has never used."""
    rng, pop = ctx.rng, ctx.pop
    u = _categorical(rng, pop.users.activity, n)
    app = pop.users.apps.items[u, _pick(rng, pop.users.apps.cum, u, pop.users.apps.n_valid)]
    if ctx.config.entity_relative:
        cols = _new_device_entity(ctx, u)
        failure_p = NORMAL_FAILURE_RATE
    else:
        cols = _new_device_population(ctx, u)
        rare = rng.random(n) < 0.5
        app = np.where(rare, rng.integers(len(NORMAL_APPS), len(APPS), size=n), app)
        failure_p = 0.1
    return _auth_block(
        pop,
        "new_device",
        u,
        _user_times(rng, ctx.tl, pop.users, u),
        app,
        _methods(rng, app),
        result=_result(rng, n, failure_p),
        **cols,
    )
