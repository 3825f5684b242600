"""The ``reasons`` of score records, for both writers: dicts (:func:`reason_dicts`) and JSON
pieces for a whole batch (:class:`ReasonsJson`), from the same values (``record_values``).

With per-entity baselines the explained rows' reasons also carry a text and the entity's
numbers: column-wise when many rows are explained, else those rows are left to the dict writer
(:attr:`ReasonsJson.by_dict`), which is faster for a few.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from morpheus_ext.stages.postprocess.fingerprint.reason_fragments import reason_fragments
from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores
from morpheus_ext.stages.postprocess.record_values import (
    RecordInputs,
    display_values,
    field_names,
    field_values,
    join_texts,
    json_floats,
    json_values,
    reason_heads,
)

DICT_RECORDS_UP_TO = 0.25
"""Up to this share of a batch explained (fingerprint reasons in words, typically the few
flagged records), the column-wise writer leaves those records to the dict writer; above it,
column-wise (Arrow kernels cost the same per call for 100 rows as for 4000)."""


def reason_dicts(r: RecordInputs) -> list[list[dict[str, Any]]]:
    """Per row, its reasons: ``{"field", "value", "z"}`` for each of its top fields."""
    fields = r.spec.layout.fields
    top_fields = r.top_fields()
    top = top_fields.tolist()
    top_z = r.top_z().tolist()
    # Values are looked up only for fields that appear in some row's top-k.
    values = {
        f: field_values(r.columns, fields[f].name, fields[f].kind)
        for f in np.unique(top_fields).tolist()
    }
    names = [f.name for f in fields]
    return [
        [
            {"field": names[f], "value": values[f][i], "z": z}
            for f, z in zip(top[i], top_z[i], strict=True)
        ]
        for i in range(r.n)
    ]


class ReasonsJson:
    """The ``reasons`` array of every row as JSON pieces; with baselines, the reasons' texts too
    (column-wise for many explained rows; a few are left in :attr:`by_dict` for the dict
    writer, which is faster for them)."""

    def __init__(self, inputs: RecordInputs) -> None:
        self.inputs = inputs
        self.by_dict = np.empty(0, dtype=np.int64)

    def pieces(self) -> list[Any]:
        r = self.inputs
        n = r.n
        fields = r.spec.layout.fields
        fp = r.fingerprint
        explained = fp.reasons if fp is not None else None
        top = np.asarray(r.top_fields()).astype(np.int64).reshape(n, -1)
        top_z = r.top_z().reshape(n, -1)
        parts: list[Any] = ["["]
        k = top.shape[1]
        if not k:
            return [*parts, "]"]
        used = np.unique(top)
        slot = np.zeros(max(len(fields), int(used.max()) + 1), dtype=np.int64)
        slot[used] = np.arange(len(used))
        cols = r.columns
        fragments, where = zip(
            *[json_values(cols, fields[f].name, fields[f].kind) for f in used.tolist()],
            strict=True,
        )
        values = pa.concat_arrays(list(fragments))
        starts = np.cumsum([0] + [len(x) for x in fragments[:-1]])
        value_at = np.stack(where) + starts[:, None]  # [used field, row] -> index in values
        names = reason_heads(tuple(f.name for f in fields))
        rows = np.arange(n, dtype=np.int64)
        ends: list[list[Any]] = [["}"]] * k
        ex = np.flatnonzero(explained.explained) if explained is not None else rows[:0]
        if len(ex) <= n * DICT_RECORDS_UP_TO:
            self.by_dict = ex  # a few explained rows: their records as dicts, patched in later
        elif len(ex):  # the fingerprint's text and numbers, column-wise too
            assert fp is not None
            ends = self._texts(fp, top, top_z, ex, used, slot)
        for j in range(k):
            if j:
                parts.append(",")
            parts += [
                names.take(top[:, j]),
                values.take(value_at[slot[top[:, j]], rows]),
                ',"z":',
                json_floats(top_z[:, j]),
                *ends[j],
            ]
        parts.append("]")
        return parts

    def _texts(
        self,
        fp: FingerprintScores,
        top: np.ndarray,
        top_z: np.ndarray,
        ex: np.ndarray,
        used: np.ndarray,
        slot: np.ndarray,
    ) -> list[list[Any]]:
        """Per reason slot, the JSON pieces that end each reason: its text and numbers."""
        r = self.inputs
        n, k = r.n, top.shape[1]
        fields = r.spec.layout.fields
        shown = [display_values(r.columns, fields[f].name, fields[f].kind) for f in used.tolist()]
        strings = pa.concat_arrays([t for t, _ in shown])
        numbers = np.concatenate([x for _, x in shown])
        is_num = np.array([fields[f].kind == "numeric" for f in range(len(fields))])
        every = len(ex) == n
        sub = top if every else top[ex]
        at = [slot[sub[:, j]] * n + ex for j in range(k)]
        entities = r.entities()
        frags = reason_fragments(
            fp if every else fp.take(ex),
            [field_names(tuple(f.name for f in fields)).take(sub[:, j]) for j in range(k)],
            [strings.take(a) for a in at],
            [numbers[a] for a in at],
            [is_num[sub[:, j]] for j in range(k)],
            entities if every else entities.take(ex),
            top_z if every else top_z[ex],
        )
        if every:
            return [[',"text":"', text, '"', detail, "}"] for text, detail in frags]
        back = np.full(n, -1, dtype=np.int64)  # the other rows' reasons end after "z"
        back[ex] = np.arange(len(ex))
        spread = pa.array(back, mask=back < 0)
        return [
            [pc.fill_null(join_texts(',"text":"', t, '"', d).take(spread), ""), "}"]
            for t, d in frags
        ]
