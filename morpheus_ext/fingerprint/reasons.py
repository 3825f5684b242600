"""Reasons in words: what was unusual about an event *for its entity*, and the numbers behind it.

An analyst reads "country=BR never seen for alice in 30 days (84 events; usual: US)" and can
act on it; a tool reads the same facts from the reason's ``entity`` object. The numbers come
from :class:`~morpheus_ext.fingerprint.scoring.FingerprintScores` (computed for the whole batch
before it was learned); here each reason only becomes one short string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.fingerprint.scoring import FingerprintScores

_DAY = 86_400


def _num(x: float) -> str:
    """12,345 / 0.5 — readable magnitudes for volumes and medians."""
    if abs(x) >= 10 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.2g}"


def _ratio(r: float) -> str:
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 0.5:
        return f"{r:.1f}x"
    return f"1/{1 / max(r, 1e-9):.0f}"


def _date(day: int) -> str | None:
    return None if day < 0 else datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%d")


def _py(values: np.ndarray, digits: int) -> list[list[Any]]:
    """Rounded Python floats, None where not finite (one vectorised pass, then ``tolist``)."""
    out = np.round(values.astype(np.float64), digits).astype(object)
    out[~np.isfinite(values)] = None
    return list(out.tolist())


def _strings(codes: np.ndarray, spell: Any) -> list[list[Any]]:
    """``spell(code)`` for each element, computed once per distinct code."""
    inv, uniq = pd.factorize(codes.ravel())
    table = np.array([spell(int(u)) for u in uniq] + [None], dtype=object)
    return list(table[inv.reshape(codes.shape)].tolist())


_HOURS = [f"{s:02d}:00-{(e + 1) % 24:02d}:00 UTC" for s in range(24) for e in range(24)]
_KIND_OTHER, _KIND_CAT, _KIND_NUM, _KIND_HOUR = 0, 1, 2, 3


def entity_reasons(records: list[dict[str, Any]], fp: FingerprintScores, names: list[str]) -> None:
    """Add the fingerprint fields to ``records`` (in place) and, in the explained records
    (``fp.reasons.explained``), a text to every reason.

    ``records[i]["reasons"]`` must follow ``fp.reasons.fields[i]``. Everything numeric is
    prepared for the whole batch at once; per reason there is one dict and one string.
    """
    rs = fp.reasons
    if rs is None:
        raise ValueError("reasons need the baselines' scores with explain=True")
    plan = fp.plan
    kind_of = np.zeros(plan.n_fields, dtype=np.int64)
    kind_of[plan.cat_index] = _KIND_CAT
    kind_of[plan.num_index] = _KIND_NUM
    if plan.hour_index is not None:
        kind_of[plan.hour_index] = _KIND_HOUR
    use = fp.entity_baseline
    kind_arr = np.where(use[:, None] & (rs.events > 0), kind_of[rs.fields], _KIND_OTHER)
    kind = kind_arr.tolist()
    value_names = fp.names.names if fp.names is not None else {}
    min_events = fp.config.min_events
    uses, history = use.tolist(), fp.history.tolist()
    days = np.maximum(1, np.round((fp.clock - fp.since) / _DAY)).astype(np.int64).tolist()
    entity_score = _py(fp.entity_score, 3)
    combined = _py(fp.combined, 3)
    alert = fp.combined_anomaly.tolist()
    nov = _py(np.take_along_axis(fp.novelty, rs.fields, 1), 3)
    z_ent = _py(rs.z_entity, 2)
    seen, events, beyond = rs.seen.tolist(), rs.events.tolist(), rs.beyond.tolist()
    first_seen = _strings(np.where(kind_arr == _KIND_CAT, rs.day, -1), _date)
    usual = _strings(rs.usual.astype(np.int64), lambda k: value_names.get(k) if k else None)
    share = _py(rs.share, 3)
    median, ratio = _py(rs.median, 1), _py(rs.ratio, 2)
    median_s = _strings_of(rs.median, kind_arr == _KIND_NUM, _num)
    ratio_s = _strings_of(rs.ratio, kind_arr == _KIND_NUM, _ratio)
    hours_idx = np.where(rs.hour_from >= 0, rs.hour_from * 24 + np.maximum(rs.hour_to, 0), -1)
    hours = _strings(hours_idx, lambda h: _HOURS[h] if h >= 0 else None)
    within = rs.hour_inside.tolist()
    rows = zip(
        records,
        rs.explained.tolist(),
        uses,
        history,
        days,
        entity_score,
        combined,
        alert,
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
        rec, explained_i, use_i, hist_i, days_i, score_i, comb_i, alert_i, kind_i, nov_i, z_i,
        seen_i, events_i, beyond_i, first_i, usual_i, share_i, median_i, ratio_i, med_s_i,
        rat_s_i, hours_i, within_i,
    ) in rows:  # fmt: skip
        who = rec["entity"] or "this entity"
        rec["baseline"] = "entity" if use_i else "population"
        rec["entity_events"] = hist_i
        rec["entity_score"] = score_i if use_i else None
        rec["combined_score"] = comb_i
        rec["combined_anomaly"] = alert_i
        if not explained_i:
            continue
        for j, reason in enumerate(rec["reasons"]):
            how, value = kind_i[j], reason["value"]
            if how == _KIND_OTHER or value is None:
                reason["text"] = _population(reason, who, hist_i, min_events)
                continue
            field, n, z = reason["field"], events_i[j], z_i[j]
            detail: dict[str, Any] = {"novelty": nov_i[j], "events": n}
            if z is not None:
                detail["z_entity"] = z
            if how == _KIND_CAT:
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
            elif how == _KIND_NUM:
                b, r = beyond_i[j], ratio_i[j]
                detail["median"], detail["ratio"], detail["as_extreme_before"] = median_i[j], r, b
                if med_s_i[j] is None or rat_s_i[j] is None:
                    text = f"{field}={value}: {who} has no history of {field}"
                else:
                    shown = _num(float(value)) if isinstance(value, int | float) else str(value)
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


# --------------------------------------------------------------------------- column-wise
# The same texts and numbers as :func:`entity_reasons`, as JSON fragments for a whole batch: one
# Arrow string kernel per piece of a sentence, numbers spelled by vectorised rounding (Python's
# own formatting only for the rare values where float rounding could tip a digit, and once per
# distinct value where the spelling has no cheap vectorised form). Byte for byte what
# ``orjson.dumps`` writes of the dicts (tests/test_fingerprint_records.py).

_S = pa.string()


def _pa(strings: list[Any]) -> pa.Array:
    return pa.array(strings, type=_S)


def _ints(values: np.ndarray) -> pa.Array:
    """``str(int)`` for every element."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), _S)


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _patch(arr: pa.Array, where: np.ndarray, strings: list[Any]) -> pa.Array:
    """``arr`` with the elements at ``where`` replaced by ``strings``."""
    if len(where) == 0:
        return arr
    take = np.arange(len(arr), dtype=np.int64)
    take[where] = len(arr) + np.arange(len(where))
    return pa.concat_arrays([arr, _pa(strings)]).take(take)


_FIXED_MAX = 10_000
_FIXED = [
    pa.array([f"{sign}{m}" for sign in ("", "-") for m in range(_FIXED_MAX)], type=pa.string()),
    pa.array(
        [f"{sign}{m // 10}.{m % 10}" for sign in ("", "-") for m in range(_FIXED_MAX)],
        type=pa.string(),
    ),
]


def _fixed(x: np.ndarray, digits: int) -> pa.Array:
    """``f"{v:.{digits}f}"`` for every element (digits 0 or 1), without a Python call per value.

    Python rounds the exact binary value; ``rint(|x| * 10**digits)`` agrees except where the
    scaled value sits within float error of a .5 tie (those, large and non-finite values go
    through Python). The spellings come from a table (one ``take``)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x) * 10**digits
    with np.errstate(invalid="ignore"):
        risky = ~np.isfinite(y) | (y >= _FIXED_MAX - 1)
        if digits:
            risky |= np.abs(y - np.floor(y) - 0.5) < 1e-6
    m = np.rint(np.where(risky, 0, y)).astype(np.int64)
    s = _FIXED[digits].take(m + np.signbit(x) * _FIXED_MAX)
    where = np.flatnonzero(risky)
    return _patch(s, where, [f"{v:.{digits}f}" for v in x[where].tolist()])


def _spelled(values: np.ndarray, spell: Any) -> pa.Array:
    """``spell(float)`` once per distinct value (bit-exact, so -0.0 stays apart from 0.0)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    inv, uniq = pd.factorize(x.view(np.int64))
    keys = np.asarray(uniq, dtype=np.int64).view(np.float64).tolist()
    return _pa([spell(v) for v in keys]).take(inv)


def _per_code(codes: np.ndarray, spell: Any) -> pa.Array:
    """``spell(code)`` once per distinct code (None -> null)."""
    inv, uniq = pd.factorize(np.asarray(codes))
    return _pa([spell(int(u)) for u in uniq.tolist()]).take(inv)


def escaped(text: str | None) -> str | None:
    """``text`` as inside a JSON string literal (orjson's spelling); None stays None."""
    return None if text is None else orjson.dumps(text).decode()[1:-1]


def _escape(texts: pa.Array) -> pa.Array:
    """:func:`escaped` for every element (once per distinct text, and only if one needs it)."""
    if not pc.any(pc.match_substring_regex(texts, r'[\x00-\x1f"\\]')).as_py():
        return texts
    inv, uniq = pd.factorize(np.asarray(texts.to_numpy(zero_copy_only=False), dtype=object))
    return _pa([escaped(t) for t in uniq.tolist()] + [None]).take(np.where(inv < 0, len(uniq), inv))


def _json_strings(inner: pa.Array) -> pa.Array:
    """JSON string literals of already escaped texts; null -> ``null``."""
    return pc.fill_null(_join('"', inner, '"'), "null")


def _json_numbers(values: np.ndarray, digits: int) -> pa.Array:
    """``orjson.dumps`` of :func:`_py`'s rounded floats (null where not finite)."""
    arr = np.round(np.ascontiguousarray(values, dtype=np.float64).reshape(-1), digits)
    if len(arr) == 0:
        return _pa([])
    text = orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()
    return pc.split_pattern(pa.array([text]), ",").flatten()


def _const(text: str, n: int) -> pa.Array:
    return pa.array([text], type=_S).take(np.zeros(n, dtype=np.int64))


_SEP = pa.array(["=", " (absent)"], type=pa.string())
_VERDICT = pa.array([" against the population", " unusual for the population"], type=pa.string())


def reason_fragments(
    fp: FingerprintScores,
    field_names: pa.Array,
    values: list[pa.Array],
    numbers: list[np.ndarray],
    numeric: list[np.ndarray],
    entities: pa.Array,
    top_z: np.ndarray,
) -> list[tuple[pa.Array, pa.Array]]:
    """:func:`entity_reasons` column-wise, as JSON fragments.

    Per reason slot ``j``: ``field_names[j]``/``values[j]`` are the slot's field name and the
    text of its value (``f"{value}"``, null for None) per row, both :func:`escaped`;
    ``numbers[j]`` the value as a float (NaN if none) and ``numeric[j]`` whether the field is
    numeric; ``top_z`` is the reasons' rounded ``z``. Returns, per slot, the reason's text
    (escaped, without quotes) and ``,"entity":{...}`` where the reason has one (else empty).
    Every row of ``fp`` is spelled: pass ``fp.take(rows)`` for the explained ones only.
    """
    rs = fp.reasons
    if rs is None:
        raise ValueError("reasons need the baselines' scores with explain=True")
    plan = fp.plan
    n, k = rs.fields.shape
    kind_of = np.zeros(plan.n_fields, dtype=np.int64)
    kind_of[plan.cat_index] = _KIND_CAT
    kind_of[plan.num_index] = _KIND_NUM
    if plan.hour_index is not None:
        kind_of[plan.hour_index] = _KIND_HOUR
    use = np.asarray(fp.entity_baseline, dtype=bool)
    kind_arr = np.where(use[:, None] & (rs.events > 0), kind_of[rs.fields], _KIND_OTHER)
    value_names = fp.names.names if fp.names is not None else {}
    min_events = fp.config.min_events
    history = np.asarray(fp.history, dtype=np.int64)
    who = pc.if_else(
        pc.fill_null(pc.greater(pc.utf8_length(entities), 0), False),
        _escape(entities),
        "this entity",
    ).cast(_S)
    days = _ints(np.maximum(1, np.round((fp.clock - fp.since) / _DAY)).astype(np.int64))
    hist_s = _ints(history)
    short = history < min_events
    note = pc.if_else(
        pa.array(short),
        _join("; ", who, " has ", hist_s, f" of the {min_events} events a baseline needs"),
        "",
    )
    novelty = np.take_along_axis(fp.novelty, rs.fields, 1)
    rows = np.arange(n)
    frags = []
    for j in range(k):
        name, value = field_names[j], values[j]
        has_value = np.asarray(pc.is_valid(value).to_numpy(zero_copy_only=False), dtype=bool)
        how = np.where(has_value, kind_arr[:, j], _KIND_OTHER)
        texts: list[pa.Array] = []
        details: list[pa.Array] = []
        order: list[np.ndarray] = []
        # population (or no value): the z against the population
        r = np.flatnonzero(how == _KIND_OTHER)
        if len(r):
            z = top_z[r, j]
            sep = _SEP.take((~has_value[r]).astype(np.int8))
            verdict = _VERDICT.take((z >= 3).astype(np.int8))
            texts.append(
                _join(
                    name.take(r),
                    sep,
                    value.take(r).fill_null(""),
                    ": z ",
                    _fixed(z, 1),
                    verdict,
                    note.take(r),
                )
            )
            details.append(_const("", len(r)))
            order.append(r)
        events = rs.events[:, j]
        n_s = _ints(events)
        z_ent = rs.z_entity[:, j]
        head = _join(
            ',"entity":{"novelty":',
            _json_numbers(novelty[:, j], 3),
            ',"events":',
            n_s,
            pc.if_else(
                pa.array(np.isfinite(z_ent)),
                _join(',"z_entity":', _json_numbers(z_ent, 2)),
                "",
            ),
        )
        seen = rs.seen[:, j]
        r = np.flatnonzero(how == _KIND_CAT)
        if len(r):
            c, e = seen[r], events[r]
            usual = _per_code(rs.usual[r, j], lambda u: escaped(value_names.get(u)) if u else None)
            has_usual = pc.is_valid(usual)
            subject = _join(name.take(r), "=", value.take(r))
            tail = pc.if_else(
                has_usual,
                _join("; usual: ", pc.if_else(pc.equal(usual, ""), '\\"\\"', usual)),
                "",
            )
            never = _join(
                subject, " never seen for ", who.take(r), " in ", days.take(r), " days (",
                n_s.take(r), " events", tail, ")",
            )  # fmt: skip
            frac = c / np.maximum(e, 1)
            often = _pa(["occasional", "usual", "rare"]).take(
                np.where(frac >= 0.3, 1, np.where(frac < 0.05, 2, 0))
            )
            some = _join(
                subject, " ", often, " for ", who.take(r), ": ", _ints(c), " of ", n_s.take(r),
                " events (", _fixed(frac * 100, 0), "%)",
            )  # fmt: skip
            texts.append(pc.if_else(pa.array(c == 0), never, some))
            first = _per_code(rs.day[r, j], _date)
            details.append(
                _join(
                    head.take(r),
                    ',"seen":',
                    _ints(c),
                    ',"first_seen":',
                    _json_strings(first),
                    pc.if_else(
                        has_usual,
                        _join(
                            ',"usual":',
                            _json_strings(usual),
                            ',"usual_share":',
                            _json_numbers(rs.share[r, j], 3),
                        ),
                        "",
                    ),
                    "}",
                )
            )
            order.append(r)
        r = np.flatnonzero(how == _KIND_NUM)
        if len(r):
            med, rat, b = rs.median[r, j], rs.ratio[r, j], rs.beyond[r, j]
            known = np.isfinite(med) & np.isfinite(rat)
            subj, w = name.take(r), who.take(r)
            shown = pc.if_else(
                pa.array(numeric[j][r]), _spelled(numbers[j][r], _num), value.take(r)
            )
            high = np.round(rat, 2) >= 1
            extreme = _pa(["", "; never this low before", "; never this high before"]).take(
                np.where(b == 0, np.where(high, 2, 1), 0)
            )
            said = _join(
                subj, " ", shown, " is ", _spelled(rat, _ratio), " the median of ", w, " (",
                _spelled(med, _num), ", ", n_s.take(r), " events)", extreme,
            )  # fmt: skip
            unknown = _join(subj, "=", value.take(r), ": ", w, " has no history of ", subj)
            texts.append(pc.if_else(pa.array(known), said, unknown))
            details.append(
                _join(
                    head.take(r),
                    ',"median":',
                    _json_numbers(med, 1),
                    ',"ratio":',
                    _json_numbers(rat, 2),
                    ',"as_extreme_before":',
                    _ints(b),
                    "}",
                )
            )
            order.append(r)
        r = np.flatnonzero(how == _KIND_HOUR)
        if len(r):
            hf, ht = rs.hour_from[r, j], rs.hour_to[r, j]
            span = _per_code(
                np.where(hf >= 0, hf * 24 + np.maximum(ht, 0), -1),
                lambda h: _HOURS[h] if h >= 0 else None,
            )
            where = pc.if_else(pa.array(rs.hour_inside[r, j]), "within", "outside")
            texts.append(
                _join(
                    value.take(r),
                    " is ",
                    where,
                    " the usual hours of ",
                    who.take(r),
                    " (",
                    span.fill_null("None"),
                    "); ",
                    _ints(seen[r]),
                    " of ",
                    n_s.take(r),
                    " events at this hour",
                )
            )
            details.append(
                _join(
                    head.take(r),
                    ',"seen":',
                    _ints(seen[r]),
                    ',"usual_hours":',
                    _json_strings(span),
                    "}",
                )
            )
            order.append(r)
        back = np.empty(n, dtype=np.int64)
        back[np.concatenate(order)] = rows
        text = pa.concat_arrays([t.cast(_S) for t in texts]).take(back)
        detail = pa.concat_arrays([d.cast(_S) for d in details]).take(back)
        frags.append((text, detail))
    return frags


def fingerprint_tail(fp: FingerprintScores) -> list[Any]:
    """The record's fingerprint fields as JSON (``,"baseline":...``): pieces (per-row arrays
    and constant strings) for the caller's one join of the whole record."""
    use = np.asarray(fp.entity_baseline, dtype=bool)
    alert = np.asarray(fp.combined_anomaly, dtype=bool).astype(np.int8)
    return [
        pc.if_else(pa.array(use), ',"baseline":"entity"', ',"baseline":"population"'),
        ',"entity_events":',
        _ints(np.asarray(fp.history, dtype=np.int64)),
        ',"entity_score":',
        pc.if_else(pa.array(use), _json_numbers(fp.entity_score, 3), "null"),
        ',"combined_score":',
        _json_numbers(fp.combined, 3),
        ',"combined_anomaly":',
        _pa(["false", "true"]).take(alert),
    ]
