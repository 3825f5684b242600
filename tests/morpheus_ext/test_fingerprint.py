"""Per-entity baselines: tables, eviction, memory cap, checkpoint/restore, records, privacy."""

from __future__ import annotations

import ast
import doctest
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

import morpheus_ext.stages.postprocess.fingerprint.baselines as baselines_module
from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.postprocess.fingerprint import (
    CheckpointError,
    EntityBaselines,
    FingerprintConfig,
)
from morpheus_ext.stages.postprocess.fingerprint.index import EntityIndex
from morpheus_ext.stages.postprocess.fingerprint.state import BaselineState
from morpheus_ext.stages.postprocess.fingerprint.valueset import insert, lookup
from morpheus_ext.stages.postprocess.records import build_records, score_record_schema
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, Featurizer
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT

Batch = tuple[FeaturizedBatch, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return load_spec("security_events")


@pytest.fixture(scope="module")
def engine(spec: FeatureSpec) -> InProcessEngine:
    return InProcessEngine(DEFAULT_REPOSITORY, spec.spec_hash)


def _fake_outputs(
    n: int, spec: FeatureSpec, flagged: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    flags = np.zeros(n, bool) if flagged is None else flagged
    return {
        "ANOMALY_SCORE": np.where(flags, 1.0, 0.001).astype(np.float32)[:, None],
        "THRESHOLD": np.full((n, 1), 0.01, np.float32),
        "FIELD_Z": np.zeros((n, len(spec.layout.fields)), np.float32),
        "IS_ANOMALY": flags[:, None],
    }


def _auth(spec: FeatureSpec, users: list[str], times: list[str], country: str = "US") -> Batch:
    n = len(users)
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "event_type": ["auth"] * n,
            "timestamp": times,
            "user": users,
            "country": [country] * n,
            "device": ["macbook"] * n,
        }
    )
    batch = Featurizer(spec).transform(frame)
    return batch, _fake_outputs(len(batch), spec)


def _stream_batches(spec: FeatureSpec, engine: InProcessEngine, n: int, size: int) -> list[Batch]:
    frame = generate(SyntheticConfig(n_events=n, seed=4, days=2, n_users=150, n_hosts=80))
    fz = Featurizer(spec)
    out = []
    for lo in range(0, len(frame), size):
        batch = fz.transform(frame.iloc[lo : lo + size])
        out.append((batch, engine.infer(batch.tensor)))
    return out


# --------------------------------------------------------------------------- building blocks
def test_value_table_counts_evicts_least_counted_and_ignores_row_order() -> None:
    config = FingerprintConfig(enabled=True, values_per_entity=8, probes=8)
    state = BaselineState(config, n_fields=4, n_cat=2, n_num=0)
    rows = state.allocate(2)
    keys = np.arange(1, 9, dtype=np.uint32) * 1_000_003
    counts = np.array([9, 8, 7, 6, 5, 4, 3, 2])
    # row 0 gets all eight keys (full table), row 1 only the first one
    r = np.array([rows[0]] * 8 + [rows[1]])
    k = np.concatenate([keys, keys[:1]])
    c = np.concatenate([counts, [1]])
    assert insert(state, r, k, np.zeros(9, np.uint8), c, day=20_000, probes=8) == 0
    seen, _ = lookup(state, r, k, probes=8)
    assert seen.tolist() == [*counts.tolist(), 1]
    # a ninth key evicts the least counted (count 2); a repeat adds to the count
    new = np.array([keys[0], 77_777_777], dtype=np.uint32)
    insert(state, np.array([rows[0]] * 2), new, np.zeros(2, np.uint8), np.array([1, 1]), 20_001, 8)
    seen, _ = lookup(state, np.array([rows[0]] * 3), np.array([keys[0], keys[7], 77_777_777]), 8)
    assert seen.tolist() == [10, 0, 1]
    # same pairs in another order -> identical tables
    other = BaselineState(config, n_fields=4, n_cat=2, n_num=0)
    other.allocate(2)
    order = np.random.default_rng(0).permutation(9)
    insert(other, r[order], k[order], np.zeros(9, np.uint8), c[order], day=20_000, probes=8)
    insert(
        other, np.array([rows[0]] * 2), new[::-1], np.zeros(2, np.uint8), np.ones(2, int), 20_001, 8
    )
    assert np.array_equal(other.vkey, state.vkey) and np.array_equal(other.vcount, state.vcount)


def test_entity_index_two_levels() -> None:
    index = EntityIndex(merge_at=4)
    keys = np.array([50, 10, 40, 30, 20, 60], dtype=np.uint64)
    index.add(keys[:3], np.array([0, 1, 2]))
    index.add(keys[3:], np.array([3, 4, 5]))  # triggers a merge
    assert index.lookup(np.array([10, 20, 99, 60], dtype=np.uint64)).tolist() == [1, 4, -1, 5]
    index.remove(np.array([20], dtype=np.uint64))
    assert index.lookup(np.array([20, 30], dtype=np.uint64)).tolist() == [-1, 3] and len(index) == 5


# --------------------------------------------------------------------------- bounded memory
def test_lru_keeps_at_most_max_entities_and_drops_the_least_recent(spec: FeatureSpec) -> None:
    config = FingerprintConfig(enabled=True, max_entities=10, evict_to=0.8)
    baselines = EntityBaselines(spec, config)
    for hour in range(6):  # 6 batches x 5 new users, one hour apart
        users = [f"u{hour}-{i}" for i in range(5)]
        baselines.observe(*_auth(spec, users, [f"2026-11-02T{hour:02d}:00:00Z"] * 5))
        assert len(baselines) <= 10
    assert baselines.evicted == 20
    assert baselines.entity_row("u5-0") >= 0 and baselines.entity_row("u0-0") < 0
    assert len(baselines.state.used_rows()) == len(baselines)


def test_ttl_drops_idle_entities(spec: FeatureSpec) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True, ttl_days=2))
    baselines.observe(*_auth(spec, ["old", "busy"], ["2026-11-01T08:00:00Z"] * 2))
    baselines.observe(*_auth(spec, ["busy"], ["2026-11-02T08:00:00Z"]))
    baselines.observe(*_auth(spec, ["busy"], ["2026-11-03T09:00:00Z"]))
    assert baselines.entity_row("old") < 0 and baselines.entity_row("busy") >= 0


def test_memory_per_entity_is_within_the_documented_cap(spec: FeatureSpec) -> None:
    """docs/fingerprinting.md: at most 720 bytes per entity with the default config."""
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True))
    n = 20_000
    users = [f"user{i:06d}" for i in range(n)]
    baselines.observe(*_auth(spec, users, ["2026-11-02T08:00:00Z"] * n))
    assert len(baselines) == n
    assert baselines.state.bytes_per_entity + 12 <= 720
    assert baselines.state.nbytes / baselines.state.capacity <= baselines.state.bytes_per_entity
    assert baselines.index.nbytes <= 12 * n + 64


# --------------------------------------------------------------------------- learning rules
def test_update_from_normal_skips_what_the_model_flags(spec: FeatureSpec) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True))
    batch, outputs = _auth(spec, ["alice"] * 4, ["2026-11-02T08:00:00Z"] * 4)
    outputs = _fake_outputs(4, spec, flagged=np.array([True, True, False, False]))
    baselines.observe(batch, outputs)
    assert baselines.describe("alice") is not None
    assert baselines.describe("alice")["events"] == 2  # type: ignore[index]


def test_new_country_tops_the_reasons_in_words(spec: FeatureSpec, engine: InProcessEngine) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True, min_events=20))
    times = [f"2026-11-02T{8 + i % 8:02d}:{i % 60:02d}:00Z" for i in range(40)]
    baselines.observe(*_auth(spec, ["alice"] * 40, times))
    batch, _ = _auth(spec, ["alice"], ["2026-11-03T10:00:00Z"], country="BR")
    outputs = engine.infer(batch.tensor)
    fp = baselines.observe(batch, outputs)
    (record,) = build_records(batch, outputs, Featurizer(spec), engine.info, fingerprint=fp)
    jsonschema.validate(record, score_record_schema())
    top = record["reasons"][0]
    assert record["baseline"] == "entity" and record["entity_events"] == 40
    assert top["field"] == "country" and top["value"] == "BR"
    assert top["text"] == "country=BR never seen for alice in 1 days (40 events; usual: US)"
    assert top["entity"]["seen"] == 0 and top["entity"]["usual"] == "US"
    assert top["entity"]["first_seen"] is None
    assert record["entity_score"] > 2.0


def test_rows_without_an_entity_and_empty_batches(spec: FeatureSpec) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True))
    frame = pd.DataFrame(
        {
            "event_id": ["x", "y"],
            "event_type": ["auth"] * 2,
            "timestamp": ["2026-11-01T00:00:00Z"] * 2,
        }
    )
    batch = Featurizer(spec).transform(frame)
    scores = baselines.observe(batch, _fake_outputs(2, spec))
    assert not scores.entity_baseline.any() and len(baselines) == 0
    empty = Featurizer(spec).transform(frame.iloc[:0])
    assert len(baselines.observe(empty, _fake_outputs(0, spec))) == 0


# --------------------------------------------------------------------------- durability
def _run(
    spec: FeatureSpec, batches: list[Batch], start: int = 0, base: EntityBaselines | None = None
) -> EntityBaselines:
    baselines = base or EntityBaselines(spec, FingerprintConfig(enabled=True, min_events=10))
    for batch, outputs in batches[start:]:
        baselines.observe(batch, outputs)
    return baselines


def _same_state(a: EntityBaselines, b: EntityBaselines) -> None:
    sa, sb = a.state.export(), b.state.export()
    for name in BaselineState.ROW_ARRAYS:
        assert np.array_equal(sa[name], sb[name]), name
    assert (a.clock, a.next_ttl, a.prior_sum, a.prior_count) == (
        b.clock,
        b.next_ttl,
        b.prior_sum,
        b.prior_count,
    )
    assert np.array_equal(a.combined_hist, b.combined_hist)


def test_kill_and_restart_equals_an_uninterrupted_run(
    spec: FeatureSpec, engine: InProcessEngine, tmp_path: Path
) -> None:
    batches = _stream_batches(spec, engine, 12_000, 1000)
    whole = _run(spec, batches)

    # Crashing run: commit after batch 5, learn two more batches, die before committing them.
    crashed = _run(spec, batches[:5])
    path = crashed.checkpoint(tmp_path / "baselines.npz", {"events:0": 5})
    _run(spec, batches[5:7], base=crashed)
    del crashed

    restarted = EntityBaselines(spec, FingerprintConfig(enabled=True, min_events=10))
    offsets = restarted.restore(path)
    assert offsets == {"events:0": 5}
    _run(spec, batches, start=offsets["events:0"], base=restarted)
    _same_state(restarted, whole)
    assert len(whole) > 100 and whole.state.n.sum() > 10_000 * 0.9


def test_checkpoint_write_is_atomic(
    spec: FeatureSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True))
    baselines.observe(*_auth(spec, ["alice"], ["2026-11-02T08:00:00Z"]))
    path = baselines.checkpoint(tmp_path / "b.npz", {"t:0": 1})
    baselines.observe(*_auth(spec, ["bob"], ["2026-11-02T09:00:00Z"]))

    def die(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(baselines_module.np, "savez", die)
    with pytest.raises(OSError, match="disk full"):
        baselines.checkpoint(path, {"t:0": 2})
    monkeypatch.undo()
    fresh = EntityBaselines(spec, FingerprintConfig(enabled=True))
    assert fresh.restore(path) == {"t:0": 1}
    assert fresh.entity_row("alice") >= 0 and fresh.entity_row("bob") < 0


def test_restore_refuses_another_layout(spec: FeatureSpec, tmp_path: Path) -> None:
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True))
    path = baselines.checkpoint(tmp_path / "b.npz", {})
    other = EntityBaselines(spec, FingerprintConfig(enabled=True, values_per_entity=16))
    with pytest.raises(CheckpointError, match="values_per_entity"):
        other.restore(path)


# --------------------------------------------------------------------------- integration
def test_pipeline_with_and_without_baselines(spec: FeatureSpec, engine: InProcessEngine) -> None:
    frame = generate(SyntheticConfig(n_events=3000, seed=6, n_users=40, n_hosts=30))
    validator = jsonschema.Draft202012Validator(score_record_schema())
    plain = ScoringPipeline(Featurizer(spec), engine)
    baselines = EntityBaselines(spec, FingerprintConfig(enabled=True, min_events=10))
    fingerprinted = ScoringPipeline(Featurizer(spec), engine, baselines=baselines)
    for i, raw in enumerate(frame_source(frame, 1000)):
        before = plain.process(raw).records
        after = fingerprinted.process(raw).records
        assert "baseline" not in before[0] and "text" not in before[0]["reasons"][0]
        for record in before[:200] + after[:200]:
            validator.validate(record)
        if i == 2:  # by the third batch most entities have 10 events
            assert sum(r["baseline"] == "entity" for r in after) > len(after) / 2
            flagged = [r for r in after if r["combined_anomaly"]]  # explain: alerts (default)
            assert flagged and len(flagged) < len(after)
            assert all(isinstance(why["text"], str) for r in flagged for why in r["reasons"])
            assert not any("text" in why for r in after for why in r["reasons"] if r not in flagged)


def test_federated_code_never_imports_the_baselines() -> None:
    """Baselines stay on the site: no federated module may import them."""
    for path in sorted((REPO_ROOT / "federated").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            assert not any("fingerprint" in n for n in names), f"{path} imports {names}"


def test_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(baselines_module)
    assert tried > 0 and failures == 0


@pytest.fixture(autouse=True)
def _no_stray_temp_files(tmp_path: Path) -> Iterator[None]:
    yield
    assert not list(tmp_path.glob(".*.tmp"))
