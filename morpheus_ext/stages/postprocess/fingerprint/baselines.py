"""Per-entity baselines learned from the live stream: score a batch, then learn from it.

One shared model says "unusual for the whole population"; :class:`EntityBaselines` adds
"unusual for *this* user or host" without a model per entity (Morpheus DFP's approach, which
needs a training job per user and a generic fallback for new ones). Per entity it keeps a few
hundred bytes of counters (see :mod:`morpheus_ext.stages.postprocess.fingerprint.state`), updated
by mini-batches.

Order within a batch: every event is scored against the state *before* its batch, then the
batch is learned. Learning is a pure function of (state, batch) — counters, histograms and
running moments, capped tables with deterministic eviction, an event-time clock — so replaying
the same batches from a checkpoint rebuilds exactly the same state (see :meth:`checkpoint`).

Privacy: the state never leaves the site. It holds hashes of entity names and values, not the
names, and nothing in ``federated/`` imports this package (a test checks it).

>>> import pandas as pd
>>> from morpheus_ext.feature_spec import load_spec
>>> from morpheus_ext.stages.preprocess.featurizer import Featurizer
>>> from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
>>> spec = load_spec("security_events")
>>> fz = Featurizer(spec)
>>> baselines = EntityBaselines(spec, FingerprintConfig(enabled=True, min_events=20))
>>> def batch(countries):
...     n = len(countries)
...     frame = pd.DataFrame({"event_id": ["e"] * n, "event_type": ["auth"] * n,
...         "timestamp": ["2026-11-02T10:00:00Z"] * n, "user": ["alice"] * n,
...         "country": countries})
...     outputs = {"ANOMALY_SCORE": np.full((n, 1), 0.001, np.float32),
...         "THRESHOLD": np.full((n, 1), 0.01, np.float32),
...         "FIELD_Z": np.zeros((n, len(spec.layout.fields)), np.float32)}
...     return fz.transform(frame), outputs
>>> _ = baselines.observe(*batch(["US"] * 30))       # learn 30 logins from the US
>>> scores = baselines.observe(*batch(["BR", "US"]))  # then one from Brazil, one from the US
>>> scores.entity_baseline.tolist(), [round(float(s), 2) for s in scores.entity_score]
([True, True], [2.54, 0.0])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.stages.postprocess.fingerprint.batch import (
    BatchKeys,
    FieldPlan,
    ValueNames,
    entity_hash,
    extract,
)
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.postprocess.fingerprint.index import EntityIndex
from morpheus_ext.stages.postprocess.fingerprint.scoring import (
    FingerprintScores,
    Located,
    first_of,
    group_codes,
    locate,
    score,
)
from morpheus_ext.stages.postprocess.fingerprint.state import AGE_AT, HOURS, BaselineState
from morpheus_ext.stages.postprocess.fingerprint.valueset import insert
from morpheus_ext.stages.postprocess.postproc import DEFAULT_TOP_K
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch

CHECKPOINT_FORMAT = 1
_DAY = 86_400
_TTL_EVERY = 3_600  # event-time seconds between TTL sweeps
# Histogram of combined scores of normal events, for the learned alert threshold.
COMBINED_LOW, COMBINED_WIDTH, COMBINED_BINS = -20.0, 0.05, 1200


class CheckpointError(SecureAIError, ValueError):
    """A checkpoint that does not fit this spec/config (message is user-facing)."""


class EntityBaselines:
    """Per-entity baselines for one feature spec: :meth:`observe` each scored batch."""

    def __init__(self, spec: FeatureSpec, config: FingerprintConfig | None = None) -> None:
        self.spec = spec
        self.config = config or FingerprintConfig(enabled=True)
        self.plan = FieldPlan.resolve(spec, self.config)
        self.state = BaselineState(
            self.config, self.plan.n_fields, len(self.plan.categorical), len(self.plan.numeric)
        )
        self.index = EntityIndex()
        self.names = ValueNames()
        # Sum and count of entity_score over normal entity-baseline events (the site's prior).
        self.prior_sum = 0.0
        self.prior_count = 0
        self.combined_hist = np.zeros(COMBINED_BINS, dtype=np.int64)
        self.clock = 0  # event time (epoch s) of the latest batch learned, never decreasing
        self.next_ttl = 0
        self.evicted = 0
        self.dropped_values = 0

    # ------------------------------------------------------------------ public surface
    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and the index (the value-name dictionary is not counted)."""
        return self.state.nbytes + self.index.nbytes

    def observe(
        self,
        batch: FeaturizedBatch,
        outputs: dict[str, np.ndarray],
        learn: bool = True,
        explain: bool = True,
    ) -> FingerprintScores:
        """Score a batch against the baselines, then (``learn``) update them with it.

        ``explain`` also ranks each row's reasons and gathers the numbers behind them (what
        score records need; scoring alone, e.g. for an evaluation, can skip it).
        """
        keys = extract(self.spec, self.plan, self.config, batch, outputs, self.names)
        at = locate(self.state, self.index, keys, self.config.probes)
        top = outputs.get("TOP_FIELDS")
        if top is None:  # engines always send it; plain arrays in tests may not
            k = min(DEFAULT_TOP_K, self.plan.n_fields)
            top = np.argsort(-keys.field_z, axis=1, kind="stable")[:, :k]
        result = score(
            self.state,
            self.plan,
            self.config,
            keys,
            at,
            np.asarray(top),
            self.prior,
            self.threshold,
            explain,
        )
        result.names = self.names
        if learn:
            normal = result.entity_baseline & ~keys.flagged
            self.prior_sum += float(result.entity_score[normal].astype(np.float64).sum())
            self.prior_count += int(normal.sum())
            b = np.floor((result.combined[~keys.flagged] - COMBINED_LOW) / COMBINED_WIDTH)
            b = np.clip(b, 0, COMBINED_BINS - 1).astype(np.int64)
            self.combined_hist += np.bincount(b, minlength=COMBINED_BINS)
            self.learn(keys, at)
        return result

    @property
    def threshold(self) -> float:
        """``combined_score`` above which ``combined_anomaly`` fires (see FingerprintConfig)."""
        cfg = self.config
        if cfg.combined_threshold is not None:
            return cfg.combined_threshold
        total = int(self.combined_hist.sum())
        if total < cfg.calibration_events:
            return float("inf")
        above = np.cumsum(self.combined_hist[::-1])[::-1]  # events in this bin or higher
        b = int(np.flatnonzero(above > cfg.combined_fpr * total)[-1])
        return COMBINED_LOW + (b + 1) * COMBINED_WIDTH

    @property
    def prior(self) -> float:
        """Mean entity_score of normal events with a baseline (0 before there are any)."""
        return self.prior_sum / self.prior_count if self.prior_count else 0.0

    def entity_row(self, entity: str) -> int:
        """The state row of an entity name (-1 if it has no baseline)."""
        return int(self.index.lookup(np.array([entity_hash(entity)], dtype=np.uint64))[0])

    def describe(self, entity: str) -> dict[str, Any] | None:
        """A readable summary of one entity's baseline (for analysts and tests)."""
        row = self.entity_row(entity)
        if row < 0:
            return None
        s = self.state
        values: dict[str, dict[str, int]] = {}
        for slot in np.flatnonzero((s.vkey[row] != 0) & (s.vcount[row] > 0)).tolist():
            field = self.plan.categorical[int(s.vfield[row, slot])]
            key = int(s.vkey[row, slot])
            name = self.names.get(key) or f"#{key:08x}"
            values.setdefault(field, {})[name] = int(s.vcount[row, slot])
        return {
            "events": int(s.n[row]),
            "first_seen": int(s.first[row]),
            "last_seen": int(s.last[row]),
            "values": values,
            "hours": s.hour[row].tolist() if s.hour.shape[1] else [],
            "numeric": {f: s.hist[row, i].tolist() for i, f in enumerate(self.plan.numeric)},
        }

    # ------------------------------------------------------------------ learning
    def learn(self, keys: BatchKeys, at: Located | None = None) -> None:
        """Fold a batch into the baselines (vectorised: grouped by entity, no per-event loop).

        ``at`` is where :func:`locate` found the batch's entities and values (recomputed when
        not given); it must describe the current state.
        """
        cfg = self.config
        self.clock = max(self.clock, keys.clock)
        mask = keys.entity_code >= 0
        if cfg.update_from == "normal":
            mask &= ~keys.flagged
        events = np.flatnonzero(mask)
        if len(events):
            self._learn_events(keys, events, at or locate(self.state, self.index, keys, cfg.probes))
        if self.clock >= self.next_ttl:
            self._evict_expired()
            self.next_ttl = self.clock + _TTL_EVERY

    def _create(self, uniq: np.ndarray, protect: np.ndarray) -> np.ndarray:
        """Rows for new entity hashes (LRU-evicting others when full; never ``protect``).
        -1 for hashes that do not fit (only when one batch brings more than the cap)."""
        cap = self.config.max_entities
        rows = np.full(len(uniq), -1, dtype=np.int64)
        take = np.arange(len(uniq))
        if len(uniq) > cap - len(self.index):
            target = min(int(cap * self.config.evict_to), cap - len(uniq))
            self._evict_lru(len(self.index) - max(target, 0), protect=protect)
            room = max(cap - len(self.index), 0)
            take = np.sort(np.argsort(uniq, kind="stable")[:room])
        fresh = self.state.allocate(len(take))
        rows[take] = fresh
        self.index.add(uniq[take], fresh)
        self.state.entity[fresh] = uniq[take]
        self.state.first[fresh] = self.clock
        return rows

    def _learn_events(self, keys: BatchKeys, events: np.ndarray, at: Located) -> None:
        s, plan = self.state, self.plan
        ent = keys.entity_code[events]
        new = at.rows[events] < 0
        entity_rows = at.entity_rows
        if new.any():
            fresh = np.unique(ent[new])
            entity_rows = entity_rows.copy()
            known = entity_rows[entity_rows >= 0]
            entity_rows[fresh] = self._create(keys.entities[fresh], protect=known)
        rows = entity_rows[ent]
        kept = rows >= 0  # entities beyond a (tiny) cap are not learned
        if not kept.all():
            events, rows, new, ent = events[kept], rows[kept], new[kept], ent[kept]
        # group by entity: codes are dense in [0, E), so counting is a bincount
        per_entity = np.bincount(ent, minlength=len(entity_rows))
        present = np.flatnonzero(per_entity > 0)
        pos = np.zeros(len(per_entity), dtype=np.int64)
        pos[present] = np.arange(len(present))
        inv = pos[ent]
        urows = entity_rows[present]
        u = len(urows)
        count = per_entity[present].astype(np.float64)

        # running moments of ln(score/threshold) and of each field's z (Chan et al. merge)
        n_old = s.n[urows].astype(np.float64)
        # one merge for both: column 0 is ln(score/threshold), the others each field's z
        nz = s.z_mean.shape[1]
        xt = np.empty((1 + nz, len(events)), dtype=np.float64)  # one row per statistic
        xt[0] = keys.g[events]
        if nz:
            xt[1:] = keys.field_z[events].T
        mean = np.concatenate([s.g_mean[urows, None], s.z_mean[urows]], axis=1)
        var = np.concatenate([s.g_var[urows, None], s.z_var[urows]], axis=1)
        mean, var = _merge(n_old, mean, var, count, inv, xt, u)
        s.g_mean[urows], s.g_var[urows] = mean[:, 0], var[:, 0]
        if s.z_mean.shape[1]:
            s.z_mean[urows], s.z_var[urows] = mean[:, 1:], var[:, 1:]
        s.n[urows] = np.minimum(n_old + count, np.iinfo(np.uint32).max).astype(np.uint32)
        s.last[urows] = self.clock

        # seen values: add to the slots found by locate, insert the rest
        if len(plan.categorical):
            if len(events) < len(keys):  # some events are not learned: count the rest
                counts = np.bincount(
                    at.pair[_mask(len(keys), events)[at.ev]], minlength=len(at.q_row)
                )
            else:
                counts = at.q_count
            hit = (counts > 0) & (at.q_slot >= 0)
            flat = s.vcount.reshape(-1)
            slots = at.q_slot[hit]
            flat[slots] = np.minimum(
                flat[slots].astype(np.int64) + counts[hit], np.iinfo(np.uint16).max
            )
            miss = (counts > 0) & (at.q_slot < 0)
            ev_new, tt_new, key_new = keys.values_of(events[new])
            row_of = np.full(len(keys), -1, dtype=np.int64)
            row_of[events] = rows
            code, ids = group_codes((row_of[ev_new] << 32) | key_new.astype(np.int64))
            first = first_of(code)
            # neither the misses of known entities nor the values of new ones are in the
            # tables (nothing since locate wrote a key, and new rows are empty)
            self.dropped_values += insert(
                s,
                np.concatenate([at.q_row[miss], ids >> 32]),
                np.concatenate([at.q_key[miss], (ids & 0xFFFFFFFF).astype(np.uint32)]),
                np.concatenate([at.q_tt[miss], tt_new[first]]).astype(np.uint8),
                np.concatenate([counts[miss], np.bincount(code, minlength=len(ids))]),
                self.clock // _DAY,
                self.config.probes,
                absent=True,
            )

        # numeric histograms and the hour profile: one bincount each over the batch's entities
        f_num, bins_n = len(plan.numeric), self.config.numeric_bins
        if f_num:
            b = keys.num_bins[events].astype(np.int64)
            ev, ff = np.nonzero(b >= 0)
            cell = (inv[ev] * f_num + ff) * bins_n + b[ev, ff]
            per_row = f_num * bins_n
            hist = s.hist.reshape(-1)
            if u * per_row <= 4 * len(cell) + 65_536:  # dense: every row of the batch
                add = np.bincount(cell, minlength=u * per_row).reshape(u, f_num, bins_n)
                s.hist[urows] = np.minimum(s.hist[urows] + add, np.iinfo(np.uint16).max)
            elif len(cell):  # many entities, few values (e.g. auth events): touched cells only
                code, local = group_codes(cell)
                cells = urows[local // per_row] * per_row + local % per_row
                add = np.bincount(code, minlength=len(local))
                hist[cells] = np.minimum(hist[cells] + add, np.iinfo(np.uint16).max)
        if s.hour.shape[1]:
            h = keys.hour[events].astype(np.int64)
            ok = h >= 0
            add_h = np.bincount(inv[ok] * HOURS + h[ok], minlength=u * HOURS).reshape(u, HOURS)
            s.hour[urows] = np.minimum(s.hour[urows] + add_h, np.iinfo(np.uint16).max)
        self._age(urows)

    def _age(self, rows: np.ndarray) -> None:
        """Halve every counter of entities whose busiest counter reached AGE_AT."""
        s = self.state
        rows = rows[s.n[rows] >= AGE_AT]  # a counter never exceeds the events learned
        if len(rows) == 0:
            return
        busy = s.vcount[rows].max(axis=1) >= AGE_AT
        if s.hist.shape[1]:
            busy |= s.hist[rows].reshape(len(rows), -1).max(axis=1) >= AGE_AT
        if s.hour.shape[1]:
            busy |= s.hour[rows].max(axis=1) >= AGE_AT
        old = rows[busy]
        if len(old) == 0:
            return
        s.vcount[old] >>= 1
        s.hist[old] >>= 1
        s.hour[old] >>= 1
        gone = s.vcount[old] == 0
        s.vkey[old] = np.where(gone, 0, s.vkey[old])
        s.vfield[old] = np.where(gone, 0, s.vfield[old])
        s.vday[old] = np.where(gone, 0, s.vday[old])

    # ------------------------------------------------------------------ eviction
    def _drop(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self.index.remove(self.state.entity[rows])
        self.state.release(rows)
        self.evicted += len(rows)

    def _evict_lru(self, count: int, protect: np.ndarray) -> None:
        """Evict the ``count`` least recently seen entities (ties: smaller hash first), never
        one of ``protect`` (entities of the batch being learned)."""
        if count <= 0:
            return
        rows = self.state.used_rows()
        rows = rows[~np.isin(rows, protect)]
        if len(rows) <= count:
            self._drop(rows)
            return
        last = self.state.last[rows]
        kth = np.partition(last, count - 1)[count - 1]
        older = rows[last < kth]
        tied = rows[last == kth]
        tied = tied[np.argsort(self.state.entity[tied], kind="stable")][: count - len(older)]
        self._drop(np.concatenate([older, tied]))

    def _evict_expired(self) -> None:
        horizon = self.clock - self.config.ttl_days * _DAY
        if horizon <= 0:
            return
        rows = self.state.used_rows()
        self._drop(rows[self.state.last[rows] < horizon])

    # ------------------------------------------------------------------ durability
    def checkpoint(self, path: str | Path, offsets: dict[str, int]) -> Path:
        """Write the state *and* the consumed offsets it reflects in one file, atomically.

        Call it after a batch is learned and before (or together with) committing ``offsets``:
        after a crash, :meth:`restore` returns the offsets to resume from, and replaying from
        there learns every later event exactly once. The file is written to a temporary name,
        fsynced and renamed over ``path``, so a crash leaves the old or the new checkpoint,
        never a torn one.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.state.export()
        name_keys = np.array(list(self.names.names), dtype=np.uint32)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "spec_hash": self.spec.spec_hash,
            "config": self.config.model_dump(mode="json"),
            "offsets": {str(k): int(v) for k, v in offsets.items()},
            "clock": self.clock,
            "prior_sum": self.prior_sum,
            "prior_count": self.prior_count,
            "combined_hist": self.combined_hist.tolist(),
            "next_ttl": self.next_ttl,
            "evicted": self.evicted,
            "dropped_values": self.dropped_values,
            "names": list(self.names.names.values()),
        }
        blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        payload: dict[str, Any] = {"meta": blob, "name_keys": name_keys, **arrays}
        try:
            with tmp.open("wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    def restore(self, path: str | Path) -> dict[str, int]:
        """Load a checkpoint; returns the offsets to resume consuming from."""
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays = {name: data[name] for name in BaselineState.ROW_ARRAYS}
            name_keys = data["name_keys"]
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')}")
        if meta["spec_hash"] != self.spec.spec_hash:
            raise CheckpointError(
                f"{path}: baselines of spec {meta['spec_hash']}, this pipeline uses "
                f"{self.spec.spec_hash}"
            )
        saved = FingerprintConfig.model_validate(meta["config"])
        layout = (
            *("categorical", "numeric", "hour_profile", "field_z_stats", "values_per_entity"),
            *("numeric_bins", "bin_width", "probes"),
        )
        changed = [k for k in layout if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise CheckpointError(f"{path}: saved with other {', '.join(changed)}")
        rows = self.state.load(arrays)
        self.index.rebuild(arrays["entity"], rows)
        self.names = ValueNames()
        self.names.names = dict(zip(name_keys.tolist(), meta["names"], strict=True))
        self.clock = int(meta["clock"])
        self.prior_sum = float(meta["prior_sum"])
        self.prior_count = int(meta["prior_count"])
        self.combined_hist = np.array(meta["combined_hist"], dtype=np.int64)
        self.next_ttl = int(meta["next_ttl"])
        self.evicted = int(meta["evicted"])
        self.dropped_values = int(meta["dropped_values"])
        return {str(k): int(v) for k, v in meta["offsets"].items()}


def _mask(n: int, where: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[where] = True
    return out


def _merge(
    n_old: np.ndarray,
    mean_old: np.ndarray,
    var_old: np.ndarray,
    count: np.ndarray,
    inv: np.ndarray,
    xt: np.ndarray,
    u: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-group batch moments of ``xt`` [d, events] (one row per statistic, group
    ``inv`` of each event) into running (mean, var) [u, d]."""
    d = xt.shape[0]
    s1, s2 = np.empty((d, u)), np.empty((d, u))
    sq = xt * xt
    for c in range(d):  # a bincount per row of a few thousand events beats one over [events x d]
        s1[c] = np.bincount(inv, weights=xt[c], minlength=u)
        s2[c] = np.bincount(inv, weights=sq[c], minlength=u)
    s1, s2 = s1.T, s2.T
    cnt = count[:, None]
    mean_b = s1 / cnt
    var_b = np.maximum(s2 / cnt - mean_b * mean_b, 0.0)
    mo = mean_old.reshape(u, d).astype(np.float64)
    vo = var_old.reshape(u, d).astype(np.float64)
    no = n_old[:, None]
    n = no + cnt
    delta = mean_b - mo
    mean = mo + delta * cnt / n
    var = (vo * no + var_b * cnt + delta * delta * no * cnt / n) / n
    shape = mean_old.shape
    return mean.reshape(shape).astype(np.float32), var.reshape(shape).astype(np.float32)
