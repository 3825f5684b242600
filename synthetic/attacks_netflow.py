"""Labelled netflow attacks: exfiltration and port scans."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthetic.attacks_auth import _brute_force, _impossible_travel, _new_device, _unusual_hour
from synthetic.catalogue import (
    _HTTPS,
    _PORT_IN_RATIO,
    _PORT_OUT,
    _PORT_SESSION,
    _RARE_OCTETS,
    _ROLE_IN,
    PORTS,
    UNUSUAL_PORTS,
)
from synthetic.normal_traffic import (
    _Block,
    _Ctx,
    _host_times,
    _net_block,
    _src_ports,
    _tcp_volumes,
    _Volumes,
)
from synthetic.population import _Hosts
from synthetic.sampling import _categorical, _public_ips
from synthetic.schema import FloatArr, IntArr, ObjArr, Rng
from synthetic.timelines import _burst_sizes, _burst_times, _uniform_times


# --- netflow anomalies ------------------------------------------------------------------------
def _host_medians(ctx: _Ctx) -> FloatArr:
    """Median normal bytes_out per host (NaN for hosts without flows)."""
    med = np.full(ctx.pop.hosts.name.size, np.nan)
    if len(ctx.net):
        s = pd.Series(ctx.net.cols["bytes_out"].astype(np.float64))
        by_host = s.groupby(ctx.net.refs["host"]).median()
        med[by_host.index.to_numpy()] = by_host.to_numpy()
    return med


def _exfil_hosts(ctx: _Ctx, n: int) -> tuple[IntArr, FloatArr]:
    """Workstations for which 40x their median is a normal big-server volume, and that median."""
    hosts = ctx.pop.hosts
    med = _host_medians(ctx)
    ws = np.flatnonzero((hosts.role == 0) & ~np.isnan(med))
    if ws.size == 0:
        ws = np.flatnonzero(hosts.role == 0)
        med = np.where(np.isnan(med), _PORT_OUT[_HTTPS] * hosts.factor, med)
    big = np.isin(
        ctx.net.refs.get("host", np.zeros(0, dtype=np.int64)), np.flatnonzero(hosts.role == 2)
    )
    big_bytes = ctx.net.cols["bytes_out"][big].astype(np.float64) if len(ctx.net) else np.zeros(0)
    if big_bytes.size >= 10:
        lo, hi = np.quantile(big_bytes, [0.2, 0.8])
        fits = ws[(40 * med[ws] >= lo) & (40 * med[ws] <= hi)]
        ws = (
            fits
            if fits.size
            else ws[np.argsort(np.abs(np.log(40 * med[ws] / np.median(big_bytes))))[:5]]
        )
    chosen = ws[ctx.rng.integers(ws.size, size=n)]
    return chosen, med[chosen]


def _exfil_volumes(rng: Rng, bytes_out: FloatArr, slow: bool) -> _Volumes:
    """Upload-shaped volumes: few bytes back; population-mode uploads are slow and long."""
    n = bytes_out.size
    if slow:
        bi = bytes_out * rng.uniform(0.005, 0.02, size=n)
        vol = _tcp_volumes(rng, bytes_out, bi, np.zeros(n))
        throughput = rng.lognormal(math.log(3e5), 0.5, size=n)
        long = bytes_out / throughput * 1000.0 + rng.lognormal(math.log(120_000), 0.5, size=n)
        return _Volumes(vol.bytes_out, vol.bytes_in, vol.packets, np.round(long, 3))
    bi = bytes_out * _PORT_IN_RATIO[_HTTPS] * _ROLE_IN[2] * rng.lognormal(0.0, 0.6, size=n)
    return _tcp_volumes(rng, bytes_out, bi, np.full(n, _PORT_SESSION[_HTTPS]))


def _exfiltration(ctx: _Ctx, n: int) -> _Block:
    """Large uploads to the internet.

    Population mode: 50-500x the population's median bytes_out (times the site's volume shift
    when above 1), to attacker IPs, long-lived, sometimes on an unusual port.
    Entity-relative mode: 40x this workstation's own median, a volume that big servers send
    every day, to a popular cloud IP on 443.
    """
    rng, pop = ctx.rng, ctx.pop
    if ctx.config.entity_relative:
        h, med = _exfil_hosts(ctx, n)
        vol = _exfil_volumes(rng, 40.0 * med * rng.lognormal(0.0, 0.15, size=n), slow=False)
        dst_ip = pop.ext_ip[_categorical(rng, pop.ext_p, n)]
        dst_port = np.full(n, 443, dtype=np.int64)
        t = _host_times(rng, ctx.tl, pop.hosts, h)
    else:
        ws_srv = np.flatnonzero(pop.hosts.role < 2)
        h = ws_srv[_categorical(rng, pop.hosts.activity[ws_srv], n)]
        pop_median = float(np.median(ctx.net.cols["bytes_out"])) if len(ctx.net) else 1500.0
        factor = np.exp(rng.uniform(math.log(50.0), math.log(500.0), size=n))
        # High-volume sites (heterogeneity) scale up too, so the upload stays rare there as well.
        site_vol = np.maximum(pop.sites.volume[pop.hosts.site[h]], 1.0)
        vol = _exfil_volumes(rng, pop_median * factor * site_vol, slow=True)
        dst_ip = _public_ips(rng, n, _RARE_OCTETS)
        odd = rng.choice(np.array(UNUSUAL_PORTS), size=n)
        dst_port = np.where(rng.random(n) < 0.4, odd, 443).astype(np.int64)
        t = _uniform_times(rng, ctx.tl, n)
    proto = np.full(n, "tcp", dtype=object)
    return _net_block(
        pop,
        "exfiltration",
        h,
        t,
        vol,
        dst_ip=dst_ip,
        src_port=_src_ports(rng, proto),
        dst_port=dst_port,
        protocol=proto,
        tcp_flags=np.full(n, "PA", dtype=object),
    )


def _scan_ports_population(rng: Rng, sizes: IntArr) -> IntArr:
    """Distinct random destination ports per burst, biased to the well-known range."""
    out = [np.zeros(0, dtype=np.int64)]
    for size in sizes.tolist():
        n_low = min(int(rng.binomial(size, 0.6)), 1024)
        low = 1 + rng.choice(1024, size=n_low, replace=False)
        high = 1025 + rng.choice(65536 - 1025, size=size - n_low, replace=False)
        out.append(rng.permutation(np.concatenate([low, high])).astype(np.int64))
    return np.concatenate(out)


def _scan_population(ctx: _Ctx, h: IntArr, sizes: IntArr, burst: IntArr) -> dict[str, Any]:
    """One target, many ports, single 60-byte SYN (or RST) packets with ~0 duration."""
    rng, pop = ctx.rng, ctx.pop
    n = int(sizes.sum())
    targets = np.flatnonzero(pop.hosts.role > 0)
    targets = targets if targets.size else np.arange(pop.hosts.name.size)
    dst = pop.hosts.ip[targets[rng.integers(targets.size, size=sizes.size)]][burst]
    reset = rng.random(n) < 0.15
    vol = _Volumes(
        bytes_out=rng.choice(np.array([44, 58, 60, 60, 64]), size=n).astype(np.int64),
        bytes_in=np.where(reset, 40, 0).astype(np.int64),
        packets=np.ones(n, dtype=np.int64),
        duration_ms=np.round(rng.uniform(0.0, 0.5, size=n), 3),
    )
    flags = np.where(reset, "R", "S").astype(object)
    return {
        "vol": vol,
        "dst_ip": dst,
        "dst_port": _scan_ports_population(rng, sizes),
        "tcp_flags": flags,
        "gap": (1.0, 40.0),
    }


@dataclass(frozen=True)
class _Endpoints:
    """Internal tcp (site, port, ip) triples seen in normal traffic, with flow counts."""

    site: IntArr
    port: IntArr
    ip: ObjArr
    count: FloatArr


def _internal_endpoints(ctx: _Ctx) -> _Endpoints:
    """Where hosts routinely connect inside each site; entity-relative scans reuse exactly these."""
    net = ctx.net
    frame = pd.DataFrame(
        {
            "site": ctx.pop.hosts.site[net.refs["host"]] if len(net) else np.zeros(0, np.int64),
            "port": net.cols.get("dst_port", np.zeros(0, np.int64)),
            "ip": net.cols.get("dst_ip", np.zeros(0, object)),
            "proto": net.cols.get("protocol", np.zeros(0, object)),
        }
    )
    frame = frame[(frame["proto"] == "tcp") & frame["ip"].astype(str).str.startswith("10.")]
    grouped = frame.groupby(["site", "port", "ip"]).size().reset_index(name="n")
    return _Endpoints(
        grouped["site"].to_numpy(np.int64),
        grouped["port"].to_numpy(np.int64),
        grouped["ip"].to_numpy(object),
        grouped["n"].to_numpy(np.float64),
    )


def _owned_ports(hosts: _Hosts, host: int) -> IntArr:
    """Port numbers a host uses in normal traffic."""
    return PORTS[hosts.ports.items[host, : hosts.ports.n_valid[host]]]


def _scan_targets(ctx: _Ctx, first: IntArr, sizes: IntArr) -> tuple[IntArr, ObjArr]:
    """(dst_port, dst_ip) per scan flow: site endpoints on ports the scanning host never uses."""
    rng, hosts = ctx.rng, ctx.pop.hosts
    ep = _internal_endpoints(ctx)
    ports, ips = [np.zeros(0, np.int64)], [np.zeros(0, object)]
    for host, size in zip(first.tolist(), sizes.tolist(), strict=True):
        at_site = ep.site == hosts.site[host]
        new = at_site & ~np.isin(ep.port, _owned_ports(hosts, host))
        cand = np.flatnonzero(new if new.any() else at_site if at_site.any() else ep.count > 0)
        if cand.size == 0:  # no normal internal tcp traffic at all: use the service address book
            pi = rng.integers(PORTS.size, size=size)
            ports.append(PORTS[pi])
            ips.append(ctx.pop.svc_ip[hosts.site[host], 2 * pi])
            continue
        pick = cand[rng.choice(cand.size, size=size, p=ep.count[cand] / ep.count[cand].sum())]
        ports.append(ep.port[pick])
        ips.append(ep.ip[pick])
    return np.concatenate(ports), np.concatenate(ips)


def _scan_entity(ctx: _Ctx, h: IntArr, sizes: IntArr, burst: IntArr) -> dict[str, Any]:
    """Sweep of the site's internal services on ports this host never uses.

    Every value (endpoint IP, port, flags, volume) is routine for the population; only the
    breadth of new ports/peers within seconds is unusual for this host.
    """
    rng = ctx.rng
    n = int(sizes.sum())
    first = h[np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)]
    dst_port, dst_ip = _scan_targets(ctx, first, sizes)
    bo = rng.lognormal(math.log(300.0), 0.3, size=n)
    vol = _tcp_volumes(rng, bo, rng.lognormal(math.log(400.0), 0.3, size=n), np.zeros(n))
    flags = np.array(["SA", "FA", "PA"], dtype=object)[rng.integers(0, 3, size=n)]
    return {
        "vol": vol,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
        "tcp_flags": flags,
        "gap": (200.0, 3000.0),
    }


def _port_scan(ctx: _Ctx, n: int) -> _Block:
    """Bursts of 10-50 flows from one workstation probing many ports/peers within seconds."""
    rng, pop = ctx.rng, ctx.pop
    sizes = _burst_sizes(rng, n, 10, 50)
    burst = np.repeat(np.arange(sizes.size), sizes)
    ws = np.flatnonzero(pop.hosts.role == 0)
    h = ws[_categorical(rng, pop.hosts.activity[ws], sizes.size)][burst]
    make = _scan_entity if ctx.config.entity_relative else _scan_population
    spec = make(ctx, h, sizes, burst)
    proto = np.full(n, "tcp", dtype=object)
    t = _burst_times(rng, ctx.tl, sizes, spec["gap"])
    return _net_block(
        pop,
        "port_scan",
        h,
        t,
        spec["vol"],
        dst_ip=spec["dst_ip"],
        src_port=_src_ports(rng, proto),
        dst_port=spec["dst_port"],
        protocol=proto,
        tcp_flags=spec["tcp_flags"],
    )


_GENERATORS: dict[str, Callable[[_Ctx, int], _Block]] = {
    "brute_force": _brute_force,
    "impossible_travel": _impossible_travel,
    "unusual_hour": _unusual_hour,
    "new_device": _new_device,
    "exfiltration": _exfiltration,
    "port_scan": _port_scan,
}
