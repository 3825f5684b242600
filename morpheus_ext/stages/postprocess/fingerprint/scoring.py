"""Entity-relative novelty of each event, against the baselines *before* its batch is learned.

Every tracked field gets a **novelty** in nats: how much more surprising the event's value is
for this entity than the entity's typical value of that field.

* categorical: ``-ln P(v) - H`` with ``P(new) = (d + 1) / (n + d + 1)`` for a value the entity
  never used (seen ``n`` times in all, ``d`` distinct values: a Chinese-restaurant estimate, so
  entities that collect many values expect new ones), ``P(v) = max(c_v, d + 1) / (n + d + 1)``
  for one seen ``c_v`` times (never more surprising than a new one) and ``H`` the entropy of
  that distribution, so a value as surprising as usual scores 0. Bursts (``bursts: new``): when
  ``m`` of an entity's ``b`` events of the batch carry new values, each of them scores at least
  ``b · KL(m/b || P(new))``, the Chernoff bound of seeing that many (a port scan's new ports);
* numeric: two-sided tail surprise ``-ln(2 · min(F, 1 - F))`` of the value in the entity's
  histogram (mid-rank, +0.5 smoothing), plus 1 nat per e-fold beyond anything seen (a Pareto
  tail), minus its expectation under the entity's own distribution, 1;
* hour: ``-ln P(hour) - H`` on the entity's hour profile, smoothed over neighbouring hours.

All are clipped at 0 and need ``min_events // 2`` observations of that field. Then::

    entity_score = max over fields of novelty                      (combine: max)
    combined     = ln(anomaly_score / threshold) + entity_weight · entity_score

For an entity with fewer than ``min_events`` events (``baseline: population``) the entity term
is the site's mean ``entity_score`` of normal events, so both kinds of events share one scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from morpheus_ext.stages.postprocess.fingerprint.batch import BatchKeys, FieldPlan, ValueNames
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.postprocess.fingerprint.index import EntityIndex
from morpheus_ext.stages.postprocess.fingerprint.state import HOURS, BaselineState
from morpheus_ext.stages.postprocess.fingerprint.valueset import field_stats, lookup

_HOUR_PRIOR = 0.25  # pseudo-count per hour bin


@dataclass
class Located:
    """Where a batch's entities and values sit in the state, found once for scoring and
    learning: each event's row (-1: unknown entity) and every (event, tracked field) value of
    a known entity ([P] pairs), grouped into distinct (entity, value) pairs ([Q], typically a
    third of P: an entity repeats its values) with their count and slot (-1: never seen)."""

    rows: np.ndarray  # int64 [N]
    entity_rows: np.ndarray  # int64 [E], row of each distinct entity of the batch
    ev: np.ndarray  # int64 [P]
    tt: np.ndarray  # int64 [P]
    pair: np.ndarray  # int64 [P] -> [Q]
    q_ent: np.ndarray  # int64 [Q] entity code
    q_row: np.ndarray  # int64 [Q]
    q_key: np.ndarray  # uint32 [Q]
    q_tt: np.ndarray  # int64 [Q]
    q_count: np.ndarray  # int64 [Q] events of the batch with this pair
    q_seen: np.ndarray  # int64 [Q]
    q_slot: np.ndarray  # int64 [Q]


def first_of(codes: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each code, for codes numbered in order of first
    appearance (``pandas.factorize``): exactly where a code exceeds all codes before it."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.concatenate([[-1], np.maximum.accumulate(codes)[:-1]])
    return np.flatnonzero(codes > before)


def _distinct(ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of each id among the distinct ids, distinct ids ascending, their counts) for
    ids in [0, size): a bincount when that is dense enough, else a hash grouping."""
    if size <= 4 * len(ids) + 65_536:
        counts = np.bincount(ids, minlength=size)
        uniq = np.flatnonzero(counts > 0)  # (nonzero of a bool array is the fast path)
        pos = np.zeros(size, dtype=np.int64)
        pos[uniq] = np.arange(len(uniq))
        return pos[ids], uniq, counts[uniq]
    code, uniq = group_codes(ids)
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[code], uniq[order], np.bincount(code, minlength=len(uniq))[order]


def locate(state: BaselineState, index: EntityIndex, keys: BatchKeys, probes: int) -> Located:
    """Find the batch's entities and their (entity, value) pairs in the state (see
    :class:`Located`): one grouping of all tracked fields' pairs and one table lookup."""
    # a batch without any entity still gets one (absent) entity, so per-entity arrays are
    # never empty; every row points at it through code -1 and is masked as unknown
    entity_rows = index.lookup(keys.entities) if len(keys.entities) else np.full(1, -1)
    code = keys.entity_code
    rows = np.where(code >= 0, entity_rows[np.maximum(code, 0)], -1)
    e = len(keys.entities)
    n = len(code)
    empty = np.zeros(0, dtype=np.int64)
    flat = np.flatnonzero((keys.value_id >= 0) & (rows >= 0))  # field-major: t * N + event
    if len(flat) == 0:
        return Located(rows, entity_rows, *(empty,) * 3, *(empty,) * 7)
    tt, ev = np.divmod(flat, n)
    vid = keys.value_id.reshape(-1)[flat]
    off = keys.value_offset
    # pair id: field t's block of E * V_t ids, entity-major inside (ids ascend field by field)
    width = np.diff(off)
    pair, uniq, count = _distinct(
        (e * off[:-1] - off[:-1])[tt] + code[ev] * width[tt] + vid, e * int(off[-1])
    )
    q_tt = np.searchsorted(e * off[1:], uniq, side="right")
    local = uniq - e * off[q_tt]
    q_ent, q_val = np.divmod(local, width[q_tt])
    q_key = keys.value_key[q_val + off[q_tt]]
    q_row = entity_rows[q_ent]
    seen, slot = lookup(state, q_row, q_key, probes)
    return Located(rows, entity_rows, ev, tt, pair, q_ent, q_row, q_key, q_tt, count, seen, slot)


@dataclass
class Reasons:
    """The k reasons of each row (``fields``, most unusual first) and, for rows with an entity
    baseline, the numbers behind each one (-1 / NaN / 0 where they do not apply), [N, k] each.
    """

    fields: np.ndarray  # int64: layout field index
    seen: np.ndarray  # int64: times this value / this hour was seen for the entity
    events: np.ndarray  # int64: entity events with the field
    day: np.ndarray  # int64: day the value was first seen (days since 1970)
    usual: np.ndarray  # uint32: key of the entity's most frequent value (unseen values only)
    share: np.ndarray  # float64: that value's share
    median: np.ndarray  # float64: the entity's median (numeric)
    ratio: np.ndarray  # float64: (x + 1) / (median + 1)
    beyond: np.ndarray  # int64: history events at least as far out, same side
    hour_from: np.ndarray  # int64: usual-hours window (UTC hours, inclusive)
    hour_to: np.ndarray
    hour_inside: np.ndarray  # bool: the event's hour is within that window
    z_entity: np.ndarray  # float64: the field's z against the entity's own
    explained: np.ndarray  # bool [N]: the row gets these reasons in words (config ``explain``)

    def take(self, rows: np.ndarray) -> Reasons:
        """The reasons of ``rows`` only."""
        return Reasons(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


@dataclass
class FingerprintScores:
    """Per-row results for one batch (N rows, F layout fields)."""

    plan: FieldPlan
    config: FingerprintConfig
    clock: int  # the batch's event time (epoch s), for "in N days"
    entity_baseline: np.ndarray  # bool [N]: the entity's own baseline was used
    history: np.ndarray  # int64 [N]: events learned for the entity before this batch
    since: np.ndarray  # int64 [N]: epoch s of its first learned event (0: none)
    entity_score: np.ndarray  # float32 [N] (0 where baseline is population)
    combined: np.ndarray  # float32 [N]
    combined_anomaly: np.ndarray  # bool [N]
    novelty: np.ndarray  # float32 [N, F]: nats, for this entity
    score_z: np.ndarray  # float32 [N]: ln(score/threshold) against the entity's own
    reasons: Reasons | None = None  # only when scored with explain=True
    names: ValueNames | None = None  # key -> value spelling, for "usual: US"

    def __len__(self) -> int:
        return len(self.history)

    def take(self, rows: np.ndarray) -> FingerprintScores:
        """The results of ``rows`` only (e.g. the explained ones, to spell their reasons)."""
        return replace(
            self,
            entity_baseline=self.entity_baseline[rows],
            history=self.history[rows],
            since=self.since[rows],
            entity_score=self.entity_score[rows],
            combined=self.combined[rows],
            combined_anomaly=self.combined_anomaly[rows],
            novelty=self.novelty[rows],
            score_z=self.score_z[rows],
            reasons=None if self.reasons is None else self.reasons.take(rows),
        )


def group_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per value, uniques in first-seen order): hash grouping, O(n), no sort."""
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64), np.asarray(uniques)


def score(
    state: BaselineState,
    plan: FieldPlan,
    config: FingerprintConfig,
    keys: BatchKeys,
    at: Located,
    top_fields: np.ndarray,
    prior: float = 0.0,
    threshold: float = np.inf,
    explain: bool = True,
) -> FingerprintScores:
    """Novelties and combined scores of a batch (see the module docstring), and with
    ``explain`` its reasons: ``top_fields`` (the model's ``TOP_FIELDS``) for rows without an
    entity baseline, new-for-the-entity fields first for the others.
    ``combined_anomaly`` is the model's flag or ``combined > threshold``.
    """
    n = len(keys)
    f_all, t_cat, f_num = plan.n_fields, len(plan.categorical), len(plan.numeric)
    rows = at.rows
    r0 = np.maximum(rows, 0)
    known = rows >= 0
    history = np.where(known, state.n[r0].astype(np.int64), 0)
    use = known & (history >= config.min_events)
    since = np.where(known, state.first[r0].astype(np.int64), 0)
    min_field = max(1, config.min_events // 2)
    novelty = np.zeros((n, f_all), dtype=np.float32)
    # per distinct entity of the batch; rows without one point at entity 0, masked by `use`
    u_of = np.maximum(keys.entity_code, 0)
    urows = np.maximum(at.entity_rows, 0)
    u = len(urows)
    use_e = (at.entity_rows >= 0) & (state.n[urows] >= config.min_events)

    # --- categorical, per distinct (entity, value) pair of the batch
    fn = fd = np.zeros((u, t_cat))
    if t_cat and len(at.q_row):
        fn, fd, fh = field_stats(state, urows, t_cat)
        q_use = use_e[at.q_ent]
        g = at.q_ent * t_cat + at.q_tt
        nn, dd, hh = fn.ravel()[g], fd.ravel()[g], fh.ravel()[g]
        seen = at.q_seen
        p_new = (dd + 1.0) / (nn + dd + 1.0)
        p = np.where(seen > 0, np.maximum(seen, dd + 1.0) / (nn + dd + 1.0), p_new)
        surprise = -np.log(p)
        if config.bursts != "off":
            count = at.q_count.astype(np.float64)
            burst = _burst(g, at.q_key, seen, p, count, u * t_cat, config.bursts == "all")
            surprise = np.maximum(surprise, burst)
        nov_q = np.where(q_use & (nn >= min_field), np.maximum(surprise - hh, 0.0), 0.0)
        # nov_q is 0 for entities without a baseline (q_use), so every pair can be written
        novelty.reshape(-1)[at.ev * f_all + plan.cat_index[at.tt]] = nov_q[at.pair]

    # --- numeric histograms, only where an event has the value and an entity baseline
    if f_num:
        nb = config.numeric_bins
        cum = np.cumsum(state.hist[urows], axis=2, dtype=np.int32).reshape(-1)  # [U * Fn * B]
        ev_n, f_n = np.nonzero(use[:, None] & (keys.num_bins >= 0))
        base = (u_of[ev_n] * f_num + f_n) * nb
        b = keys.num_bins[ev_n, f_n].astype(np.int64)
        upto = cum[base + b].astype(np.float64)  # history in bins <= b
        lo = np.where(b > 0, cum[base + np.maximum(b - 1, 0)], 0).astype(np.float64)  # < b
        tot = cum[base + nb - 1].astype(np.float64)
        h_b = upto - lo
        f_lo = (lo + 0.5 * h_b + 0.5) / (tot + 1.0)
        f_hi = (tot - lo - 0.5 * h_b + 0.5) / (tot + 1.0)
        surprise_n = np.maximum(-np.log(2.0 * np.minimum(f_lo, f_hi)), 0.0)
        # Beyond everything seen: a Pareto tail of index 1, +1 nat per e-fold past the edge.
        v = keys.num_log[ev_n, f_n].astype(np.float64)
        above, below = np.flatnonzero(lo >= tot), np.flatnonzero(upto <= 0)
        if len(above):  # edge = top of the highest occupied bin
            rows_c = cum[base[above, None] + np.arange(nb)]
            top = (rows_c < tot[above, None]).sum(axis=1)
            surprise_n[above] += np.maximum(v[above] - (top + 1) * config.bin_width, 0.0)
        if len(below):  # edge = bottom of the lowest occupied bin
            low = (cum[base[below, None] + np.arange(nb)] == 0).sum(axis=1)
            surprise_n[below] += np.maximum(low * config.bin_width - v[below], 0.0)
        ok = tot >= min_field
        novelty[ev_n[ok], plan.num_index[f_n[ok]]] = np.maximum(surprise_n[ok] - 1.0, 0.0)

    # --- hour of day
    if plan.hour_index is not None and state.hour.shape[1]:
        hist_h = state.hour[urows].astype(np.float64)
        tot_h = hist_h.sum(axis=1)
        sm = _smooth_hours(hist_h, config.hour_smoothing)
        prob = (sm + _HOUR_PRIOR) / (tot_h[:, None] + HOURS * _HOUR_PRIOR)
        ent = -(prob * np.log(prob)).sum(axis=1)
        hr = np.maximum(keys.hour.astype(np.int64), 0)
        ok_h = use & (keys.hour >= 0) & (tot_h[u_of] >= min_field)
        nov_h = np.maximum(-np.log(prob[u_of, hr]) - ent[u_of], 0.0)
        novelty[:, plan.hour_index] = np.where(ok_h, nov_h, 0.0)

    g_sd = np.sqrt(state.g_var[r0].astype(np.float64) + 1e-6)
    score_z = np.where(use, (keys.g - state.g_mean[r0]) / g_sd, np.nan).astype(np.float32)
    entity_score = _combine(novelty, config.combine).astype(np.float32, copy=False)
    entity_score[~use] = 0.0
    entity_term = np.where(use, entity_score, prior)
    combined = (keys.g + config.entity_weight * entity_term).astype(np.float32)

    result = FingerprintScores(
        plan=plan,
        config=config,
        clock=keys.clock,
        entity_baseline=use,
        history=history,
        since=since,
        entity_score=entity_score,
        combined=combined,
        combined_anomaly=keys.flagged | (combined > threshold),
        novelty=novelty,
        score_z=score_z,
    )
    if explain:
        explained = np.ones(n, bool) if config.explain == "all" else result.combined_anomaly
        # new-for-the-entity fields by novelty (ties: layout order), then the rest by global z
        reason_fields = np.array(top_fields, dtype=np.int64)
        ours = np.flatnonzero(use & explained)
        if len(ours):
            k = top_fields.shape[1]
            z = np.clip(keys.field_z[ours], 0.0, 20.0)
            rank = np.where(novelty[ours] > 0, novelty[ours], config.reason_z_weight * z)
            reason_fields[ours] = np.argsort(-rank, axis=1, kind="stable")[:, :k]
        result.reasons = _details(
            state, plan, config, keys, at, use & explained, u_of, urows, fn, reason_fields
        )
        result.reasons.explained = explained
    return result


def _burst(
    g: np.ndarray,
    key: np.ndarray,
    seen: np.ndarray,
    p: np.ndarray,
    count: np.ndarray,
    size: int,
    include_seen: bool,
) -> np.ndarray:
    """``b · KL(m/b || p)`` per distinct pair: the surprise of a batch's burst of rare values.

    ``g`` is the pair's (entity, field) group, ``count`` its events in the batch; ``b``: the
    group's events, ``m``: those of the pair's class, where all values the entity never used
    form one class (``bursts: new``) and, with ``include_seen`` (``bursts: all``), each seen
    value is a class of its own (brute force's failed logins; normal shifts in habit then
    score as bursts too, docs/fingerprinting.md). Only when ``m/b`` is more than twice ``p``
    and ``m > 1``; never more than ``m · -ln p``, the events taken apart.
    """
    new = seen == 0
    b = np.bincount(g, weights=count, minlength=size)[g]
    m = np.where(new, np.bincount(g[new], weights=count[new], minlength=size)[g], count)
    burst = _chernoff(m, b, p)
    return burst if include_seen else np.where(new, burst, 0.0)


def _chernoff(m: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = m / np.maximum(b, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(q < 1.0, (b - m) * np.log((1.0 - q) / (1.0 - p)), 0.0)
        kl = m * np.log(q / p) + rest
    # where it applies kl is finite (q > 2p > 0 and q <= 1); fmax maps NaN elsewhere to 0
    return np.where((q > 2.0 * p) & (m > 1), np.fmax(kl, 0.0), 0.0)


def _smooth_hours(hist: np.ndarray, half: int) -> np.ndarray:
    """Circular triangular kernel of half-width ``half`` (weights sum to 1)."""
    if half == 0:
        return hist.astype(np.float64)
    ext = np.concatenate([hist[:, -half:], hist, hist[:, :half]], axis=1).astype(np.float64)
    out = (half + 1) * ext[:, half : half + HOURS]
    for d in range(1, half + 1):
        out += (half + 1 - d) * (
            ext[:, half - d : half - d + HOURS] + ext[:, half + d :][:, :HOURS]
        )
    return out / float((half + 1) ** 2)


_ANGLES = 2 * np.pi * (np.arange(HOURS) + 0.5) / HOURS
_UNIT = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)  # [24, 2]


def _hour_window(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Usual hours of each row as (from, to) UTC hours (inclusive): the circular mean of its
    profile +- 1.645 circular standard deviations (90% of a wrapped normal); -1 when empty,
    (0, 23) when activity is spread around the clock."""
    total = hist.sum(axis=1).astype(np.float64)
    vec = hist.astype(np.float64) @ _UNIT / np.maximum(total, 1.0)[:, None]
    r = np.clip(np.hypot(vec[:, 0], vec[:, 1]), 1e-9, 1.0)
    mean = np.mod(np.arctan2(vec[:, 1], vec[:, 0]) / (2 * np.pi) * HOURS - 0.5, HOURS)
    half = 1.645 * np.sqrt(-2.0 * np.log(r)) / (2 * np.pi) * HOURS
    start = np.floor(np.mod(mean - half + 0.5, HOURS)).astype(np.int64)
    end = np.floor(np.mod(mean + half + 0.5, HOURS)).astype(np.int64)
    wide = half >= HOURS / 2 - 1
    start, end = np.where(wide, 0, start), np.where(wide, HOURS - 1, end)
    return np.where(total > 0, start, -1), np.where(total > 0, end, -1)


def _details(
    state: BaselineState,
    plan: FieldPlan,
    config: FingerprintConfig,
    keys: BatchKeys,
    at: Located,
    use: np.ndarray,
    u_of: np.ndarray,
    urows: np.ndarray,
    fn: np.ndarray,
    reason_fields: np.ndarray,
) -> Reasons:
    """The numbers behind each reason (entity-baseline rows only), gathered per reason kind."""
    n, k = reason_fields.shape
    out: dict[str, np.ndarray] = {
        "seen": np.full((n, k), -1, np.int64),
        "events": np.full((n, k), -1, np.int64),
        "day": np.full((n, k), -1, np.int64),
        "usual": np.zeros((n, k), np.uint32),
        "share": np.full((n, k), np.nan),
        "median": np.full((n, k), np.nan),
        "ratio": np.full((n, k), np.nan),
        "beyond": np.full((n, k), -1, np.int64),
        "hour_from": np.full((n, k), -1, np.int64),
        "hour_to": np.full((n, k), -1, np.int64),
        "hour_inside": np.zeros((n, k), bool),
        "z_entity": np.full((n, k), np.nan),
    }
    rows = at.rows
    if state.z_mean.shape[1]:
        r = np.maximum(rows, 0)[:, None]
        mean, var = state.z_mean[r, reason_fields], state.z_var[r, reason_fields]
        zf = np.take_along_axis(keys.field_z, reason_fields, 1)
        z_ent = (zf - mean) / np.sqrt(var.astype(np.float64) + 1e-6)
        out["z_entity"] = np.where(use[:, None], z_ent, np.nan)

    cat_pos = np.full(plan.n_fields, -1, np.int64)
    cat_pos[plan.cat_index] = np.arange(len(plan.categorical))
    num_pos = np.full(plan.n_fields, -1, np.int64)
    num_pos[plan.num_index] = np.arange(len(plan.numeric))

    # categorical reasons
    t_cat = len(plan.categorical)
    i, j = np.nonzero(use[:, None] & (cat_pos[reason_fields] >= 0))
    if len(i):
        t = cat_pos[reason_fields[i, j]]
        seen = np.zeros((n, t_cat), np.int64)
        slot = np.full((n, t_cat), -1, np.int64)
        seen[at.ev, at.tt], slot[at.ev, at.tt] = at.q_seen[at.pair], at.q_slot[at.pair]
        s = slot[i, t]
        out["seen"][i, j] = seen[i, t]
        out["events"][i, j] = fn[u_of[i], t].astype(np.int64)
        out["day"][i, j] = np.where(
            s >= 0, state.vday.reshape(-1)[np.maximum(s, 0)].astype(np.int64), -1
        )
        # for values the entity never used: its most frequent one, once per (entity, field)
        new = np.flatnonzero(seen[i, t] == 0)
        if len(new):
            pair, ids = group_codes(u_of[i[new]] * t_cat + t[new])
            pu, pt = ids // t_cat, ids % t_cat
            ent = urows[pu]
            vc = state.vcount[ent].astype(np.int64)
            vc[(state.vfield[ent] != pt[:, None]) | (state.vkey[ent] == 0)] = -1
            best = vc.argmax(axis=1)
            top = vc[np.arange(len(ent)), best]
            usual = np.where(top > 0, state.vkey[ent, best], 0).astype(np.uint32)
            out["usual"][i[new], j[new]] = usual[pair]
            out["share"][i[new], j[new]] = (np.maximum(top, 0) / np.maximum(fn[pu, pt], 1))[pair]

    # numeric reasons
    i, j = np.nonzero(use[:, None] & (num_pos[reason_fields] >= 0))
    if len(i):
        q = num_pos[reason_fields[i, j]]
        hist = state.hist[rows[i], q].astype(np.float64)  # [M, B]
        total = hist.sum(axis=1)
        cum = np.cumsum(hist, axis=1)
        mb = np.minimum((cum < total[:, None] / 2.0).sum(axis=1), hist.shape[1] - 1)
        ar = np.arange(len(i))
        inbin = hist[ar, mb]
        below = cum[ar, mb] - inbin
        frac = np.clip((total / 2.0 - below) / np.maximum(inbin, 1.0), 0.0, 1.0)
        med_log = (mb + frac) * config.bin_width
        b = keys.num_bins[i, q].astype(np.int64)
        valid = b >= 0
        bb = np.maximum(b, 0)
        h_b, lo = hist[ar, bb], cum[ar, bb] - hist[ar, bb]
        upper = (total - lo - h_b) <= lo
        has = valid & (total > 0)
        out["events"][i, j] = total.astype(np.int64)
        out["median"][i, j] = np.where(has, np.expm1(med_log), np.nan)
        out["ratio"][i, j] = np.where(has, np.exp(keys.num_log[i, q] - med_log), np.nan)
        beyond = np.where(upper, total - lo - h_b, lo)
        out["beyond"][i, j] = np.where(has, beyond, -1).astype(np.int64)

    # hour reasons
    if plan.hour_index is not None and state.hour.shape[1]:
        i, j = np.nonzero(use[:, None] & (reason_fields == plan.hour_index))
        if len(i):
            code, ents = group_codes(u_of[i])
            hist_h = state.hour[urows[ents]].astype(np.int64)
            hr = keys.hour[i].astype(np.int64)
            out["seen"][i, j] = np.where(hr >= 0, hist_h[code, np.maximum(hr, 0)], -1)
            out["events"][i, j] = hist_h.sum(axis=1)[code]
            start, end = _hour_window(hist_h)
            start, end = start[code], end[code]
            out["hour_from"][i, j], out["hour_to"][i, j] = start, end
            inside = np.where(
                start <= end, (hr >= start) & (hr <= end), (hr >= start) | (hr <= end)
            )
            out["hour_inside"][i, j] = inside & (start >= 0) & (hr >= 0)
    return Reasons(fields=reason_fields, explained=use, **out)


def _combine(novelty: np.ndarray, how: str) -> np.ndarray:
    if novelty.shape[1] == 0:
        return np.zeros(len(novelty), dtype=np.float32)
    if how == "sum":
        return novelty.sum(axis=1)
    if how == "max":  # column by column: numpy reduces a short inner axis slowly
        return np.maximum.reduce([novelty[:, f] for f in range(novelty.shape[1])])
    if novelty.shape[1] == 1:
        return novelty[:, 0].copy()
    return -np.partition(-novelty, 1, axis=1)[:, :2].sum(axis=1)
