"""With baselines, the column-wise score records are byte for byte ``orjson.dumps`` of the dicts.

:func:`morpheus_ext.stages.postprocess.records.build_records` (one dict per event,
:func:`entity_reasons` in Python
per reason) is the reference; :class:`ScoreRecords` with a fingerprint builds the same JSON lines
from Arrow string kernels (``reason_fragments``), which is what the runners write.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.postprocess import record_reasons as records_module
from morpheus_ext.stages.postprocess.fingerprint import EntityBaselines, FingerprintConfig
from morpheus_ext.stages.postprocess.fingerprint.reason_fragments import _escape, _fixed
from morpheus_ext.stages.postprocess.records import ScoreRecords, build_records, build_score_records
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec("security_events")
AT = "2026-11-24T00:00:00.000+00:00"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> InProcessEngine:
    dest = tmp_path_factory.mktemp("models") / "triton_model_repository"
    shutil.copytree(REPO_ROOT / "triton_model_repository", dest)
    return InProcessEngine(dest, SPEC.spec_hash, threads=1)


def _odd(frame: pd.DataFrame) -> pd.DataFrame:
    """Entities and values that need JSON escaping, empty/missing entities, odd numbers."""
    frame = frame.copy()
    ent = frame["user"].astype(object).to_numpy(copy=True)
    ent[::7] = 'CORP\\"bob"'
    ent[3::11] = "tab\there"
    ent[5::13] = ""
    ent[6::17] = None
    frame["user"] = ent
    if "bytes_out" in frame.columns:
        b = pd.to_numeric(frame["bytes_out"], errors="coerce").to_numpy(np.float64, copy=True)
        b[1::19], b[2::23], b[4::29] = -0.0, 1.5e13, 0.25
        frame["bytes_out"] = b
    if "device" in frame.columns:
        dev = frame["device"].astype(object).to_numpy(copy=True)
        dev[2::9] = 'mac"book\\x'
        frame["device"] = dev
    return frame


@pytest.mark.parametrize(
    ("explain", "dict_share"), [("all", 0.25), ("alerts", 0.25), ("alerts", 0.0)]
)
def test_fingerprint_score_records_match_the_dicts(
    engine: InProcessEngine, explain: str, dict_share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of writing explained records (column-wise; from dicts when they are few)."""
    monkeypatch.setattr(records_module, "DICT_RECORDS_UP_TO", dict_share)
    featurizer = Featurizer(SPEC)
    config = FingerprintConfig(enabled=True, min_events=5, explain=explain)  # type: ignore[arg-type]
    baselines = EntityBaselines(SPEC, config)
    common = {"n_sites": 2, "heterogeneity": 0.5, "n_users": 60, "n_hosts": 20}
    history = generate(SyntheticConfig(n_events=6000, seed=0, days=3, **common))
    test = generate(
        SyntheticConfig(
            n_events=3000,
            seed=1,
            population_seed=0,
            days=1,
            start="2026-11-04T00:00:00Z",
            entity_relative=True,
            **common,
        )
    )
    for frame, learn_only in ((_odd(history), True), (_odd(test), False)):
        for lo in range(0, len(frame), 1000):
            fb = featurizer.transform(frame.iloc[lo : lo + 1000])
            outputs = engine.infer(fb.tensor)
            fp = baselines.observe(fb, outputs)
            if learn_only:
                continue
            records = build_score_records(fb, outputs, featurizer, engine.info, AT, fp)
            dicts = build_records(fb, outputs, featurizer, engine.info, AT, fingerprint=fp)
            assert isinstance(records, ScoreRecords)
            assert records.json_lines() == [orjson.dumps(d) for d in dicts]
            assert records.jsonl() == b"".join(orjson.dumps(d) + b"\n" for d in dicts)
            assert records == dicts
            said = [d for d in dicts if "text" in d["reasons"][0]]
            if explain == "alerts":  # words for exactly the flagged records
                assert said == [d for d in dicts if d["combined_anomaly"] or d["is_anomaly"]]
                assert 0 < len(said) < len(dicts)
            else:
                assert len(said) == len(dicts)
            assert all("text" in r for d in said for r in d["reasons"])
            assert not any(
                "text" in r or "entity" in r for d in dicts for r in d["reasons"] if d not in said
            )
    if explain == "all":
        texts = " ".join(r["text"] for d in dicts for r in d["reasons"])
        for kind in ("never seen", " for ", "the median", "usual hours", "population"):
            assert kind in texts


def test_fixed_spells_like_python() -> None:
    rng = np.random.default_rng(0)
    ties = np.arange(-2000, 2000) / 20  # x.x5: float error decides the digit
    x = np.concatenate(
        [
            ties,
            rng.normal(0, 30, 5000),
            rng.exponential(5, 5000),
            [0.0, -0.0, 0.04, -0.04, 999.95, 1e4, 1e12, -1e20, np.nan, np.inf, -np.inf],
        ]
    )
    for digits in (0, 1):
        want = [f"{v:.{digits}f}" for v in x.tolist()]
        assert _fixed(x, digits).to_pylist() == want


def test_escape_spells_like_orjson() -> None:
    import pyarrow as pa

    texts = ["plain", 'q"uote', "back\\slash", "ctl\x01\n", "", None, "üñí"]
    want = [None if t is None else orjson.dumps(t).decode()[1:-1] for t in texts]
    assert _escape(pa.array(texts, type=pa.string())).to_pylist() == want
