"""Incidents: flagged score records grouped into what an analyst works on.

An analyst does not want ten rows for one burst: the incident stage joins a flagged record
(model flag, combined flag with per-entity baselines, or a leaked secret) to an open incident
when all three hold:

* **the same entity, or a related one** — the same user, or the same value of a *link* field
  (``link_fields``, default the source IP) seen across users;
* **a compatible reason signature** — the record's top reason fields (or leaked secret types)
  overlap the incident's;
* **within the session window** — the event is at most ``gap_s`` after the incident's last event
  (session-style gap) and the incident spans at most ``max_span_s``.

Otherwise it opens a new incident. An incident closes once the stream's event time (watermark)
is ``gap_s`` past its last event; at most ``max_open`` stay open (the oldest close first), so the
state is bounded.

**Idempotent under replays.** An incident's id is a hash of its site and its first event's id,
every update carries a ``revision`` that grows with its content (events, campaign, closing;
not with how often it was sent), and an event already in an incident (open, or among the
``recently_closed`` ones) is never counted twice: an at-least-once replay re-emits the incident
it belongs to, unchanged, under the same key and revision. Consumers keep the highest revision
per id (on a tie, the last read). Within one input partition the grouping depends only on the
events' order, so a replay rebuilds the same incidents; a process reading several partitions
may interleave them differently after a restart (docs/triage.md: key events by entity). The
state (:meth:`IncidentTracker.state`) is checkpointed before the offsets it reflects are
committed (``pipelines/kafka``), so a ``kill -9`` loses nothing and duplicates nothing.

Incident records are documented in docs/triage.md; the JSON Schema is
``morpheus_ext/schemas/incident.json``.

>>> tracker = IncidentTracker(IncidentConfig(enabled=True, site="hq"))
>>> def rec(i, user, field="country", value="RU"):
...     return {"event_id": f"e{i}", "entity": user, "anomaly_score": 4.0, "threshold": 1.0,
...             "is_anomaly": True, "reasons": [{"field": field, "value": value, "z": 9.0}]}
>>> t0 = 1_790_000_000.0
>>> out = tracker.observe([rec(1, "alice"), rec(2, "alice")], times=[t0, t0 + 60])
>>> [(r["event_count"], r["reasons"][0]["text"]) for r in out]
[(2, 'unusual country=RU')]
>>> out = tracker.observe([rec(2, "alice"), rec(3, "bob")], times=[t0 + 60, t0 + 90])
>>> sorted((r["entities"][0], r["event_count"]) for r in out)   # e2 replayed: not counted again
[('alice', 2), ('bob', 1)]
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import Field, field_validator

from morpheus_ext.config_io import StrictModel
from morpheus_ext.stages.postprocess.alert_text import flagged, reason_phrase

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parents[2] / "schemas" / "incident.json"
RECORD_VERSION = 1
STATE_VERSION = 1
SEVERITIES = ("low", "medium", "high", "critical")
CREDENTIAL_LEAKS = frozenset(
    {
        "aws_access_key",
        "github_token",
        "slack_token",
        "stripe_key",
        "private_key",
        "password_param",
        "basic_auth",
        "email_password",
        "jwt",
    }
)
"""Leaked secret types that hand an attacker access: an incident holding one is at least high."""


@cache
def incident_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class IncidentConfig(StrictModel):
    """The incident stage's knobs (``incidents:`` in the pipeline and demo configs)."""

    enabled: bool = False
    site: str | None = None
    """This site's name, carried by every incident (cross-site correlation keys on it)."""
    gap_s: float = Field(default=1800.0, gt=0)
    """Session gap: an event joins an incident at most this long after its last event."""
    max_span_s: float = Field(default=6 * 3600.0, gt=0)
    """An incident spans at most this long (event time); later events open a new one."""
    link_fields: list[str] = Field(default_factory=lambda: ["src_ip"])
    """Event fields whose shared value relates different entities (same source IP across
    users). Not ``device`` by default: in most fleets a device *kind* is shared by thousands."""
    indicator_fields: list[str] = Field(
        default_factory=lambda: ["src_ip", "user_agent", "device", "country"]
    )
    """Values kept per incident (at most ``max_values`` each): what the analyst pivots on and
    what cross-site correlation hashes."""
    max_values: int = Field(default=20, ge=1)
    top_reasons: int = Field(default=3, ge=1, le=20)
    reasons_per_event: int = Field(default=2, ge=1, le=10)
    """Top reasons of each record that form its signature."""
    max_open: int = Field(default=50_000, ge=1)
    max_events: int = Field(default=10_000, ge=1)
    """Events one incident holds; the next one opens a new incident (bounds state per incident)."""
    event_ids_in_record: int = Field(default=100, ge=0)
    """Event ids listed in an incident record (``event_ids_truncated`` says when more exist)."""
    recently_closed: int = Field(default=2_000, ge=0)
    """Closed incidents remembered, so a replayed event of one is re-emitted, not re-opened."""
    checkpoint_path: str | None = "state/incidents-{instance}.json"
    """Kafka pipeline: the state, written before each offset commit (``{instance}``,
    ``{group}`` substituted). null: in memory only (a restart starts empty)."""
    checkpoint_interval_s: float = Field(default=2.0, ge=0)
    """Kafka pipeline, at-least-once: at most one checkpoint this often; offsets acknowledged
    meanwhile commit with the next one (a restart re-reads at most this much more)."""
    instance_id: str = Field(default="0", pattern=r"^[A-Za-z0-9._-]+$")
    """One per process of the group; ``${NAME}`` reads it from the environment (the Helm chart
    passes the pod name as ``${POD_NAME}``, so each replica keeps its own checkpoint)."""

    @field_validator("instance_id", mode="before")
    @classmethod
    def _instance_from_env(cls, value: Any) -> Any:
        match = _ENV_REF.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return value
        if match[1] not in os.environ:
            raise ValueError(f"refers to ${{{match[1]}}}, which is not set")
        return os.environ[match[1]]

    def checkpoint_file(self, group_id: str) -> Path | None:
        if self.checkpoint_path is None:
            return None
        return Path(self.checkpoint_path.format(instance=self.instance_id, group=group_id))


# --------------------------------------------------------------------------- words
def event_rank(record: dict[str, Any]) -> float:
    """How far over the line a record is: ``combined_score`` with baselines, else
    ``ln(anomaly_score / threshold)`` (0 at the threshold; the same scale)."""
    combined = record.get("combined_score")
    if combined is not None:
        return float(combined)
    score = float(record.get("anomaly_score") or 0.0)
    threshold = float(record.get("threshold") or 0.0)
    if score <= 0 or threshold <= 0:
        return 0.0
    return math.log(score / threshold)


ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(epoch_s: float) -> str:
    """``datetime.fromtimestamp(epoch_s, UTC)`` to the second, as text.

    Every incident record says two of these, so the common case skips the datetime: a
    non-negative time whose fraction cannot round up to the next second (datetime rounds to
    the microsecond, half to even) is its whole second, formatted once per second (cached).
    """
    if 0 <= epoch_s < _YEAR_10000:
        whole = int(epoch_s)
        if (epoch_s - whole) * 1e6 < 999_999.5:
            return _iso_second(whole)
    return datetime.fromtimestamp(epoch_s, UTC).strftime(ISO_FORMAT)


_YEAR_10000 = 253_402_300_800
"""Epoch seconds of year 10000 (datetime's limit; beyond it, its error)."""


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return time.strftime(ISO_FORMAT, time.gmtime(second))


def incident_id(site: str | None, first_event: str) -> str:
    """Deterministic: the same first event at the same site gives the same id after a replay."""
    digest = hashlib.blake2b(f"{site or ''}\x1f{first_event}".encode(), digest_size=8)
    return "inc-" + digest.hexdigest()


# --------------------------------------------------------------------------- state
@dataclass
class Incident:
    """One open incident's state (all of it JSON-serialisable for the checkpoint)."""

    incident_id: str
    first_seen: float
    last_seen: float
    event_ids: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    signature: list[str] = field(default_factory=list)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    """field -> {text: events}: deduplicated reasons in words."""
    leakage: list[list[str]] = field(default_factory=list)
    """[type, field] pairs."""
    values: dict[str, list[str]] = field(default_factory=dict)
    """indicator field -> distinct values (at most ``max_values``)."""
    max_score: float = 0.0
    """Max ``anomaly_score / threshold``."""
    max_rank: float = 0.0
    anonymous_events: int = 0
    """Flagged records without an event id (counted, not deduplicated)."""
    status: str = "open"
    campaign: dict[str, Any] | None = None

    @property
    def event_count(self) -> int:
        return len(self.event_ids) + self.anonymous_events

    @property
    def revision(self) -> int:
        """Grows with the content only: 1000 per event, 2 per campaign site, 1 once closed; a
        replay that rebuilds the same content sends the same revision."""
        sites = min(int((self.campaign or {}).get("sites", 0)), 499)
        return 1000 * self.event_count + 2 * sites + (self.status == "closed")

    def record(self, config: IncidentConfig, final: bool = False) -> dict[str, Any]:
        """The incident record (docs/triage.md, ``schemas/incident.json``).

        Written out for about every incident of a stream (most open and close within a
        batch), so it is on the hot path: no property or helper calls per field. ``final``:
        the incident is closing and nobody changes it again, so the record may share its
        lists instead of copying them."""
        ranked = []
        for f, texts in self.reasons.items():
            if len(texts) == 1:  # (most fields: one text)
                ((text, total),) = texts.items()
            else:
                total = sum(texts.values())
                text = max(texts.items(), key=_count_then_text)[0]
            ranked.append((-total, f, text))
        ranked.sort()  # most events first, then by field (unique: the text never decides)
        n = len(self.event_ids) + self.anonymous_events
        limit = config.event_ids_in_record
        ids = self.event_ids if final and n <= limit else self.event_ids[:limit]
        campaign = self.campaign
        sites = min(int(campaign.get("sites", 0)), 499) if campaign else 0
        values = self.values
        first = iso(self.first_seen)
        return {
            "record_version": RECORD_VERSION,
            "incident_id": self.incident_id,
            "status": self.status,
            "revision": 1000 * n + 2 * sites + (self.status == "closed"),
            "site": config.site,
            "entities": self.entities if final else list(self.entities),
            "first_seen": first,
            "last_seen": first if self.last_seen == self.first_seen else iso(self.last_seen),
            "event_count": n,
            "event_ids": ids,
            "event_ids_truncated": len(self.event_ids) > len(ids),
            "reasons": [
                {"field": f, "text": text, "events": -c}
                for c, f, text in ranked[: config.top_reasons]
            ],
            "leakage": [{"type": t, "field": f} for t, f in self.leakage],
            "values": {k: v for k, v in values.items() if v}
            if final
            else {k: list(v) for k, v in values.items() if v},
            "max_score": round(self.max_score, 4),
            "combined_score": round(self.max_rank + math.log(max(n, 1)), 4),
            "severity": _severity(self.max_score, n, len(self.entities), self.leakage, campaign),
            "campaign": campaign,
        }


class ClosedRecord(dict[str, Any]):
    """A closed incident's final record with its JSON (``encoded``, ``orjson.dumps`` of it).

    A closed record never changes, and it is serialised anyway for the recently-closed memory
    (:attr:`IncidentTracker.closed`); the sinks write these bytes instead of serialising the
    same dict a second time (:func:`encoded_record`). Most incidents of a stream open and
    close within one batch, so most records sent are these."""

    __slots__ = ("encoded",)
    encoded: bytes


def encoded_record(record: dict[str, Any]) -> bytes:
    """``orjson.dumps(record)``, reusing a :class:`ClosedRecord`'s bytes."""
    if type(record) is ClosedRecord:
        return record.encoded
    return orjson.dumps(record)


def _count_then_text(kv: tuple[str, int]) -> tuple[int, str]:
    return kv[1], kv[0]


def severity(incident: Incident) -> str:
    """low / medium / high / critical, from how far over the threshold the worst event is,
    how many events and entities, leaked credentials, and a cross-site campaign.

    ``max_score`` (times the threshold) >= 20: high, >= 3: medium, else low; one level up for
    >= 10 events or >= 3 entities; a leaked credential makes it at least high; a campaign seen
    at other sites raises it one level.
    """
    return _severity(
        incident.max_score,
        incident.event_count,
        len(incident.entities),
        incident.leakage,
        incident.campaign,
    )


def _severity(
    max_score: float,
    events: int,
    entities: int,
    leakage: list[list[str]],
    campaign: dict[str, Any] | None,
) -> str:
    """:func:`severity` from the numbers :meth:`Incident.record` already has at hand."""
    level = 2 if max_score >= 20 else 1 if max_score >= 3 else 0
    if events >= 10 or entities >= 3:
        level += 1
    if leakage and any(t in CREDENTIAL_LEAKS for t, _ in leakage):
        level = max(level, 2)
    if campaign:
        level += 1
    return SEVERITIES[min(level, 3)]


@dataclass(slots=True)
class _Event:
    """What the tracker needs of one flagged record (one per flagged event: slotted)."""

    event_id: str | None
    entity: str | None
    time: float
    signature: list[str]
    reasons: list[tuple[str, str]]
    leakage: list[tuple[str, str]]
    score: float
    rank: float
    values: dict[str, str]
    keys: list[str]
    """Its index keys: ``entity:<e>`` (first, when it has an entity), ``<link field>:<v>``."""


class IncidentTracker:
    """Groups flagged records into incidents (see the module docstring); one per process."""

    def __init__(self, config: IncidentConfig) -> None:
        self.config = config
        self._link_order = tuple(config.link_fields)
        self._links = frozenset(config.link_fields)
        self._reset()

    def _reset(self) -> None:
        self.open: dict[str, Incident] = {}
        self.closed: OrderedDict[str, bytes] = OrderedDict()
        """Recently closed incidents' last records, serialised (``orjson.dumps``): a replay
        re-emits them, a checkpoint writes them. Final (nobody changes a closed record), so
        each is serialised once, and kept as bytes, which the cyclic garbage collector does
        not walk: as dicts, the ~12 containers of each of 2,000 records cost the Kafka
        pipeline ~0.3 us per event in collections."""
        self._closed_ids: dict[str, tuple[str, ...]] = {}
        """The event ids each record in ``closed`` lists (forgotten with it)."""
        self._owner: dict[str, str] = {}
        """event id -> incident id (open and recently closed incidents)."""
        self._index: dict[str, set[str]] = {}
        """``entity:<e>`` / ``<link field>:<v>`` -> open incident ids."""
        self._keys_of: dict[str, list[str]] = {}
        """Open incident id -> the keys it is indexed under (dropped from the index at
        its close)."""
        self._closed_now: list[dict[str, Any]] = []
        """Closed since the last emission (idle, or evicted past ``max_open``)."""
        self._hidden_ids: dict[str, list[str]] = {}
        """Event ids of recently closed incidents beyond those their record lists."""
        self.watermark = -math.inf
        self.flagged_seen = 0
        self.opened = 0
        self.dirty = False
        """Changed since the last :meth:`state` (a checkpoint is due)."""

    def __len__(self) -> int:
        return len(self.open)

    # ------------------------------------------------------------------ input
    def observe(
        self,
        records: Sequence[dict[str, Any]],
        times: Sequence[float] | np.ndarray | None = None,
        values: dict[str, Sequence[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Fold flagged ``records`` in (others are ignored); the records of the incidents this
        opened, updated, closed or re-met (a replay), in a stable order.

        ``times``: per record, event time in epoch seconds (NaN: unknown; then the record's
        ``event_time`` is parsed, else the wall clock); ``values``: per indicator/link field,
        per record, the event's value of it.
        """
        touched: dict[str, None] = {}
        replayed: dict[str, None] = {}
        owners = self._owner
        if isinstance(times, np.ndarray):
            times = times.tolist()  # (Python floats: indexing an array per event is slower)
        columns = list(values.items()) if values else []
        with no_cyclic_gc():
            for i, record in enumerate(records):
                if not flagged(record):
                    continue
                eid = record.get("event_id")
                if eid is not None:
                    eid = str(eid)
                    owner = owners.get(eid)
                    if owner is not None:  # a replayed event: its incident is re-emitted
                        replayed[owner] = None
                        continue
                t = float(times[i]) if times is not None else math.nan
                event = self._event(record, eid, t, columns, i)
                self.flagged_seen += 1
                touched[self._join(event).incident_id] = None
            return self._emit(touched, replayed)

    def observe_batch(
        self, records: Sequence[dict[str, Any]], featurized: Any
    ) -> list[dict[str, Any]]:
        """:meth:`observe` for one pipeline batch: only the flagged rows' records are built
        (``ScoreRecords.records_at``), with their times and indicator values from the
        featurizer's output."""
        with no_cyclic_gc():  # (parsing the flagged records allocates as much as folding)
            return self._observe_batch(records, featurized)

    def _observe_batch(
        self, records: Sequence[dict[str, Any]], featurized: Any
    ) -> list[dict[str, Any]]:
        flagged_rows = getattr(records, "flagged_rows", None)
        if flagged_rows is None:  # plain dicts
            rows = np.array([i for i, r in enumerate(records) if flagged(r)], dtype=np.int64)
            chosen: Sequence[dict[str, Any]] = [records[int(i)] for i in rows]
        else:
            rows = flagged_rows()
            chosen = records.records_at(rows)  # type: ignore[attr-defined]
        if len(rows) == 0:
            return self._emit({}, {})
        times = None
        if featurized is not None and getattr(featurized, "times", None) is not None:
            times = np.asarray(_host(featurized.times), dtype=np.float64)[rows]
        values: dict[str, Sequence[Any]] = {}
        frame = getattr(featurized, "frame", None)
        if frame is not None:
            for name in dict.fromkeys(self.config.link_fields + self.config.indicator_fields):
                if name in frame.columns:
                    col = frame[name]
                    values[name] = _host_list(col, rows)
        return self.observe(chosen, times, values)

    def _event(
        self,
        record: dict[str, Any],
        event_id: str | None,
        t: float,
        columns: list[tuple[str, Sequence[Any]]],
        i: int,
    ) -> _Event:
        """The tracker's view of flagged ``record`` (row ``i`` of ``columns``' values).

        Runs once per flagged event, hence one pass over the reasons and no helpers beyond
        the shared phrase: the signature is the leaked types then the top model reasons'
        fields; the reasons in words, the top model ones then the leakage detector's."""
        if not math.isfinite(t):
            t = _parse_time(record.get("event_time"))
        found = record.get("leakage")
        leaks = [(str(x["type"]), str(x["field"])) for x in found] if found else []
        signature = [f"leak:{type_}" for type_, _ in leaks]
        reasons: list[tuple[str, str]] = []
        leak_reasons: list[tuple[str, str]] = []
        room = self.config.reasons_per_event
        for r in record.get("reasons") or ():
            if "leakage" in r:
                leak_reasons.append((str(r.get("field")), reason_phrase(r)))
            elif room:
                room -= 1
                name = str(r.get("field"))
                signature.append(name)
                text = r.get("text")  # reason_phrase(r), inline
                if not (isinstance(text, str) and text):
                    value = r.get("value")
                    text = f"unusual {name}={'?' if value is None else value}"
                reasons.append((name, text))
        score = float(record.get("anomaly_score") or 0.0)
        threshold = float(record.get("threshold") or 0.0)
        combined = record.get("combined_score")  # event_rank(record), inline
        if combined is not None:
            rank = float(combined)
        elif score <= 0 or threshold <= 0:
            rank = 0.0
        else:
            rank = math.log(score / threshold)
        vals: dict[str, str] = {}
        for name, col in columns:
            v = col[i]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                vals[name] = str(v)
        entity = record.get("entity")
        if entity is None:
            keys = []
        else:
            entity = str(entity)
            keys = [f"entity:{entity}"]
        for name in self._link_order:
            v = vals.get(name)
            if v is not None:
                keys.append(f"{name}:{v}")
        return _Event(
            event_id,
            entity,
            t,
            signature,
            reasons + leak_reasons if leak_reasons else reasons,
            leaks,
            score / threshold if threshold > 0 else 0.0,
            rank,
            vals,
            keys,
        )

    def _join(self, event: _Event) -> Incident:
        c = self.config
        best: Incident | None = None
        sig = set(event.signature)
        gap, span, most = c.gap_s, c.max_span_s, c.max_events
        stale = self.watermark - gap
        t = event.time
        keys = event.keys
        for key in keys:
            for iid in self._index.get(key, ()):
                inc = self.open[iid]
                first, last = inc.first_seen, inc.last_seen
                if last < stale:
                    continue  # closed by the stream's time (emitted at the batch's end)
                if t > last + gap or t < first - gap:
                    continue
                if max(t, last) - min(t, first) > span:
                    continue
                if inc.event_count >= most or sig.isdisjoint(inc.signature):
                    continue
                if best is None or last > best.last_seen:
                    best = inc
        if best is None:
            best = self._new(event)
        self._add(best, event)
        return best

    def _new(self, event: _Event) -> Incident:
        first = event.event_id or f"anon-{self.flagged_seen}-{event.time}"
        iid = incident_id(self.config.site, first)
        while iid in self.open:  # (a duplicate event id at one site; keep them apart)
            first += "'"
            iid = incident_id(self.config.site, first)
        inc = Incident(iid, event.time, event.time)
        self.open[iid] = inc
        self._keys_of[iid] = []
        self.opened += 1
        if len(self.open) > self.config.max_open:
            oldest = min(self.open.values(), key=lambda x: x.last_seen)
            self._close(oldest)
        return inc

    def _add(self, inc: Incident, event: _Event) -> None:
        """Fold ``event`` into ``inc``."""
        c = self.config
        iid = inc.incident_id
        index = self._index
        indexed = self._keys_of[iid]
        if event.event_id is None:
            inc.anonymous_events += 1
        else:
            inc.event_ids.append(event.event_id)
            self._owner[event.event_id] = iid
        t = event.time
        if t < inc.first_seen:
            inc.first_seen = t
        if t > inc.last_seen:
            inc.last_seen = t
        entity = event.entity
        if entity is not None and entity not in inc.entities and len(inc.entities) < c.max_values:
            inc.entities.append(entity)
            key = event.keys[0]  # (the entity's)
            _index_add(index, key, iid)
            indexed.append(key)
        for s in event.signature:
            if s not in inc.signature:
                inc.signature.append(s)
        for f, text in event.reasons:
            texts = inc.reasons.get(f)
            if texts is None:
                inc.reasons[f] = {text: 1}
            else:
                texts[text] = texts.get(text, 0) + 1
        for pair in event.leakage:
            if list(pair) not in inc.leakage:
                inc.leakage.append(list(pair))
        for name, v in event.values.items():
            kept = inc.values.get(name)
            if kept is None:
                kept = inc.values[name] = []
            if v not in kept and len(kept) < c.max_values:
                kept.append(v)
                if name in self._links:
                    key = f"{name}:{v}"
                    _index_add(index, key, iid)
                    indexed.append(key)
        if event.score > inc.max_score:
            inc.max_score = event.score
        if event.rank > inc.max_rank:
            inc.max_rank = event.rank
        if t > self.watermark:
            self.watermark = t

    # ------------------------------------------------------------------ closing
    def _close(self, inc: Incident) -> dict[str, Any]:
        inc.status = "closed"
        record = ClosedRecord(inc.record(self.config, final=True))
        record.encoded = orjson.dumps(record)
        iid = inc.incident_id
        del self.open[iid]
        index = self._index
        for key in self._keys_of.pop(iid):
            ids = index.get(key)
            if ids is not None:
                ids.discard(iid)
                if not ids:
                    del index[key]
        if self.config.recently_closed > 0:
            self._remember(record)
            while len(self.closed) > self.config.recently_closed:
                old, _ = self.closed.popitem(last=False)
                for eid in self._closed_ids.pop(old, ()):
                    self._owner.pop(eid, None)
                for eid in self._hidden_ids.pop(old, ()):
                    self._owner.pop(eid, None)
            hidden = inc.event_ids[self.config.event_ids_in_record :]
            if hidden:
                self._hidden_ids[inc.incident_id] = hidden
        else:
            for eid in inc.event_ids:
                self._owner.pop(eid, None)
        self.dirty = True
        self._closed_now.append(record)
        return record

    def _remember(self, record: dict[str, Any]) -> None:
        iid = record["incident_id"]
        self.closed[iid] = encoded_record(record)
        self._closed_ids[iid] = tuple(record["event_ids"])

    def _index_keys(self, inc: Incident) -> list[str]:
        keys = [f"entity:{e}" for e in inc.entities]
        return keys + [f"{f}:{v}" for f in self.config.link_fields for v in inc.values.get(f, [])]

    def close_idle(self) -> list[dict[str, Any]]:
        """Close the incidents the watermark has left ``gap_s`` behind; their final records."""
        limit = self.watermark - self.config.gap_s
        return [self._close(inc) for inc in list(self.open.values()) if inc.last_seen < limit]

    def close_all(self) -> list[dict[str, Any]]:
        """Close every open incident (end of a finite stream); the final records of those
        closed since the last emission."""
        for inc in list(self.open.values()):
            self._close(inc)
        closed, self._closed_now = self._closed_now, []
        return closed

    def _emit(self, touched: dict[str, None], replayed: dict[str, None]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if touched:
            self.dirty = True
        self.close_idle()
        for record in self._closed_now:
            out[record["incident_id"]] = record
        self._closed_now = []
        for iid in list(touched) + list(replayed):
            if iid in out:
                continue
            inc = self.open.get(iid)
            if inc is not None:
                out[iid] = inc.record(self.config)
            elif iid in self.closed:
                encoded = self.closed[iid]
                out[iid] = record = ClosedRecord(orjson.loads(encoded))
                record.encoded = encoded
        return list(out.values())

    # ------------------------------------------------------------------ views
    def incident_of(self, event_id: str) -> str | None:
        """The id of the (open or recently closed) incident holding ``event_id``."""
        return self._owner.get(event_id)

    def records(self) -> list[dict[str, Any]]:
        """Every open and remembered closed incident, most severe first."""
        records = [inc.record(self.config) for inc in self.open.values()]
        records += [orjson.loads(b) for b in self.closed.values()]
        return sorted(records, key=incident_order)

    def set_campaign(
        self, iid: str, campaign: dict[str, Any], again: bool = False
    ) -> dict[str, Any] | None:
        """Mark an open incident as part of a cross-site campaign; its new record (None when
        it is no longer open, or already marked so, unless ``again``: then its current record,
        for a caller that cannot know whether the record it sent last time was delivered)."""
        inc = self.open.get(iid)
        if inc is None:
            return None
        if inc.campaign == campaign:
            return inc.record(self.config) if again else None
        inc.campaign = campaign
        self.dirty = True
        return inc.record(self.config)

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        """Everything needed to resume (JSON-serialisable)."""
        return {
            **self._state_head(),
            "closed": [orjson.loads(b) for b in self.closed.values()],
            "hidden": self._hidden_ids,
        }

    def _state_head(self) -> dict[str, Any]:
        """The state before its ``closed`` and ``hidden`` parts."""
        self.dirty = False
        return {
            "state_version": STATE_VERSION,
            "site": self.config.site,
            "watermark": None if not math.isfinite(self.watermark) else self.watermark,
            "flagged_seen": self.flagged_seen,
            "opened": self.opened,
            "open": [vars(inc) for inc in self.open.values()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"incident state version {state.get('state_version')!r} unknown")
        if state.get("site") != self.config.site:
            raise ValueError(
                f"incident state is of site {state.get('site')!r}, this pipeline is "
                f"{self.config.site!r}"
            )
        self._reset()
        wm = state.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self.flagged_seen = int(state.get("flagged_seen", 0))
        self.opened = int(state.get("opened", 0))
        for raw in state["open"]:
            inc = Incident(**raw)
            self.open[inc.incident_id] = inc
            for eid in inc.event_ids:
                self._owner[eid] = inc.incident_id
            keys = self._keys_of[inc.incident_id] = self._index_keys(inc)
            for key in keys:
                self._index.setdefault(key, set()).add(inc.incident_id)
        for record in state["closed"]:
            self._remember(record)
            for eid in record["event_ids"]:
                self._owner[eid] = record["incident_id"]
        for iid, ids in state.get("hidden", {}).items():
            self._hidden_ids[iid] = list(ids)
            for eid in ids:
                self._owner[eid] = iid

    def encoded_state(self) -> bytes:
        """``orjson.dumps(self.state())``, byte for byte, for a fraction of the CPU.

        The Kafka pipeline checkpoints before its commits (every ``checkpoint_interval_s``);
        the ``recently_closed`` records are most of each write and never change: they are
        kept serialised (``closed``) and written as they are."""
        return b"".join(
            (
                orjson.dumps(self._state_head())[:-1],
                b',"closed":[',
                b",".join(self.closed.values()),
                b'],"hidden":',
                orjson.dumps(self._hidden_ids),
                b"}",
            )
        )

    def checkpoint(self, path: Path) -> None:
        """Write :meth:`state` atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.encoded_state())
        os.replace(tmp, path)

    def restore(self, path: Path) -> bool:
        """Load a checkpoint if one exists (False: none, start empty)."""
        if not path.exists():
            return False
        self.load_state(orjson.loads(path.read_bytes()))
        log.info("incidents: restored %d open incidents from %s", len(self.open), path)
        return True


def incident_order(record: dict[str, Any]) -> tuple[Any, ...]:
    """Most severe first, then the highest combined score, then the id (stable)."""
    return (
        -SEVERITIES.index(record["severity"]),
        -float(record["combined_score"]),
        record["incident_id"],
    )


def latest_revisions(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per incident id, its highest revision (what a reader of the topic/file keeps)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        kept = latest.get(r["incident_id"])
        if kept is None or r["revision"] >= kept["revision"]:
            latest[r["incident_id"]] = r
    return latest


def render_incidents(records: Sequence[dict[str, Any]], limit: int = 10) -> str:
    """The analyst's short list: top incidents in words (``secureai tail``, the demo)."""
    top = sorted(records, key=incident_order)[:limit]
    counts = Counter(r["severity"] for r in records)
    events = sum(int(r["event_count"]) for r in records)
    lines = [
        f"{len(records)} incidents from {events} flagged events ("
        + ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s])
        + f"); top {len(top)}",
        f"{'severity':<9} {'events':>6} {'max x thr':>9}  {'first seen':<20} "
        f"{'entities':<24} reasons",
    ]
    for r in top:
        ents = ", ".join(r["entities"][:3]) + (" ..." if len(r["entities"]) > 3 else "")
        why = " | ".join(x["text"] for x in r["reasons"])
        if r.get("campaign"):
            why = f"[campaign at {r['campaign'].get('sites', '?')} sites] " + why
        lines.append(
            f"{r['severity']:<9} {r['event_count']:>6} {r['max_score']:>9.1f}  "
            f"{r['first_seen']:<20} {ents[:24]:<24} {why}"
        )
    return "\n".join(lines)


def _index_add(index: dict[str, set[str]], key: str, iid: str) -> None:
    """``index.setdefault(key, set()).add(iid)`` without a throwaway set per call."""
    ids = index.get(key)
    if ids is None:
        index[key] = {iid}
    else:
        ids.add(iid)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a batch is folded in.

    A batch allocates a few dozen small acyclic containers per flagged event (parsed
    records, events, incident records); each ~700 of them started a collection that also
    walked the long-lived state, ~10% of the stage's CPU. Reference counting still frees
    everything; the collector runs once afterwards, as in ``records.build_records``."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _parse_time(value: Any) -> float:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                x = float(value)
                return x / 1000 if x > 1e11 else x
            except ValueError:
                pass
    return time.time()


def _host(array: Any) -> np.ndarray:
    """A backend array on the host (CuPy on the GPU path)."""
    get = getattr(array, "get", None)
    return np.asarray(get() if callable(get) else array)


def _host_list(col: Any, rows: np.ndarray) -> list[Any]:
    """The values of ``rows`` as Python objects (NumPy's take: ``Series.iloc`` costs ~90 us
    a column, for the few flagged rows of a batch)."""
    to_pandas = getattr(col, "to_pandas", None)  # cuDF
    series = to_pandas() if callable(to_pandas) else col
    return list(series.to_numpy(dtype=object)[rows].tolist())
