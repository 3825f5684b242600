"""How well incidents serve an analyst, measured against the generator's ground truth.

Two questions (docs/results.md, "Incidents"): how much do incidents compress the alerts
(flagged events per incident), and does an attack land in an incident that explains it (its top
reason names a field the generator made unusual, ``synthetic.schema.INJECTED_FIELDS``)?

>>> incidents = [{"incident_id": "inc-1", "event_count": 2, "severity": "high",
...               "reasons": [{"field": "country", "text": "...", "events": 2}]}]
>>> owner = {"e1": "inc-1", "e2": "inc-1"}.get
>>> m = incident_metrics(incidents, ["e1", "e2", "e3"], ["impossible_travel"] * 2 + ["normal"],
...                      owner)
>>> m["flagged_per_incident"], m["attacks_in_incident"], m["attacks_explained_top1"]
(2.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from synthetic.schema import INJECTED_FIELDS

NORMAL_KINDS = frozenset({"normal", "", "none", "nan"})


def incident_metrics(
    incidents: Sequence[dict[str, Any]],
    event_ids: Sequence[Any],
    kinds: Sequence[Any] | np.ndarray | None,
    incident_of: Callable[[str], str | None],
) -> dict[str, Any]:
    """Compression and attack coverage of ``incidents`` (their final records) over a stream
    whose events have ``event_ids`` and ground-truth ``kinds`` (``normal`` for benign);
    ``incident_of`` maps an event id to its incident's id (``IncidentTracker.incident_of``)."""
    by_id = {r["incident_id"]: r for r in incidents}
    flagged = sum(int(r["event_count"]) for r in incidents)
    out: dict[str, Any] = {
        "incidents": len(incidents),
        "flagged_events": flagged,
        "flagged_per_incident": round(flagged / len(incidents), 3) if incidents else None,
        "by_severity": dict(sorted(Counter(r["severity"] for r in incidents).items())),
    }
    if kinds is None:
        return out
    attacks = in_incident = top1 = top3 = 0
    per_kind: dict[str, list[int]] = {}
    for eid, kind in zip(event_ids, kinds, strict=True):
        kind = str(kind)
        if kind in NORMAL_KINDS:
            continue
        attacks += 1
        counts = per_kind.setdefault(kind, [0, 0, 0])
        counts[0] += 1
        iid = None if eid is None else incident_of(str(eid))
        if iid is None or iid not in by_id:
            continue
        in_incident += 1
        counts[1] += 1
        fields = [x["field"] for x in by_id[iid]["reasons"]]
        injected = INJECTED_FIELDS.get(kind, frozenset())
        if fields and fields[0] in injected:
            top1 += 1
            counts[2] += 1
        if injected & set(fields):
            top3 += 1
    out.update(
        attacks=attacks,
        attacks_in_incident=round(in_incident / attacks, 4) if attacks else None,
        attacks_explained_top1=round(top1 / attacks, 4) if attacks else None,
        attacks_explained_top3=round(top3 / attacks, 4) if attacks else None,
        per_kind={
            k: {
                "attacks": n,
                "in_incident": round(i / n, 4),
                "explained_top1": round(e / n, 4),
            }
            for k, (n, i, e) in sorted(per_kind.items())
        },
    )
    return out
