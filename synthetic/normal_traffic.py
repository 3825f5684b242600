"""Normal traffic: auth events and netflow records drawn from each entity's habits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthetic.catalogue import (
    _METHOD_CUM,
    _PORT_EXT,
    _PORT_IN_RATIO,
    _PORT_OUT,
    _PORT_PROTO,
    _PORT_SCALED,
    _PORT_SESSION,
    _PORT_SIGMA,
    _ROLE_IN,
    _ROLE_UNIFORM_TIME,
    _TCP_FLAG_P,
    _TCP_FLAGS,
    APPS,
    AUTH_METHODS,
    DEVICES,
    NORMAL_FAILURE_RATE,
    PORTS,
)
from synthetic.config import SyntheticConfig
from synthetic.population import _Hosts, _Population, _Users
from synthetic.sampling import _categorical, _pick
from synthetic.schema import FloatArr, IntArr, ObjArr, Rng
from synthetic.timelines import _shift_times, _Timeline, _uniform_times


# --- event blocks -----------------------------------------------------------------------------
@dataclass
class _Block:
    """A batch of same-type, same-kind events as column arrays plus int64 ms timestamps."""

    event_type: str
    kind: str
    t: IntArr
    cols: dict[str, NDArray[Any]]
    refs: dict[str, NDArray[Any]] = field(default_factory=dict)  # internal indices, not emitted

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass
class _Ctx:
    """Shared state for anomaly generators: config, rng, population and the normal events."""

    config: SyntheticConfig
    rng: Rng
    tl: _Timeline
    pop: _Population
    auth: _Block
    net: _Block


def _user_times(rng: Rng, tl: _Timeline, users: _Users, u: IntArr) -> IntArr:
    """Login times in each user's own shift and timezone."""
    return _shift_times(rng, tl, users.center[u], users.spread[u], users.tz[u])


def _auth_block(
    pop: _Population, kind: str, u: IntArr, t: IntArr, app: IntArr, method: IntArr, **cols: Any
) -> _Block:
    """Assemble auth columns; anything not overridden in `cols` is the user's usual value."""
    site = pop.users.site[u]
    base: dict[str, NDArray[Any]] = {
        "site": pop.sites.name[site],
        "user": pop.users.name[u],
        "dst_app": np.array(APPS, dtype=object)[app],
        "dst_host": pop.app_host[app, site],
        "auth_method": np.array(AUTH_METHODS, dtype=object)[method],
        "country": pop.users.country[u],
    }
    base.update({k: np.asarray(v, dtype=object) for k, v in cols.items()})
    return _Block("auth", kind, t, base, {"user": u})


def _result(rng: Rng, n: int, failure_p: float | FloatArr) -> ObjArr:
    """ "success"/"failure" strings with the given failure probability."""
    return np.where(rng.random(n) < failure_p, "failure", "success").astype(object)


def _methods(rng: Rng, app: IntArr) -> IntArr:
    """Auth method per event from its app's method mix."""
    return _pick(rng, _METHOD_CUM, app)


def _usual_device_cols(rng: Rng, users: _Users, u: IntArr) -> dict[str, ObjArr]:
    """Device, user agent, source IP and host of one of each user's own devices."""
    slot = _pick(rng, users.devices.cum, u, users.devices.n_valid)
    return {
        "device": np.array(DEVICES, dtype=object)[users.devices.items[u, slot]],
        "user_agent": users.dev_ua[u, slot],
        "src_ip": users.dev_ip[u, slot],
        "src_host": users.dev_host[u, slot],
    }


def _normal_auth(ctx_rng: Rng, tl: _Timeline, pop: _Population, n: int) -> _Block:
    """Everyday logins: usual apps/devices/hours, ~3% failures (typos)."""
    users = pop.users
    u = _categorical(ctx_rng, users.activity, n)
    app = users.apps.items[u, _pick(ctx_rng, users.apps.cum, u, users.apps.n_valid)]
    dev = _usual_device_cols(ctx_rng, users, u)
    t = _user_times(ctx_rng, tl, users, u)
    result = _result(ctx_rng, n, NORMAL_FAILURE_RATE)
    return _auth_block(pop, "none", u, t, app, _methods(ctx_rng, app), result=result, **dev)


@dataclass(frozen=True)
class _Volumes:
    """Byte/packet/duration columns of a batch of flows."""

    bytes_out: IntArr
    bytes_in: IntArr
    packets: IntArr
    duration_ms: FloatArr


def _tcp_volumes(rng: Rng, bytes_out: FloatArr, bytes_in: FloatArr, session: FloatArr) -> _Volumes:
    """Packets from a per-flow MSS, duration from RTT + transfer time + session idle time."""
    bo = np.maximum(np.round(bytes_out), 40).astype(np.int64)
    bi = np.maximum(np.round(bytes_in), 40).astype(np.int64)
    mss = rng.uniform(900.0, 1460.0, size=bo.size)
    packets = (np.ceil(bo / mss) + np.ceil(bi / mss) + 3).astype(np.int64)
    throughput = rng.lognormal(math.log(2e6), 0.8, size=bo.size)  # bytes/s
    idle = np.where(session > 0, rng.lognormal(np.log(np.maximum(session, 1.0)), 1.0), 0.0)
    rtt = rng.lognormal(math.log(30.0), 0.6, size=bo.size)
    duration = np.round(rtt + (bo + bi) / throughput * 1000.0 + idle, 3)
    return _Volumes(bo, bi, packets, duration)


def _udp_volumes(rng: Rng, bytes_out: FloatArr, bytes_in: FloatArr) -> _Volumes:
    """Request/response datagrams: a packet per 1200 bytes each way, short durations."""
    bo = np.maximum(np.round(bytes_out), 28).astype(np.int64)
    bi = np.maximum(np.round(bytes_in), 28).astype(np.int64)
    packets = (np.ceil(bo / 1200) + np.ceil(bi / 1200)).astype(np.int64)
    duration = np.round(rng.lognormal(math.log(15.0), 0.7, size=bo.size), 3)
    return _Volumes(bo, bi, packets, duration)


def _icmp_volumes(rng: Rng, n: int) -> _Volumes:
    """Pings: 1-4 echo requests of 64 bytes, usually answered."""
    packets = rng.integers(1, 5, size=n).astype(np.int64)
    bo = 64 * packets
    bi = np.where(rng.random(n) < 0.9, bo, 0).astype(np.int64)
    duration = np.round(packets * rng.lognormal(math.log(15.0), 0.5, size=n), 3)
    return _Volumes(bo, bi, packets + (bi > 0) * packets, duration)


def _flow_volumes(rng: Rng, pop: _Population, h: IntArr, pi: IntArr, proto: ObjArr) -> _Volumes:
    """Log-normal bytes scaled by host size, port and site volume; packets/duration to match."""
    scale = np.where(_PORT_SCALED[pi], pop.hosts.factor[h], 1.0)
    site_vol = pop.sites.volume[pop.hosts.site[h]]
    bo = _PORT_OUT[pi] * scale * site_vol * rng.lognormal(0.0, _PORT_SIGMA[pi])
    in_ratio = _PORT_IN_RATIO[pi] * np.where(_PORT_SCALED[pi], _ROLE_IN[pop.hosts.role[h]], 1.0)
    bi = bo * in_ratio * rng.lognormal(0.0, 0.6, size=h.size)
    tcp = _tcp_volumes(rng, bo, bi, _PORT_SESSION[pi])
    udp = _udp_volumes(rng, bo, bi)
    icmp = _icmp_volumes(rng, h.size)
    is_udp, is_icmp = proto == "udp", proto == "icmp"

    def sel(name: str) -> NDArray[Any]:
        t, u, i = (getattr(v, name) for v in (tcp, udp, icmp))
        return np.where(is_icmp, i, np.where(is_udp, u, t))

    return _Volumes(sel("bytes_out"), sel("bytes_in"), sel("packets"), sel("duration_ms"))


def _protocols(rng: Rng, pi: IntArr) -> ObjArr:
    """Protocol of the port; 10% of DNS goes over tcp (large answers, zone transfers)."""
    proto = _PORT_PROTO[pi].copy()
    proto[(PORTS[pi] == 53) & (rng.random(pi.size) < 0.1)] = "tcp"
    return proto


def _tcp_flags(rng: Rng, proto: ObjArr) -> ObjArr:
    """Cumulative flags for tcp flows (mostly PA/FA/SA), "" for udp and icmp."""
    flags = np.array(_TCP_FLAGS, dtype=object)[_categorical(rng, _TCP_FLAG_P, proto.size)]
    return np.where(proto == "tcp", flags, "").astype(object)


def _src_ports(rng: Rng, proto: ObjArr) -> IntArr:
    """Ephemeral source ports (IANA range); 0 for icmp."""
    ports = rng.integers(49152, 65536, size=proto.size).astype(np.int64)
    return np.where(proto == "icmp", 0, ports)


def _normal_dst_ips(rng: Rng, pop: _Population, h: IntArr, pi: IntArr) -> ObjArr:
    """Popular external services for web-ish ports, the site's internal servers otherwise."""
    ext = rng.random(h.size) < _PORT_EXT[pi]
    ext_ip = pop.ext_ip[_categorical(rng, pop.ext_p, h.size)]
    svc = pop.svc_ip[pop.hosts.site[h], 2 * pi + rng.integers(0, 2, size=h.size)]
    return np.where(ext, ext_ip, svc).astype(object)


def _net_block(
    pop: _Population, kind: str, h: IntArr, t: IntArr, vol: _Volumes, **cols: Any
) -> _Block:
    """Assemble netflow columns for flows sourced at hosts `h`."""
    base: dict[str, NDArray[Any]] = {
        "site": pop.sites.name[pop.hosts.site[h]],
        "src_ip": pop.hosts.ip[h],
        "src_host": pop.hosts.name[h],
        "bytes_out": vol.bytes_out,
        "bytes_in": vol.bytes_in,
        "packets": vol.packets,
        "duration_ms": vol.duration_ms,
    }
    base.update({k: np.asarray(v) for k, v in cols.items()})
    return _Block("netflow", kind, t, base, {"host": h})


def _host_times(rng: Rng, tl: _Timeline, hosts: _Hosts, h: IntArr) -> IntArr:
    """Workstations follow office hours, servers are busy around the clock."""
    office = _shift_times(rng, tl, hosts.center[h], np.full(h.size, 3.0), hosts.tz[h])
    anytime = _uniform_times(rng, tl, h.size)
    return np.where(rng.random(h.size) < _ROLE_UNIFORM_TIME[hosts.role[h]], anytime, office)


def _normal_netflow(rng: Rng, tl: _Timeline, pop: _Population, n: int) -> _Block:
    """Everyday flows: hosts to their usual ports, log-normal volumes."""
    hosts = pop.hosts
    h = _categorical(rng, hosts.activity, n)
    pi = hosts.ports.items[h, _pick(rng, hosts.ports.cum, h, hosts.ports.n_valid)]
    proto = _protocols(rng, pi)
    return _net_block(
        pop,
        "none",
        h,
        _host_times(rng, tl, hosts, h),
        _flow_volumes(rng, pop, h, pi, proto),
        dst_ip=_normal_dst_ips(rng, pop, h, pi),
        src_port=_src_ports(rng, proto),
        dst_port=PORTS[pi],
        protocol=proto,
        tcp_flags=_tcp_flags(rng, proto),
    )
