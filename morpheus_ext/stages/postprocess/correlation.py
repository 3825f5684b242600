"""Cross-site correlation: the same attacker infrastructure seen at several sites, joined into
one campaign without any site sharing a raw value.

Why keyed hashes: a site's incident holds raw indicator values (source IPs, user agents ...)
that must stay at the site (issue #19: raw events never leave a site). What the sites *may*
share is whether they saw the same value, so each incident is reduced to
``HMAC-SHA256(key, "field=value")`` per indicator, truncated to 32 hex characters (128 bits).
The key is organisation-wide (every site and the correlator's inputs use the same one, read
from the ``key_env`` environment variable, never written anywhere), so equal values give equal
hashes at every site; without the key, a reader of the correlation topic cannot test guesses
(no dictionary attack on the small IPv4 space), and a different key gives unrelated hashes.

Why not every field alone: ``device`` kinds ("win-laptop") and common ``country`` values are
shared by thousands of benign users, and even the attacker-ish values are drawn from small
sets (a handful of scripted user agents, a few rare countries), so two unrelated incidents at
two sites would join on them. An indicator spec is therefore a field (``src_ip``) or a
``+``-joined combination (``user_agent+country``): the combination is hashed as one value
per pair of values seen together in the incident. ``docs/results.md`` ("Cross-site
correlation") measures the choices on a multi-site synthetic stream: with ``user_agent``,
``device`` or ``country`` alone (or ``user_agent+country``) almost every detected campaign is
wrong; ``src_ip`` alone finds them without false ones, so the default is ``[src_ip]``.

The :class:`Correlator` (one per organisation: ``secureai correlate``) joins indicator
messages: an indicator seen at >= ``min_sites`` distinct sites within ``window_s`` (by the
incidents' event time) makes a campaign; the incidents sharing it (and, transitively, those
sharing another indicator with them) form it. Its id is a hash of its smallest linking
indicator when it forms and stays the same when more sites join; every incident of a campaign
gets a notice, again whenever the campaign's site count grows.

>>> key = b"k" * 32
>>> def inc(site, iid, ip):
...     return {"site": site, "incident_id": iid, "first_seen": "2026-11-08T10:00:00Z",
...             "last_seen": "2026-11-08T10:05:00Z", "values": {"src_ip": [ip]}}
>>> m1 = indicator_message(inc("paris", "inc-1", "45.1.2.3"), key, ["src_ip"])
>>> "45.1.2.3" in str(m1), len(m1["indicators"][0])
(False, 32)
>>> corr = Correlator(CorrelationConfig(enabled=True))
>>> corr.observe(m1)
[]
>>> notices = corr.observe(indicator_message(inc("tokyo", "inc-2", "45.1.2.3"), key, ["src_ip"]))
>>> sorted((n["site"], n["campaign"]["sites"]) for n in notices)
[('paris', 2), ('tokyo', 2)]
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from morpheus_ext.config_io import StrictModel

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "SECUREAI_CORRELATION_KEY"
MIN_KEY_BYTES = 16
HASH_HEX = 32
MAX_NOTICE_INDICATORS = 50
INDICATOR_FIELDS = ("src_ip", "user_agent", "device", "country")
"""What an incident keeps per indicator field (``IncidentConfig.indicator_fields``)."""


class CorrelationConfig(StrictModel):
    """Cross-site correlation (``correlation:`` in the pipeline and correlator configs)."""

    enabled: bool = False
    key_env: str = Field(default=DEFAULT_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the organisation-wide key (>= 16 bytes). The key itself
    is never in a config file, a log line or a message."""
    fields: list[str] = Field(default_factory=lambda: ["src_ip"])
    """Indicator specs: a field, or fields joined by ``+`` (hashed together, one value per
    combination seen in the incident). ``device`` or ``country`` alone join unrelated
    incidents (shared by many benign users); docs/results.md measures the choices."""
    window_s: float = Field(default=24 * 3600.0, gt=0)
    """Incidents at two sites join when their event times are at most this far apart; older
    indicators are forgotten (bounded state)."""
    min_sites: int = Field(default=2, ge=2)
    max_combinations: int = Field(default=50, ge=1)
    """Per incident and combined spec, at most this many value combinations are hashed."""
    max_fanout: int = Field(default=100, ge=2)
    """An indicator held by more incidents than this (within the window) is common — a proxy,
    a NAT gateway, a device kind — not one attacker's: it links nothing. Also bounds the work
    per message."""
    max_incidents: int = Field(default=200_000, ge=1)
    """Correlator state bound: the oldest incidents are forgotten beyond this many."""

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for spec in value:
            parts = spec.split("+")
            if any(not p.strip() for p in parts):
                raise ValueError(f"indicator spec {spec!r}: empty field name")
            if len(set(parts)) < len(parts):
                raise ValueError(f"indicator spec {spec!r}: a field twice")
        if not value:
            raise ValueError("at least one indicator spec")
        return list(dict.fromkeys(value))

    def key(self) -> bytes:
        """The organisation-wide key from ``key_env`` (one clear error when missing/short)."""
        return correlation_key(self.key_env)


def correlation_key(env: str = DEFAULT_KEY_ENV) -> bytes:
    """The key from the environment; a ValueError names the variable, never the value."""
    raw = os.environ.get(env)
    if raw is None:
        raise ValueError(f"cross-site correlation: the key is read from ${env}, which is not set")
    key = raw.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"cross-site correlation: ${env} holds {len(key)} bytes, at least {MIN_KEY_BYTES} "
            "needed (e.g. openssl rand -hex 32)"
        )
    return key


def keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``key``, 32 hex characters (128 bits)."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:HASH_HEX]


def indicators(
    incident: dict[str, Any], key: bytes, fields: Sequence[str], max_combinations: int = 50
) -> list[str]:
    """The incident's keyed indicators (sorted, distinct), one per value (combination) of each
    spec in ``fields``; the plain text hashed is ``"field=value"`` (fields joined by ``\\x1f``
    for a combination), so the same value in two fields gives two hashes.

    >>> inc = {"values": {"src_ip": ["45.1.2.3"], "user_agent": ["curl/8"], "country": ["RU"]}}
    >>> len(indicators(inc, b"0" * 16, ["src_ip", "user_agent+country", "device"]))
    2
    >>> indicators(inc, b"0" * 16, ["src_ip"]) == indicators(inc, b"1" * 16, ["src_ip"])
    False
    """
    values: dict[str, list[str]] = incident.get("values") or {}
    out: set[str] = set()
    for spec in fields:
        parts = spec.split("+")
        lists = [values.get(p) or [] for p in parts]
        if not all(lists):
            continue
        for combo in itertools.islice(itertools.product(*lists), max_combinations):
            text = "\x1f".join(f"{p}={v}" for p, v in zip(parts, combo, strict=True))
            out.add(keyed_hash(key, text))
    return sorted(out)


def indicator_message(
    incident: dict[str, Any], key: bytes, fields: Sequence[str], max_combinations: int = 50
) -> dict[str, Any]:
    """What a site shares about one incident: its site, id, time span and keyed indicators.
    Nothing else (no entities, reasons or values): the raw event stays at the site."""
    return {
        "site": incident.get("site"),
        "incident_id": incident["incident_id"],
        "first_seen": incident["first_seen"],
        "last_seen": incident["last_seen"],
        "indicators": indicators(incident, key, fields, max_combinations),
    }


def _epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


@dataclass
class _Seen:
    """One incident as the correlator knows it."""

    site: str
    incident_id: str
    first: float
    last: float
    indicators: list[str] = field(default_factory=list)
    notified_sites: int = 0
    """The campaign site count of the last notice this incident got (0: none)."""
    notified_id: str | None = None
    campaign_id: str | None = None
    """The campaign it belongs to."""


@dataclass
class _Campaign:
    """Incidents linked across sites; ``sites`` only grows (members leave with the window)."""

    campaign_id: str
    members: set[tuple[str, str]] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    indicators: set[str] = field(default_factory=set)


class Correlator:
    """Joins indicator messages from all sites into campaigns (module docstring); one per
    organisation. State: the incidents seen within ``window_s`` of the newest (by event
    time) and an index of their indicators; bounded by the window and ``max_incidents``."""

    def __init__(self, config: CorrelationConfig) -> None:
        self.config = config
        self.incidents: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        self.index: dict[str, set[tuple[str, str]]] = {}
        self.watermark = float("-inf")
        self.campaigns: dict[str, _Campaign] = {}
        self.campaigns_formed = 0
        """Campaigns formed so far (a count: the state itself stays bounded)."""

    def __len__(self) -> int:
        return len(self.incidents)

    def observe(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Fold one indicator message in; the notices (per incident of a campaign it joined or
        grew: ``{"site", "incident_id", "campaign": {"campaign_id", "sites", "indicators"}}``).
        A replayed message changes nothing and sends nothing again."""
        site = message.get("site")
        if not site:
            return []  # a site without a name cannot be told apart from the others
        k = (str(site), str(message["incident_id"]))
        first, last = _epoch(message["first_seen"]), _epoch(message["last_seen"])
        if last < self.watermark - self.config.window_s:
            return []  # older than the window: nothing still held can join it
        seen = self.incidents.get(k)
        if seen is None:
            seen = _Seen(k[0], k[1], first, last)
            self.incidents[k] = seen
        else:
            seen.first, seen.last = min(seen.first, first), max(seen.last, last)
            self.incidents.move_to_end(k)
        for ind in message.get("indicators") or []:
            if ind not in seen.indicators:
                seen.indicators.append(ind)
                self.index.setdefault(ind, set()).add(k)
        self.watermark = max(self.watermark, last)
        self._evict()
        if k not in self.incidents:
            return []  # (evicted at once: past max_incidents)
        return self._campaign_of(seen)

    def _near(self, a: _Seen, b: _Seen) -> bool:
        w = self.config.window_s
        return a.first - w <= b.last and b.first - w <= a.last

    def _campaign_of(self, inc: _Seen) -> list[dict[str, Any]]:
        """Link ``inc`` through its indicators seen at >= min_sites sites within the window:
        it joins (and merges) the campaigns of the incidents it links to, or they form a new
        one; notices for new members, and for all members when the site count grew. Work per
        message: its indicators x ``max_fanout``, plus the members when the campaign grew."""
        k = (inc.site, inc.incident_id)
        linking: set[str] = set()
        linked: set[tuple[str, str]] = {k}
        for ind in inc.indicators:
            ids = self.index.get(ind, ())
            if len(ids) > self.config.max_fanout:
                continue
            near = [x for x in ids if x != k and self._near(inc, self.incidents[x])]
            if len({inc.site} | {x[0] for x in near}) < self.config.min_sites:
                continue
            linking.add(ind)
            linked.update(near)
        if not linking:
            return []
        ids_in = sorted({c for x in linked if (c := self.incidents[x].campaign_id) is not None})
        merged = len(ids_in) > 1
        if ids_in:  # stable when more sites (or a bridge to another campaign) join
            target = self.campaigns[ids_in[0]]
            for cid in ids_in[1:]:
                other = self.campaigns.pop(cid)
                for m in other.members:
                    self.incidents[m].campaign_id = target.campaign_id
                target.members |= other.members
                target.sites |= other.sites
                target.indicators |= other.indicators
        else:
            digest = hashlib.blake2b(min(linking).encode(), digest_size=8).hexdigest()
            target = _Campaign("camp-" + digest)
            self.campaigns[target.campaign_id] = target
            self.campaigns_formed += 1
        before = len(target.sites)
        joining = linked - target.members
        for m in joining:
            self.incidents[m].campaign_id = target.campaign_id
        target.members |= joining
        target.sites |= {m[0] for m in joining}
        target.indicators |= linking
        n = len(target.sites)
        if n < self.config.min_sites:
            return []
        campaign = {
            "campaign_id": target.campaign_id,
            "sites": n,
            "indicators": sorted(target.indicators)[:MAX_NOTICE_INDICATORS],
        }
        notices = []
        for m in sorted(target.members if merged or n > before else joining):
            seen = self.incidents[m]
            if seen.notified_sites < n or seen.notified_id != target.campaign_id:
                seen.notified_sites, seen.notified_id = n, target.campaign_id
                notices.append({"site": m[0], "incident_id": m[1], "campaign": dict(campaign)})
        return notices

    def _evict(self) -> None:
        """Forget incidents whose last event is older than the window (and the oldest beyond
        ``max_incidents``)."""
        limit = self.watermark - self.config.window_s
        while self.incidents:
            k, oldest = next(iter(self.incidents.items()))
            if oldest.last >= limit and len(self.incidents) <= self.config.max_incidents:
                break
            self._forget(k)
        # (incidents refreshed later sit at the end; a stale one behind a fresh head waits for
        # the head to expire: the bound is max_incidents either way)

    def _forget(self, k: tuple[str, str]) -> None:
        seen = self.incidents.pop(k)
        camp = self.campaigns.get(seen.campaign_id) if seen.campaign_id is not None else None
        if camp is not None:
            camp.members.discard(k)
            if not camp.members:
                del self.campaigns[camp.campaign_id]
        for ind in seen.indicators:
            ids = self.index.get(ind)
            if ids is not None:
                ids.discard(k)
                if not ids:
                    del self.index[ind]


def notice_messages(notices: Sequence[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    """(key, value) per notice for the campaigns topic: key = site (one site's notices stay in
    order on one partition)."""
    import orjson

    return [(str(n["site"]).encode(), orjson.dumps(n)) for n in notices]
