"""Synthetic, labelled security logs (auth + netflow) for training and evaluating detectors.

Why this exists: real security logs with trustworthy anomaly labels are scarce and sensitive,
yet every stage of the pipeline (featurizer, autoencoder, federated retraining, benchmarks)
needs data whose ground truth is known. This module fabricates a small enterprise: sites with
their own country and timezone, users with habits (devices, apps, working hours) and hosts
with traffic profiles, then injects six kinds of labelled attacks.

Two knobs matter for the experiments:

* ``heterogeneity`` blends a shared distribution with site-specific ones (apps, devices,
  ports, traffic volume, user countries/timezones), so 0 gives IID sites and 1 gives strongly
  non-IID sites, which is what federated learning has to cope with.
* ``entity_relative`` switches the anomalies from "rare in the whole population" (a
  population-level autoencoder should catch them) to "common in the population but new for
  this user/host" (only per-entity baselines should catch them).

Everything is vectorised numpy driven by one ``numpy.random.default_rng(seed)``, so the same
config always gives the same DataFrame and 100k events take well under a second.

Dtypes of ``generate()``'s DataFrame (chosen so that a null means "not applicable to this event
type" and nothing else): string columns are ``object`` holding ``str`` or ``None``; the integer
netflow columns (``src_port``, ``dst_port``, ``bytes_in``, ``bytes_out``, ``packets``) are
pandas nullable ``Int64`` (``<NA>`` on auth rows); ``duration_ms`` is ``float64`` (NaN on auth
rows); ``label`` is ``int64``. ``tcp_flags`` is ``""`` (not null) for udp/icmp flows and ICMP
flows carry port 0, so netflow rows never have nulls in netflow columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from morpheus_ext.config_io import StrictModel

FloatArr = NDArray[np.float64]
IntArr = NDArray[np.int64]
ObjArr = NDArray[np.object_]
BoolArr = NDArray[np.bool_]
Rng = np.random.Generator

ANOMALY_KINDS: tuple[str, ...] = (
    "brute_force",
    "impossible_travel",
    "unusual_hour",
    "new_device",
    "exfiltration",
    "port_scan",
)
AUTH_KINDS: frozenset[str] = frozenset(
    {"brute_force", "impossible_travel", "unusual_hour", "new_device"}
)
NETFLOW_KINDS: frozenset[str] = frozenset({"exfiltration", "port_scan"})

COMMON_COLUMNS: tuple[str, ...] = ("event_id", "timestamp", "event_type", "site")
AUTH_COLUMNS: tuple[str, ...] = (
    "user",
    "src_ip",
    "src_host",
    "dst_app",
    "dst_host",
    "auth_method",
    "result",
    "country",
    "device",
    "user_agent",
)
NETFLOW_COLUMNS: tuple[str, ...] = (
    "src_ip",
    "src_host",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol",
    "bytes_in",
    "bytes_out",
    "packets",
    "duration_ms",
    "tcp_flags",
)
LABEL_COLUMNS: tuple[str, ...] = ("label", "anomaly_kind")
INT_COLUMNS: tuple[str, ...] = ("src_port", "dst_port", "bytes_in", "bytes_out", "packets")
FLOAT_COLUMNS: tuple[str, ...] = ("duration_ms",)
COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(COMMON_COLUMNS + AUTH_COLUMNS + NETFLOW_COLUMNS + LABEL_COLUMNS)
)
STR_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS + ("label",)
)

# --- catalogues -------------------------------------------------------------------------------
# Site k takes entry k % len (country, UTC offset in hours); more than 10 sites reuse countries.
SITE_CATALOGUE: tuple[tuple[str, float], ...] = (
    ("US", -5.0),
    ("DE", 1.0),
    ("IN", 5.5),
    ("GB", 0.0),
    ("JP", 9.0),
    ("BR", -3.0),
    ("FR", 1.0),
    ("AU", 10.0),
    ("SG", 8.0),
    ("MX", -6.0),
)
# Never produced by normal traffic, so a population model can learn they are rare.
RARE_COUNTRIES: tuple[str, ...] = ("RU", "CN", "KP", "NG", "IR", "BY")

NORMAL_APPS: tuple[str, ...] = (
    "email",
    "vpn",
    "slack",
    "wiki",
    "jira",
    "sharepoint",
    "git",
    "crm",
    "helpdesk",
    "erp",
    "ci-cd",
    "hr-portal",
    "bi-dashboard",
    "expenses",
    "payroll",
)
_APP_BASE = np.array(
    [0.20, 0.12, 0.12, 0.08, 0.08, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02, 0.015, 0.005]
)
RARE_APPS: tuple[str, ...] = ("admin-console", "payroll-export", "db-admin")
APPS: tuple[str, ...] = NORMAL_APPS + RARE_APPS
_INTERNET_FACING_APPS: tuple[int, ...] = (APPS.index("vpn"), APPS.index("email"))

AUTH_METHODS: tuple[str, ...] = ("password", "mfa_push", "sso", "certificate", "otp")
_PASSWORD = 0


def _method_table() -> FloatArr:
    """Per-app auth-method mix: VPN uses certificates, SaaS uses SSO, rare apps use passwords."""
    table = np.tile([0.06, 0.14, 0.75, 0.02, 0.03], (len(APPS), 1))
    table[APPS.index("vpn")] = [0.04, 0.36, 0.0, 0.5, 0.1]
    table[APPS.index("email")] = [0.12, 0.25, 0.6, 0.0, 0.03]
    table[APPS.index("git")] = [0.08, 0.1, 0.5, 0.3, 0.02]
    table[APPS.index("payroll")] = [0.05, 0.4, 0.45, 0.0, 0.1]
    for app in RARE_APPS:
        table[APPS.index(app)] = [0.6, 0.0, 0.0, 0.0, 0.4]
    cum: FloatArr = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    return cum


_METHOD_CUM = _method_table()

DESK_DEVICES: tuple[str, ...] = ("win-laptop", "win-desktop", "macbook", "linux-ws")
_DESK_BASE = np.array([0.45, 0.2, 0.25, 0.1])
MOBILE_DEVICES: tuple[str, ...] = ("iphone", "android", "ipad")
_MOB_BASE = np.array([0.5, 0.4, 0.1])
RARE_DEVICES: tuple[str, ...] = ("kali", "unknown-linux")
DEVICES: tuple[str, ...] = DESK_DEVICES + MOBILE_DEVICES + RARE_DEVICES + ("unknown",)
_N_NORMAL_DEVICES = len(DESK_DEVICES) + len(MOBILE_DEVICES)
_RARE_DEVICE_HOSTNAME = {"kali": "kali", "unknown-linux": "localhost"}

_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
DEVICE_USER_AGENTS: dict[str, tuple[str, ...]] = {
    "win-laptop": (
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36 Edg/130.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    ),
    "win-desktop": (
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36 Edg/130.0.0.0",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36",
    ),
    "macbook": (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/18.1 Safari/605.1.15",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_CHROME} Safari/537.36",
    ),
    "linux-ws": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        f"Mozilla/5.0 (X11; Linux x86_64) {_CHROME} Safari/537.36",
    ),
    "iphone": (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_SAFARI} Version/18.1 "
        "Mobile/15E148 Safari/604.1",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) {_SAFARI} Version/17.6 "
        "Mobile/15E148 Safari/604.1",
    ),
    "android": (
        f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {_CHROME} Mobile Safari/537.36",
        f"Mozilla/5.0 (Linux; Android 14; SM-S921B) {_CHROME} Mobile Safari/537.36",
    ),
    "ipad": (
        f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_SAFARI} Version/18.1 "
        "Mobile/15E148 Safari/604.1",
    ),
    "kali": ("Mozilla/5.0 (X11; Kali Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",),
    "unknown-linux": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36",
    ),
    "unknown": ("python-requests/2.31.0", "Hydra", "curl/8.4.0"),
}
SCRIPTED_USER_AGENTS: tuple[str, ...] = DEVICE_USER_AGENTS["unknown"]


def _ua_table() -> tuple[ObjArr, IntArr]:
    """Pad the per-device user-agent lists into a matrix so UA choice can be vectorised."""
    width = max(len(v) for v in DEVICE_USER_AGENTS.values())
    table = np.empty((len(DEVICES), width), dtype=object)
    counts = np.zeros(len(DEVICES), dtype=np.int64)
    for i, dev in enumerate(DEVICES):
        uas = DEVICE_USER_AGENTS[dev]
        table[i] = [uas[j % len(uas)] for j in range(width)]
        counts[i] = len(uas)
    return table, counts


_UA_TABLE, _UA_COUNT = _ua_table()

# Netflow port catalogue: port, protocol, popularity, share to external IPs, median bytes_out of
# a typical workstation flow, bytes_in/bytes_out ratio, per-flow log-sigma, whether the volume
# scales with the host's size, median session length (ms). Port 0 stands for ICMP.
_PORT_ROWS: tuple[tuple[int, str, float, float, float, float, float, bool, float], ...] = (
    (443, "tcp", 0.40, 0.75, 1800, 7.0, 0.9, True, 400),
    (80, "tcp", 0.08, 0.80, 900, 8.0, 0.9, True, 200),
    (53, "udp", 0.14, 0.10, 70, 2.2, 0.25, False, 0),
    (22, "tcp", 0.04, 0.05, 4000, 3.0, 1.0, True, 60_000),
    (3389, "tcp", 0.03, 0.0, 3000, 30.0, 1.0, True, 900_000),
    (445, "tcp", 0.07, 0.0, 6000, 5.0, 1.0, True, 2_000),
    (8080, "tcp", 0.04, 0.30, 1500, 6.0, 0.9, True, 300),
    (123, "udp", 0.02, 0.50, 76, 1.0, 0.05, False, 0),
    (389, "tcp", 0.03, 0.0, 600, 3.0, 0.6, True, 100),
    (636, "tcp", 0.02, 0.0, 900, 3.0, 0.6, True, 100),
    (25, "tcp", 0.01, 0.50, 6000, 0.1, 1.0, False, 1_000),
    (587, "tcp", 0.01, 0.80, 8000, 0.1, 1.0, False, 1_000),
    (993, "tcp", 0.03, 0.90, 1200, 15.0, 1.0, True, 30_000),
    (5432, "tcp", 0.02, 0.0, 2500, 10.0, 1.0, True, 500),
    (3306, "tcp", 0.02, 0.0, 2500, 10.0, 1.0, True, 500),
    (1433, "tcp", 0.01, 0.0, 2500, 10.0, 1.0, True, 500),
    (8443, "tcp", 0.02, 0.70, 1800, 6.0, 0.9, True, 400),
    (9092, "tcp", 0.01, 0.0, 5000, 2.0, 1.0, True, 5_000),
    (0, "icmp", 0.01, 0.20, 64, 1.0, 0.0, False, 0),
)
PORTS = np.array([r[0] for r in _PORT_ROWS], dtype=np.int64)
_PORT_PROTO = np.array([r[1] for r in _PORT_ROWS], dtype=object)
_PORT_BASE = np.array([r[2] for r in _PORT_ROWS])
_PORT_EXT = np.array([r[3] for r in _PORT_ROWS])
_PORT_OUT = np.array([r[4] for r in _PORT_ROWS])
_PORT_IN_RATIO = np.array([r[5] for r in _PORT_ROWS])
_PORT_SIGMA = np.array([r[6] for r in _PORT_ROWS])
_PORT_SCALED = np.array([r[7] for r in _PORT_ROWS])
_PORT_SESSION = np.array([r[8] for r in _PORT_ROWS])
_HTTPS = int(np.flatnonzero(PORTS == 443)[0])
# Ports a workstation never talks to in normal traffic; exfiltration sometimes uses them.
UNUSUAL_PORTS: tuple[int, ...] = (4444, 6667, 9001, 1337, 2222, 8888, 31337)
_TCP_FLAGS: tuple[str, ...] = ("PA", "FA", "SA", "R", "S")
_TCP_FLAG_P = np.array([0.56, 0.26, 0.14, 0.03, 0.01])

ROLES: tuple[str, ...] = ("ws", "srv", "fs")  # workstation, server, big file/backup server
_ROLE_P = np.array([0.8, 0.15, 0.05])
_ROLE_FACTOR = np.array([1.0, 3.0, 10.0])  # host volume relative to a workstation
_ROLE_ACTIVITY = np.array([1.0, 2.5, 2.0])
_ROLE_IN = np.array([1.0, 0.5, 0.03])  # big servers mostly push data (backups, replication)
_ROLE_UNIFORM_TIME = np.array([0.2, 0.6, 0.7])  # share of flows not tied to office hours

# First octets of public IPs: normal destinations vs. attacker infrastructure (disjoint).
_NORMAL_OCTETS = (13, 20, 23, 34, 35, 40, 52, 54, 104, 142, 151, 157, 199, 204)
_RARE_OCTETS = (5, 31, 45, 91, 185, 193, 194, 195, 212, 217)

NORMAL_FAILURE_RATE = 0.03
NIGHT_SHIFT_SHARE = 0.06
WEEKEND_WEIGHT = 0.3
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_N_EXTERNAL = 400


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
        unknown = sorted(set(value) - set(ANOMALY_KINDS))
        if unknown:
            raise ValueError(f"unknown anomaly kinds {unknown}; choose from {list(ANOMALY_KINDS)}")
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


# --- small vectorised helpers ---------------------------------------------------------------
def _row_cum(weights: FloatArr) -> FloatArr:
    """Row-normalised cumulative weights, the form _pick() samples from."""
    total = weights.sum(axis=1, keepdims=True)
    cum: FloatArr = np.cumsum(weights, axis=1) / np.where(total > 0, total, 1.0)
    return cum


def _pick(rng: Rng, cum: FloatArr, rows: IntArr, n_valid: IntArr | None = None) -> IntArr:
    """One categorical draw per event from its entity's cumulative row (inverse-CDF, vectorised).

    Clipping to ``n_valid - 1`` guards against float round-off landing on zero-weight padding.
    """
    u = rng.random(rows.size)
    idx: IntArr = (cum[rows] < u[:, None]).sum(axis=1).astype(np.int64)
    limit = (n_valid[rows] if n_valid is not None else np.full(rows.size, cum.shape[1])) - 1
    return np.minimum(idx, limit)


def _categorical(rng: Rng, probs: FloatArr, size: int) -> IntArr:
    """rng.choice over indices, kept as a helper so every draw goes through the same rng."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(probs.size, size=size, p=probs / probs.sum()).astype(np.int64)


def _topk(rng: Rng, probs: FloatArr, k: int) -> IntArr:
    """k distinct categories per row, weighted by probs (Gumbel top-k, no Python loop)."""
    keys = np.log(probs + 1e-12) + rng.gumbel(size=probs.shape)
    top: IntArr = np.argsort(-keys, axis=1)[:, :k].astype(np.int64)
    return top


@dataclass(frozen=True)
class _UsualSet:
    """An entity's habitual categories (apps, ports, devices) with its own usage weights."""

    items: IntArr  # (entities, k_max) category indices
    cum: FloatArr  # (entities, k_max) cumulative usage weights
    n_valid: IntArr  # (entities,) how many leading slots are real


def _usual_set(rng: Rng, probs: FloatArr, k_min: int, k_max: int) -> _UsualSet:
    """Draw each entity's favourite categories from its site's mix; popular ones used more."""
    k_max = min(k_max, probs.shape[1])
    k_min = min(k_min, k_max)
    items = _topk(rng, probs, k_max)
    n_valid = np.asarray(rng.integers(k_min, k_max + 1, size=probs.shape[0]), dtype=np.int64)
    chosen_p = np.take_along_axis(probs, items, axis=1)
    weights = rng.gamma(1.5, size=items.shape) * np.sqrt(chosen_p + 1e-12)
    weights[np.arange(k_max)[None, :] >= n_valid[:, None]] = 0.0
    return _UsualSet(items, _row_cum(weights), n_valid)


def _mix(rng: Rng, base: FloatArr, n_sites: int, h: float) -> FloatArr:
    """Blend a shared distribution with peaked per-site ones: h=0 IID sites, h=1 non-IID."""
    specific = rng.dirichlet(np.full(base.size, 0.4), size=n_sites)
    mixed: FloatArr = (1.0 - h) * (base / base.sum())[None, :] + h * specific
    return mixed


def _profiles(rng: Rng, site: IntArr, n_sites: int, h: float) -> IntArr:
    """Which site's country/timezone an entity follows: its own with prob h, else any site.

    At h=0 every site is the same mixture of countries and timezones (IID); at h=1 each site
    is pure. Entities keep their own site for everything else.
    """
    other = rng.integers(n_sites, size=site.size)
    return np.where(rng.random(site.size) < h, site, other).astype(np.int64)


def _ips(prefix_rows: list[tuple[int, int, int, int]]) -> ObjArr:
    """Dotted-quad strings; callers build octets vectorised, only the formatting loops."""
    return np.array([f"{a}.{b}.{c}.{d}" for a, b, c, d in prefix_rows], dtype=object)


def _public_ips(rng: Rng, n: int, octets: tuple[int, ...]) -> ObjArr:
    """Random public IPv4 addresses whose first octet comes from the given pool."""
    first = rng.choice(np.array(octets), size=n)
    rest = rng.integers(1, 255, size=(n, 3))
    return _ips(
        [(int(a), int(b), int(c), int(d)) for a, (b, c, d) in zip(first, rest, strict=True)]
    )


def _cgnat_ips(rng: Rng, n: int) -> ObjArr:
    """Carrier-grade-NAT addresses (100.64.0.0/10), the shape of every mobile login's IP."""
    b = rng.integers(64, 128, size=n)
    cd = rng.integers(1, 255, size=(n, 2))
    return _ips([(100, int(x), int(y), int(z)) for x, (y, z) in zip(b, cd, strict=True)])


# --- time -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Timeline:
    """The generation window plus day weights that make weekends quieter."""

    start_ms: int
    span_ms: int
    origin_ms: int  # UTC midnight on or before start: "local hour h of day d" is relative to it
    day_p: FloatArr  # probability of each (local) day for office-hours activity

    @classmethod
    def from_config(cls, config: SyntheticConfig) -> _Timeline:
        """Derive the window and the weekday/weekend weights from the config."""
        start = _parse_start_ms(config.start)
        origin = start - start % _DAY_MS
        weekday = (origin // _DAY_MS + 3 + np.arange(config.days)) % 7  # 1970-01-01 = Thursday
        weights = np.where(weekday >= 5, WEEKEND_WEIGHT, 1.0)
        return cls(start, config.days * _DAY_MS, origin, weights / weights.sum())


def _wrap(tl: _Timeline, t: IntArr) -> IntArr:
    """Fold times into [start, start + span) so timezones never push events out of the window."""
    wrapped: IntArr = tl.start_ms + np.mod(t - tl.start_ms, tl.span_ms)
    return wrapped


def _local_to_utc(tl: _Timeline, day: IntArr, local_h: FloatArr, tz: FloatArr) -> IntArr:
    """UTC ms for (local day index, local fractional hour, UTC offset)."""
    offset = np.round((local_h - tz) * _HOUR_MS).astype(np.int64)
    return _wrap(tl, tl.origin_ms + day * _DAY_MS + offset)


def _shift_times(
    rng: Rng, tl: _Timeline, center: FloatArr, spread: FloatArr, tz: FloatArr
) -> IntArr:
    """Office-hours timestamps: a truncated normal around each entity's usual local hour."""
    n = center.size
    day = _categorical(rng, tl.day_p, n)
    z = np.clip(rng.standard_normal(n), -2.5, 2.5)
    return _local_to_utc(tl, day, np.mod(center + spread * z, 24.0), tz)


def _uniform_times(rng: Rng, tl: _Timeline, n: int) -> IntArr:
    """Timestamps spread evenly over the window (servers, attackers that do not sleep)."""
    return tl.start_ms + rng.integers(0, tl.span_ms, size=n).astype(np.int64)


def _burst_sizes(rng: Rng, total: int, lo: int, hi: int) -> IntArr:
    """Split `total` events into bursts of lo..hi events (one smaller burst if total < lo)."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    n_bursts = max(1, round(total / ((lo + hi) / 2)))
    n_bursts = max(min(n_bursts, max(1, total // lo)), -(-total // hi))
    sizes = np.full(n_bursts, min(lo, total // n_bursts), dtype=np.int64)
    sizes += rng.multinomial(total - int(sizes.sum()), np.full(n_bursts, 1.0 / n_bursts))
    excess = int(np.clip(sizes - hi, 0, None).sum())
    sizes = np.minimum(sizes, hi)
    while excess > 0:  # at most n_bursts iterations: there is room because n_bursts*hi >= total
        i = int(np.argmax(hi - sizes))
        add = min(hi - int(sizes[i]), excess)
        sizes[i] += add
        excess -= add
    return sizes


def _burst_times(rng: Rng, tl: _Timeline, sizes: IntArr, gap_ms: tuple[float, float]) -> IntArr:
    """Timestamps for bursts: each starts at a random time, events follow at small gaps."""
    n = int(sizes.sum())
    burst = np.repeat(np.arange(sizes.size), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gaps = rng.uniform(gap_ms[0], gap_ms[1], size=n)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    offsets = np.round(elapsed - elapsed[first][burst]).astype(np.int64)
    margin = int(min(tl.span_ms // 2, 30 * 60_000))
    starts = tl.start_ms + rng.integers(0, tl.span_ms - margin, size=sizes.size)
    return _wrap(tl, starts[burst] + offsets)


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


# --- assembly ---------------------------------------------------------------------------------
def _iso_ms(t_ms: IntArr) -> ObjArr:
    """ISO-8601 UTC strings with milliseconds, e.g. 2026-11-01T08:15:02.123Z."""
    text = np.datetime_as_string(t_ms.astype("datetime64[ms]"), unit="ms")
    return np.strings.add(text, "Z").astype(object)


def _column(blocks: list[_Block], name: str, order: IntArr) -> Any:
    """One output column: values from blocks that have it, null elsewhere, in timestamp order."""
    n = order.size
    pos = np.cumsum([0] + [len(b) for b in blocks])
    if name in INT_COLUMNS:
        values, mask = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    elif name in FLOAT_COLUMNS:
        values, mask = np.full(n, np.nan), np.zeros(0, dtype=bool)
    else:
        values, mask = np.full(n, None, dtype=object), np.zeros(0, dtype=bool)
    for b, lo, hi in zip(blocks, pos[:-1], pos[1:], strict=True):
        if name in b.cols:
            values[lo:hi] = b.cols[name]
            if mask.size:
                mask[lo:hi] = False
    if name in INT_COLUMNS:
        return pd.arrays.IntegerArray(values[order], mask[order])
    return values[order]


def _assemble(blocks: list[_Block]) -> pd.DataFrame:
    """Concatenate blocks, sort by time (stable), number events in that order."""
    t = np.concatenate([b.t for b in blocks]).astype(np.int64)
    order = np.argsort(t, kind="stable")
    sizes = [len(b) for b in blocks]
    kind = np.repeat(np.array([b.kind for b in blocks], dtype=object), sizes)[order]
    data: dict[str, Any] = {
        "event_id": np.array([f"evt-{i:09d}" for i in range(t.size)], dtype=object),
        "timestamp": _iso_ms(t[order]),
        "event_type": np.repeat(np.array([b.event_type for b in blocks], dtype=object), sizes)[
            order
        ],
    }
    for name in COLUMNS:
        if name not in data and name not in LABEL_COLUMNS:
            data[name] = _column(blocks, name, order)
    data["label"] = (kind != "none").astype(np.int64)
    data["anomaly_kind"] = kind
    return pd.DataFrame(data, columns=list(COLUMNS))


def generate(config: SyntheticConfig) -> pd.DataFrame:
    """Generate auth + netflow events with labelled anomalies, sorted by timestamp.

    Same config -> identical DataFrame. The organisation (sites, users, hosts, their habits)
    comes from ``default_rng(population_seed)`` (default: ``seed``), the events from
    ``default_rng(seed)`` consumed in a fixed order (normal auth, normal netflow, anomaly kinds),
    so two configs sharing ``population_seed`` describe the same organisation on other days
    (train on one week, stream the next).
    """
    pop_seed = config.seed if config.population_seed is None else config.population_seed
    pop = _build_population(config, np.random.default_rng(pop_seed))
    rng = np.random.default_rng(config.seed)
    tl = _Timeline.from_config(config)
    counts = kind_counts(config)
    n_auth, n_net = event_type_counts(config)
    n_auth -= sum(v for k, v in counts.items() if k in AUTH_KINDS)
    n_net -= sum(v for k, v in counts.items() if k in NETFLOW_KINDS)
    ctx = _Ctx(
        config,
        rng,
        tl,
        pop,
        _normal_auth(rng, tl, pop, n_auth),
        _normal_netflow(rng, tl, pop, n_net),
    )
    blocks = [ctx.auth, ctx.net]
    for kind in ANOMALY_KINDS:
        if counts.get(kind, 0) > 0:
            blocks.append(_GENERATORS[kind](ctx, counts[kind]))
    return _assemble(blocks)


# --- I/O --------------------------------------------------------------------------------------
def _check_suffix(path: Path) -> str:
    """Only .jsonl and .parquet are supported; anything else is a caller mistake."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"unsupported event file {str(path)!r}: use a .jsonl or .parquet path")
    return suffix


def _python_column(series: pd.Series) -> list[Any]:
    """Column as Python scalars with every kind of null (None, NaN, pd.NA) turned into None."""
    values = series.astype(object)
    return values.where(series.notna(), None).tolist()


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    """One JSON object per event, keys with null values omitted (auth lines lack netflow keys).

    Built column-wise because DataFrame.to_dict(orient="records") is ~4x slower at 100k rows.
    """
    names = [str(c) for c in df.columns]
    columns = [_python_column(df[c]) for c in df.columns]
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as fh:
        for row in zip(*columns, strict=True):
            record = {k: v for k, v in zip(names, row, strict=True) if v is not None}
            fh.write(orjson.dumps(record, option=opts))


def write_events(df: pd.DataFrame, path: str | Path) -> Path:
    """Write events as JSON lines (null keys omitted per line) or Parquet; returns the path."""
    out = Path(path)
    suffix = _check_suffix(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        df.to_parquet(out, index=False, engine="pyarrow")
    else:
        _write_jsonl(df, out)
    return out


def _arrow_type(name: str) -> pa.DataType:
    """Arrow type of a known column, so the JSON reader never guesses (e.g. dates)."""
    if name in INT_COLUMNS or name == "label":
        return pa.int64()
    return pa.float64() if name in FLOAT_COLUMNS else pa.string()


def _read_jsonl(path: Path) -> pd.DataFrame:
    """Parse JSON lines with pyarrow (fast, missing keys become nulls); unknown keys are kept."""
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=list(COLUMNS))
    schema = pa.schema([(c, _arrow_type(c)) for c in COLUMNS])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    table = pa_json.read_json(path, parse_options=options)
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Restore the canonical column order and dtypes after a round trip through a file."""
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df.reindex(columns=list(COLUMNS) + extra)
    for name in STR_COLUMNS:
        df[name] = _python_column(df[name])
        df[name] = df[name].astype(object)
    for name in INT_COLUMNS:
        df[name] = pd.to_numeric(df[name]).astype("Int64")
    for name in FLOAT_COLUMNS:
        df[name] = pd.to_numeric(df[name]).astype(np.float64)
    df["label"] = pd.to_numeric(df["label"]).fillna(0).astype(np.int64)
    return df


def read_events(path: str | Path) -> pd.DataFrame:
    """Inverse of write_events: same columns and dtypes as generate() returns."""
    src = Path(path)
    if _check_suffix(src) == ".parquet":
        return _coerce(pd.read_parquet(src, engine="pyarrow"))
    return _coerce(_read_jsonl(src))
