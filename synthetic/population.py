"""The population: sites, hosts with roles, users with their habits (devices, apps, hours)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.catalogue import (
    _APP_BASE,
    _DESK_BASE,
    _HTTPS,
    _MOB_BASE,
    _N_EXTERNAL,
    _NORMAL_OCTETS,
    _PORT_BASE,
    _ROLE_ACTIVITY,
    _ROLE_FACTOR,
    _ROLE_P,
    _UA_COUNT,
    _UA_TABLE,
    APPS,
    DESK_DEVICES,
    NIGHT_SHIFT_SHARE,
    PORTS,
    ROLES,
    SITE_CATALOGUE,
)
from synthetic.config import SyntheticConfig
from synthetic.sampling import (
    _categorical,
    _cgnat_ips,
    _ips,
    _mix,
    _pick,
    _profiles,
    _public_ips,
    _row_cum,
    _topk,
    _usual_set,
    _UsualSet,
)
from synthetic.schema import BoolArr, FloatArr, IntArr, ObjArr, Rng


# --- population -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sites:
    """Per-site country, timezone and the (heterogeneity-blended) category mixes."""

    name: ObjArr
    country: ObjArr
    tz: FloatArr
    app_p: FloatArr
    desk_p: FloatArr
    mob_p: FloatArr
    port_p: FloatArr
    volume: FloatArr  # multiplicative traffic-volume shift

    @property
    def n(self) -> int:
        """Number of sites."""
        return int(self.name.size)


def _build_sites(config: SyntheticConfig, rng: Rng) -> _Sites:
    """Sites with their own country/timezone and blended app, device, port and volume mixes."""
    n, h = config.n_sites, config.heterogeneity
    cat = [SITE_CATALOGUE[i % len(SITE_CATALOGUE)] for i in range(n)]
    return _Sites(
        name=np.array([f"site-{i}" for i in range(n)], dtype=object),
        country=np.array([c for c, _ in cat], dtype=object),
        tz=np.array([tz for _, tz in cat]),
        app_p=_mix(rng, _APP_BASE, n, h),
        desk_p=_mix(rng, _DESK_BASE, n, h),
        mob_p=_mix(rng, _MOB_BASE, n, h),
        port_p=_mix(rng, _PORT_BASE, n, h),
        volume=np.exp(h * rng.normal(0.0, 0.8, size=n)),
    )


@dataclass(frozen=True)
class _Hosts:
    """Machines that emit netflow; workstations double as the auth source of desk devices."""

    name: ObjArr
    ip: ObjArr
    site: IntArr
    role: IntArr
    desk: IntArr  # desk-device kind (index into DEVICES) of a workstation
    tz: FloatArr
    center: FloatArr
    factor: FloatArr  # traffic volume relative to an average workstation
    activity: FloatArr  # probability that a flow comes from this host
    ports: _UsualSet  # usual destination ports (indices into PORTS)


def _host_roles(rng: Rng, site: IntArr, n_sites: int) -> IntArr:
    """Mostly workstations; the first host of every site is forced to be one so users can log in."""
    role = _categorical(rng, _ROLE_P, site.size)
    for s in range(n_sites):
        members = np.flatnonzero(site == s)
        if members.size:
            role[members[0]] = 0
    return role


def _build_hosts(config: SyntheticConfig, rng: Rng, sites: _Sites) -> _Hosts:
    """Hosts spread over sites with roles, addresses, volumes and usual ports."""
    n = config.n_hosts
    idx = np.arange(n)
    site = rng.integers(sites.n, size=n).astype(np.int64)
    role = _host_roles(rng, site, sites.n)
    prof = _profiles(rng, site, sites.n, config.heterogeneity)
    desk = _pick(rng, np.cumsum(sites.desk_p, axis=1), site)
    ports = _usual_set(rng, sites.port_p[site], 4, 7)
    big = role == 2  # backup/file servers push most of their bytes over https (70% of flows)
    ports.items[big, 0] = _HTTPS
    ports.cum[big] = 0.7 + 0.3 * ports.cum[big]
    factor = _ROLE_FACTOR[role] * rng.lognormal(0.0, np.where(big, 0.3, 0.5))
    activity = _ROLE_ACTIVITY[role] * rng.lognormal(0.0, 0.7, size=n)
    prefix = np.array(ROLES, dtype=object)[role]
    return _Hosts(
        name=np.array([f"{p}-{i:04d}" for p, i in zip(prefix, idx, strict=True)], dtype=object),
        ip=_ips(
            [
                (10, int(s), 1 + int(i) // 250, int(i) % 250 + 1)
                for s, i in zip(site, idx, strict=True)
            ]
        ),
        site=site,
        role=role,
        desk=desk,
        tz=sites.tz[prof],
        center=rng.uniform(11.0, 15.0, size=n),
        factor=factor,
        activity=activity / activity.sum(),
        ports=ports,
    )


@dataclass(frozen=True)
class _Users:
    """People who log in: home site/country/timezone, shift, favourite apps and devices."""

    name: ObjArr
    site: IntArr
    country: ObjArr
    tz: FloatArr
    night: BoolArr
    center: FloatArr  # usual local hour of activity
    spread: FloatArr
    activity: FloatArr
    apps: _UsualSet
    devices: _UsualSet  # slot 0: desk device (a workstation), slots 1-2: mobiles
    dev_ip: ObjArr  # (users, 3)
    dev_host: ObjArr
    dev_ua: ObjArr


def _assign_workstations(rng: Rng, site: IntArr, hosts: _Hosts) -> IntArr:
    """Each user's desk machine: a workstation of their site (shared desks are realistic)."""
    ws_all = np.flatnonzero(hosts.role == 0)
    out = np.empty(site.size, dtype=np.int64)
    for s in np.unique(site):
        members = np.flatnonzero(site == s)
        pool = np.flatnonzero((hosts.role == 0) & (hosts.site == s))
        pool = pool if pool.size else ws_all
        out[members] = pool[rng.integers(pool.size, size=members.size)]
    return out


def _user_devices(rng: Rng, site: IntArr, sites: _Sites, desk: IntArr) -> tuple[_UsualSet, IntArr]:
    """1-3 devices: the workstation's desk kind plus 0-2 mobiles from the site's mobile mix."""
    n = site.size
    mobiles = _topk(rng, sites.mob_p[site], 2) + len(DESK_DEVICES)
    n_valid = 1 + _categorical(rng, np.array([0.35, 0.5, 0.15]), n)
    items = np.column_stack([desk, mobiles]).astype(np.int64)
    weights = np.column_stack([rng.gamma(6.0, 0.5, n), rng.gamma(1.0, 0.5, (n, 2))])
    weights[np.arange(3)[None, :] >= n_valid[:, None]] = 0.0
    return _UsualSet(items, _row_cum(weights), n_valid), n_valid


def _build_users(config: SyntheticConfig, rng: Rng, sites: _Sites, hosts: _Hosts) -> _Users:
    """Users with habits; a few night-shift workers make 01-05 local hours normal for some."""
    n = config.n_users
    width = max(4, len(str(n - 1)))
    names = np.array([f"u{i:0{width}d}" for i in range(n)], dtype=object)
    site = rng.integers(sites.n, size=n).astype(np.int64)
    prof = _profiles(rng, site, sites.n, config.heterogeneity)
    night = rng.random(n) < NIGHT_SHIFT_SHARE
    center = np.where(night, rng.uniform(0.0, 3.0, n), rng.uniform(10.0, 15.0, n))
    activity = rng.lognormal(0.0, 0.8, size=n)
    apps = _usual_set(rng, sites.app_p[site], 3, 6)
    ws = _assign_workstations(rng, site, hosts)
    devices, _ = _user_devices(rng, site, sites, hosts.desk[ws])
    ua_pick = np.floor(rng.random((n, 3)) * _UA_COUNT[devices.items]).astype(np.int64)
    dev_ip = np.column_stack([hosts.ip[ws], _cgnat_ips(rng, n), _cgnat_ips(rng, n)])
    mob = [[f"mob-{u}-1" for u in names], [f"mob-{u}-2" for u in names]]
    return _Users(
        name=names,
        site=site,
        country=sites.country[prof],
        tz=sites.tz[prof],
        night=night,
        center=center,
        spread=rng.uniform(1.2, 2.0, n),
        activity=activity / activity.sum(),
        apps=apps,
        devices=devices,
        dev_ip=dev_ip,
        dev_host=np.column_stack([hosts.name[ws], *(np.array(m, dtype=object) for m in mob)]),
        dev_ua=_UA_TABLE[devices.items, ua_pick],
    )


@dataclass(frozen=True)
class _Population:
    """Everything fixed before events are drawn."""

    sites: _Sites
    hosts: _Hosts
    users: _Users
    ext_ip: ObjArr  # popular external destinations
    ext_p: FloatArr
    svc_ip: ObjArr  # (sites, 2 * ports) internal service endpoints
    app_host: ObjArr  # (apps, sites) auth destination hosts


def _build_population(config: SyntheticConfig, rng: Rng) -> _Population:
    """Sites, hosts, users and the address books they talk to."""
    sites = _build_sites(config, rng)
    hosts = _build_hosts(config, rng, sites)
    users = _build_users(config, rng, sites, hosts)
    ext_p = 1.0 / np.arange(1, _N_EXTERNAL + 1) ** 0.9
    svc = [[(10, s, 0, k + 1) for k in range(2 * PORTS.size)] for s in range(sites.n)]
    svc_ip = np.array([list(_ips(row)) for row in svc], dtype=object)
    app_host = np.array([[f"{a}.s{s}.corp" for s in range(sites.n)] for a in APPS], dtype=object)
    return _Population(
        sites,
        hosts,
        users,
        _public_ips(rng, _N_EXTERNAL, _NORMAL_OCTETS),
        ext_p / ext_p.sum(),
        svc_ip,
        app_host,
    )
