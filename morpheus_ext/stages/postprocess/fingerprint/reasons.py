"""Reasons in words: what was unusual about an event *for its entity*, and the numbers behind it.

An analyst reads "country=BR never seen for alice in 30 days (84 events; usual: US)" and can
act on it; a tool reads the same facts from the reason's ``entity`` object. The numbers come
from :class:`~morpheus_ext.stages.postprocess.fingerprint.scoring.FingerprintScores` (computed for
the whole batch
before it was learned); here each reason only becomes one short string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores

DAY_S = 86_400


def number_text(x: float) -> str:
    """12,345 / 0.5 — readable magnitudes for volumes and medians."""
    if abs(x) >= 10 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.2g}"


def ratio_text(r: float) -> str:
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 0.5:
        return f"{r:.1f}x"
    return f"1/{1 / max(r, 1e-9):.0f}"


def day_text(day: int) -> str | None:
    return None if day < 0 else datetime.fromtimestamp(day * DAY_S, UTC).strftime("%Y-%m-%d")


def rounded_lists(values: np.ndarray, digits: int) -> list[list[Any]]:
    """Rounded Python floats, None where not finite (one vectorised pass, then ``tolist``)."""
    out = np.round(values.astype(np.float64), digits).astype(object)
    out[~np.isfinite(values)] = None
    return list(out.tolist())


def _strings(codes: np.ndarray, spell: Any) -> list[list[Any]]:
    """``spell(code)`` for each element, computed once per distinct code."""
    inv, uniq = pd.factorize(codes.ravel())
    table = np.array([spell(int(u)) for u in uniq] + [None], dtype=object)
    return list(table[inv.reshape(codes.shape)].tolist())


HOUR_WINDOWS = [f"{s:02d}:00-{(e + 1) % 24:02d}:00 UTC" for s in range(24) for e in range(24)]
KIND_OTHER, KIND_CAT, KIND_NUM, KIND_HOUR = 0, 1, 2, 3


def entity_reasons(records: list[dict[str, Any]], fp: FingerprintScores, names: list[str]) -> None:
    """Add a text and the entity's numbers to every reason of the explained records
    (``fp.reasons.explained``), in place; the records' fingerprint fields themselves are
    declared with the others (``records.RECORD_FIELDS``).

    ``records[i]["reasons"]`` must follow ``fp.reasons.fields[i]``. Everything numeric is
    prepared for the whole batch at once; per reason there is one dict and one string.
    """
    rs = fp.reasons
    if rs is None:
        raise ValueError("reasons need the baselines' scores with explain=True")
    plan = fp.plan
    kind_of = np.zeros(plan.n_fields, dtype=np.int64)
    kind_of[plan.cat_index] = KIND_CAT
    kind_of[plan.num_index] = KIND_NUM
    if plan.hour_index is not None:
        kind_of[plan.hour_index] = KIND_HOUR
    use = fp.entity_baseline
    kind_arr = np.where(use[:, None] & (rs.events > 0), kind_of[rs.fields], KIND_OTHER)
    kind = kind_arr.tolist()
    value_names = fp.names.names if fp.names is not None else {}
    min_events = fp.config.min_events
    history = fp.history.tolist()
    days = np.maximum(1, np.round((fp.clock - fp.since) / DAY_S)).astype(np.int64).tolist()
    nov = rounded_lists(np.take_along_axis(fp.novelty, rs.fields, 1), 3)
    z_ent = rounded_lists(rs.z_entity, 2)
    seen, events, beyond = rs.seen.tolist(), rs.events.tolist(), rs.beyond.tolist()
    first_seen = _strings(np.where(kind_arr == KIND_CAT, rs.day, -1), day_text)
    usual = _strings(rs.usual.astype(np.int64), lambda k: value_names.get(k) if k else None)
    share = rounded_lists(rs.share, 3)
    median, ratio = rounded_lists(rs.median, 1), rounded_lists(rs.ratio, 2)
    median_s = _strings_of(rs.median, kind_arr == KIND_NUM, number_text)
    ratio_s = _strings_of(rs.ratio, kind_arr == KIND_NUM, ratio_text)
    hours_idx = np.where(rs.hour_from >= 0, rs.hour_from * 24 + np.maximum(rs.hour_to, 0), -1)
    hours = _strings(hours_idx, lambda h: HOUR_WINDOWS[h] if h >= 0 else None)
    within = rs.hour_inside.tolist()
    rows = zip(
        records,
        rs.explained.tolist(),
        history,
        days,
        kind,
        nov,
        z_ent,
        seen,
        events,
        beyond,
        first_seen,
        usual,
        share,
        median,
        ratio,
        median_s,
        ratio_s,
        hours,
        within,
        strict=True,
    )
    for (
        rec, explained_i, hist_i, days_i, kind_i, nov_i, z_i,
        seen_i, events_i, beyond_i, first_i, usual_i, share_i, median_i, ratio_i, med_s_i,
        rat_s_i, hours_i, within_i,
    ) in rows:  # fmt: skip
        who = rec["entity"] or "this entity"
        if not explained_i:
            continue
        for j, reason in enumerate(rec["reasons"]):
            how, value = kind_i[j], reason["value"]
            if how == KIND_OTHER or value is None:
                reason["text"] = _population(reason, who, hist_i, min_events)
                continue
            field, n, z = reason["field"], events_i[j], z_i[j]
            detail: dict[str, Any] = {"novelty": nov_i[j], "events": n}
            if z is not None:
                detail["z_entity"] = z
            if how == KIND_CAT:
                c, u = seen_i[j], usual_i[j]
                detail["seen"], detail["first_seen"] = c, first_i[j]
                if u is not None:
                    detail["usual"], detail["usual_share"] = u, share_i[j]
                if c == 0:
                    tail = f"; usual: {u or chr(34) * 2}" if u is not None else ""
                    text = (
                        f"{field}={value} never seen for {who} in {days_i} days ({n} events{tail})"
                    )
                else:
                    frac = c / n
                    often = "usual" if frac >= 0.3 else "rare" if frac < 0.05 else "occasional"
                    text = f"{field}={value} {often} for {who}: {c} of {n} events ({frac:.0%})"
            elif how == KIND_NUM:
                b, r = beyond_i[j], ratio_i[j]
                detail["median"], detail["ratio"], detail["as_extreme_before"] = median_i[j], r, b
                if med_s_i[j] is None or rat_s_i[j] is None:
                    text = f"{field}={value}: {who} has no history of {field}"
                else:
                    shown = (
                        number_text(float(value)) if isinstance(value, int | float) else str(value)
                    )
                    text = (
                        f"{field} {shown} is {rat_s_i[j]} the median of {who} "
                        f"({med_s_i[j]}, {n} events)"
                    )
                    if b == 0:
                        text += "; never this high before" if r >= 1 else "; never this low before"
            else:
                span = hours_i[j]
                detail["seen"], detail["usual_hours"] = seen_i[j], span
                where = "within" if within_i[j] else "outside"
                text = (
                    f"{value} is {where} the usual hours of {who} ({span}); "
                    f"{seen_i[j]} of {n} events at this hour"
                )
            reason["text"] = text
            reason["entity"] = detail


def _strings_of(values: np.ndarray, where: np.ndarray, spell: Any) -> list[list[Any]]:
    """``spell(value)`` where ``where`` and the value is finite, else None."""
    out = np.full(values.shape, None, dtype=object)
    ok = where & np.isfinite(values)
    out[ok] = [spell(float(v)) for v in values[ok].tolist()]
    return list(out.tolist())


def _population(reason: dict[str, Any], who: str, history: int, min_events: int) -> str:
    field, value, z = reason["field"], reason["value"], reason["z"]
    what = f"{field}={value}" if value is not None else f"{field} (absent)"
    verdict = "unusual for the population" if z >= 3 else "against the population"
    note = f"; {who} has {history} of the {min_events} events a baseline needs"
    return f"{what}: z {z:.1f} {verdict}" + (note if history < min_events else "")
