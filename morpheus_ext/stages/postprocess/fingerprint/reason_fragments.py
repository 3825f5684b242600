"""Reasons in words, column-wise: the texts and numbers of
:func:`~morpheus_ext.stages.postprocess.fingerprint.reasons.entity_reasons` as JSON fragments
for a whole batch (the score records' column-wise writer uses these)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.stages.postprocess.fingerprint.reasons import (
    DAY_S,
    HOUR_WINDOWS,
    KIND_CAT,
    KIND_HOUR,
    KIND_NUM,
    KIND_OTHER,
    day_text,
    number_text,
    ratio_text,
)
from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores

# --------------------------------------------------------------------------- column-wise
# The same texts and numbers as :func:`entity_reasons`, as JSON fragments for a whole batch: one
# Arrow string kernel per piece of a sentence, numbers spelled by vectorised rounding (Python's
# own formatting only for the rare values where float rounding could tip a digit, and once per
# distinct value where the spelling has no cheap vectorised form). Byte for byte what
# ``orjson.dumps`` writes of the dicts (tests/morpheus_ext/test_fingerprint_records.py).

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


_MUST_ESCAPE_RE = r'[\x00-\x1f"\\]'


def needs_escape(texts: pa.Array) -> bool:
    """Whether any element holds a character a JSON string literal escapes (a control
    character, ``"`` or ``\\``).

    Those characters are single bytes in UTF-8 (every byte of a multi-byte character is
    >= 0x80), so one NumPy look over the array's UTF-8 bytes answers exactly what the regex
    ``[\\x00-\\x1f"\\\\]`` does, without Arrow's RE2 (~0.12 us per string, recompiled per call):
    the score records ask this of several columns per batch.

    >>> needs_escape(pa.array(["alice", None, "ünï"])), needs_escape(pa.array(['say "hi"']))
    (False, True)
    """
    if len(texts) == 0:
        return False
    if not isinstance(texts, pa.Array):  # (a chunked array: ask Arrow)
        width: type | None = None
    elif pa.types.is_string(texts.type):
        width = np.int32
    elif pa.types.is_large_string(texts.type):
        width = np.int64
    else:
        width = None
    if width is None:  # (other types: ask Arrow)
        return bool(pc.any(pc.match_substring_regex(texts, _MUST_ESCAPE_RE)).as_py())
    _, offsets_buf, data = texts.buffers()
    if offsets_buf is None or data is None:
        return False
    offsets: np.ndarray = np.frombuffer(offsets_buf, dtype=width)[
        texts.offset : texts.offset + len(texts) + 1
    ]
    body = np.frombuffer(data, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    # (three vectorised compares: ~10x cheaper than one lookup-table gather)
    return bool((body < 0x20).any() or (body == ord('"')).any() or (body == ord("\\")).any())


def _escape(texts: pa.Array) -> pa.Array:
    """:func:`escaped` for every element (once per distinct text, and only if one needs it)."""
    if not needs_escape(texts):
        return texts
    inv, uniq = pd.factorize(np.asarray(texts.to_numpy(zero_copy_only=False), dtype=object))
    return _pa([escaped(t) for t in uniq.tolist()] + [None]).take(np.where(inv < 0, len(uniq), inv))


def _json_strings(inner: pa.Array) -> pa.Array:
    """JSON string literals of already escaped texts; null -> ``null``."""
    return pc.fill_null(_join('"', inner, '"'), "null")


def _json_numbers(values: np.ndarray, digits: int) -> pa.Array:
    """``orjson.dumps`` of :func:`rounded_lists`'s rounded floats (null where not finite)."""
    arr = np.round(np.ascontiguousarray(values, dtype=np.float64).reshape(-1), digits)
    if len(arr) == 0:
        return _pa([])
    return json_number_texts(arr)


def json_number_texts(values: np.ndarray) -> pa.Array:
    """Each float64 of ``values`` as ``orjson.dumps`` spells it (NaN/inf -> ``null``).

    One ``orjson.dumps`` of the whole array, then the commas between the numbers become the
    string array's offsets (a number's spelling never holds a comma): NumPy over the bytes,
    ~10x cheaper than Arrow's ``split_pattern`` on the one long text.

    >>> json_number_texts(np.array([0.5, float("nan"), 3.0, 1e-7])).to_pylist()
    ['0.5', 'null', '3.0', '1e-7']
    """
    n = len(values)
    if n == 0:
        return _pa([])
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    body = np.frombuffer(text, dtype=np.uint8)[1:-1]  # (without the brackets)
    comma = body == ord(",")
    commas = np.flatnonzero(comma)
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:n] = commas - np.arange(n - 1)  # each number's end, the commas before it removed
    offsets[n] = len(body) - (n - 1)
    data = body[~comma]
    return pa.Array.from_buffers(_S, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


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
    kind_of[plan.cat_index] = KIND_CAT
    kind_of[plan.num_index] = KIND_NUM
    if plan.hour_index is not None:
        kind_of[plan.hour_index] = KIND_HOUR
    use = np.asarray(fp.entity_baseline, dtype=bool)
    kind_arr = np.where(use[:, None] & (rs.events > 0), kind_of[rs.fields], KIND_OTHER)
    value_names = fp.names.names if fp.names is not None else {}
    min_events = fp.config.min_events
    history = np.asarray(fp.history, dtype=np.int64)
    who = pc.if_else(
        pc.fill_null(pc.greater(pc.utf8_length(entities), 0), False),
        _escape(entities),
        "this entity",
    ).cast(_S)
    days = _ints(np.maximum(1, np.round((fp.clock - fp.since) / DAY_S)).astype(np.int64))
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
        how = np.where(has_value, kind_arr[:, j], KIND_OTHER)
        texts: list[pa.Array] = []
        details: list[pa.Array] = []
        order: list[np.ndarray] = []
        # population (or no value): the z against the population
        r = np.flatnonzero(how == KIND_OTHER)
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
        r = np.flatnonzero(how == KIND_CAT)
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
            first = _per_code(rs.day[r, j], day_text)
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
        r = np.flatnonzero(how == KIND_NUM)
        if len(r):
            med, rat, b = rs.median[r, j], rs.ratio[r, j], rs.beyond[r, j]
            known = np.isfinite(med) & np.isfinite(rat)
            subj, w = name.take(r), who.take(r)
            shown = pc.if_else(
                pa.array(numeric[j][r]), _spelled(numbers[j][r], number_text), value.take(r)
            )
            high = np.round(rat, 2) >= 1
            extreme = _pa(["", "; never this low before", "; never this high before"]).take(
                np.where(b == 0, np.where(high, 2, 1), 0)
            )
            said = _join(
                subj, " ", shown, " is ", _spelled(rat, ratio_text), " the median of ", w, " (",
                _spelled(med, number_text), ", ", n_s.take(r), " events)", extreme,
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
        r = np.flatnonzero(how == KIND_HOUR)
        if len(r):
            hf, ht = rs.hour_from[r, j], rs.hour_to[r, j]
            span = _per_code(
                np.where(hf >= 0, hf * 24 + np.maximum(ht, 0), -1),
                lambda h: HOUR_WINDOWS[h] if h >= 0 else None,
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


def fingerprint_json(fp: FingerprintScores, field: str) -> pa.Array:
    """One fingerprint field of every record as JSON (``records.RECORD_FIELDS`` names them)."""
    use = pa.array(np.asarray(fp.entity_baseline, dtype=bool))
    if field == "baseline":
        return pc.if_else(use, '"entity"', '"population"')
    if field == "entity_events":
        return _ints(np.asarray(fp.history, dtype=np.int64))
    if field == "entity_score":
        return pc.if_else(use, _json_numbers(fp.entity_score, 3), "null")
    if field == "combined_score":
        return _json_numbers(fp.combined, 3)
    if field == "combined_anomaly":
        alert = np.asarray(fp.combined_anomaly, dtype=bool).astype(np.int8)
        return _pa(["false", "true"]).take(alert)
    raise KeyError(field)
