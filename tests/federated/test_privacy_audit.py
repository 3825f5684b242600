"""The membership-inference audit (#21): the statistics are right, and the audit tells a
model that memorised its site from an eps=1 DP-SGD model trained on the same rows.

The two models are trained with the sites' own functions (``train_dp_round`` with DP,
``fit_autoencoder`` without) on one tiny site: 200 members, 200 held-out non-members of the
same synthetic organisation, normalized with a normalizer fitted on a public sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federated.audit import (
    AuditConfig,
    AuditError,
    Procedure,
    audit_model,
    load_run,
    planned_state,
    train_like_site,
)
from federated.mia import (
    attack_metrics,
    clopper_pearson,
    epsilon_lower_bound,
    lira_scores,
    loss_scores,
)
from modelling.config import ModelConfig


def test_random_scores_prove_nothing_and_a_perfect_attack_proves_a_lot() -> None:
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(2000, int), np.zeros(2000, int)]
    noise = rng.normal(size=4000)
    assert abs(attack_metrics(member, noise)["auc"] - 0.5) < 0.03
    assert epsilon_lower_bound(member, noise, delta=1e-5).epsilon < 0.3
    perfect = member + 0.01 * noise
    bound = epsilon_lower_bound(member, perfect, delta=1e-5, confidence=0.95)
    # 1000 + 1000 rows evaluated, none wrong: one-sided CP bounds at 2.5% each are
    # TPR >= 0.025**(1/1000) and FPR <= 1 - 0.025**(1/1000): eps >= ln(ratio), about 5.6 (a
    # threshold picked on the other half may drop a member or two of this half)
    tpr_low = 0.025 ** (1 / 1000)
    assert 5.4 < bound.epsilon <= np.log((tpr_low - 1e-5) / (1 - tpr_low)) + 1e-9
    assert attack_metrics(member, perfect)["tpr_at_fpr"] == {"0.001": 1.0, "0.01": 1.0}


def test_clopper_pearson_covers_the_binomial_rate() -> None:
    lo, hi = clopper_pearson(np.array([30]), 100, 0.025)
    assert lo[0] < 0.3 < hi[0]
    assert (round(float(lo[0]), 3), round(float(hi[0]), 3)) == (0.212, 0.400)


def test_lira_calibrates_per_row_difficulty() -> None:
    """A hard row (high loss for every model) with a loss below its own OUT level is a member;
    the global loss threshold would call it a non-member."""
    rng = np.random.default_rng(1)
    difficulty = rng.lognormal(0, 1.5, size=400)
    member = np.r_[np.ones(200, int), np.zeros(200, int)]
    ref_in = rng.random((16, 400)) < 0.5
    ref = difficulty * np.exp(rng.normal(0, 0.1, (16, 400))) * np.where(ref_in, 0.7, 1.0)
    target = difficulty * np.exp(rng.normal(0, 0.1, 400)) * np.where(member == 1, 0.7, 1.0)
    loss_auc = attack_metrics(member, loss_scores(target))["auc"]
    for online in (False, True):
        lira_auc = attack_metrics(member, lira_scores(target, ref, ref_in, online=online))["auc"]
        assert lira_auc > 0.95 > loss_auc + 0.2


def test_an_unfinished_run_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="run directory not found"):
        load_run(tmp_path / "nope")
    with pytest.raises(AuditError, match=r"not a finished federated run \(no config.yaml\)"):
        load_run(tmp_path)
    (tmp_path / "config.yaml").write_text("name: x\n")
    (tmp_path / "fl_result.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "checkpoint.json").write_text("{}")
    with pytest.raises(AuditError, match="did not complete \\(status 'running'\\)"):
        load_run(tmp_path)


@pytest.fixture(scope="module")
def tiny_site() -> tuple[np.ndarray, np.ndarray]:
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.normalizer import Normalizer
    from morpheus_ext.stages.preprocess.featurizer import Featurizer
    from synthetic import SyntheticConfig, generate

    spec = load_spec("security_events")

    def rows(n: int, seed: int) -> np.ndarray:
        frame = generate(SyntheticConfig(n_events=n, seed=seed, anomaly_rate=0.0, n_sites=1))
        return np.asarray(Featurizer(spec).transform(frame).tensor)

    normalizer = Normalizer.fit(rows(1000, 7), spec.layout)
    x = normalizer.transform(rows(600, 5)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:200]], x[order[200:400]]


MODEL = ModelConfig(hidden=[128, 32])
NON_PRIVATE = Procedure(model=MODEL, epochs=100, batch_size=32, lr=2e-3, dp=False)
EPS_1 = Procedure(model=MODEL, epochs=30, batch_size=32, lr=2e-3, dp=True, target_epsilon=1.0)


@pytest.mark.slow
def test_audit_detects_a_memorising_model_and_not_an_eps1_model(
    tiny_site: tuple[np.ndarray, np.ndarray],
) -> None:
    members, non_members = tiny_site
    config = AuditConfig(reference_models=4, seed=0)
    reports = {}
    for name, proc in (("no-dp", NON_PRIVATE), ("eps=1", EPS_1)):
        model = train_like_site(members, proc, seed=0)
        reports[name] = audit_model(model, members, non_members, proc, config)
    leaky, private = reports["no-dp"]["attacks"], reports["eps=1"]["attacks"]

    # the non-private model gives its members away; LiRA's calibration sharpens the attack
    assert leaky["loss"]["auc"] >= 0.7
    assert leaky["lira"]["auc"] >= 0.8
    assert leaky["lira"]["tpr_at_fpr"]["0.01"] >= 0.1  # vs 0.01 by chance
    assert reports["no-dp"]["empirical_epsilon"] > 0.5

    # eps=1: both attacks near a coin flip, and what they prove stays within the accountant
    for attack in ("loss", "lira"):
        assert abs(private[attack]["auc"] - 0.5) <= 0.06, (attack, private[attack]["auc"])
    accountant = planned_state(len(members), EPS_1)
    accountant.add_steps(EPS_1.epochs * round(1 / accountant.sample_rate))
    assert accountant.epsilon() == pytest.approx(1.0, abs=0.03)
    assert reports["eps=1"]["empirical_epsilon"] <= accountant.epsilon()
