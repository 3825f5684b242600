"""The membership-inference audit (#21): the statistics are right, and the audit tells a
model that memorised its site from an eps=1 DP-SGD model trained on the same rows.

The two models are trained with the sites' own functions (``train_dp_round`` with DP,
``fit_autoencoder`` without) on one tiny site: 200 members, 200 held-out non-members of the
same synthetic organisation, normalized with a normalizer fitted on a public sample
(:mod:`federated.audit_sweep`, whose full sweep is a documented command, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federated.audit import AuditError, load_run
from federated.audit_sweep import SweepConfig, procedures, run_sweep
from federated.mia import (
    attack_metrics,
    clopper_pearson,
    epsilon_lower_bound,
    lira_scores,
    loss_scores,
)


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


@pytest.mark.slow
def test_audit_detects_a_memorising_model_and_not_an_eps1_model() -> None:
    config = SweepConfig(members=200, epsilons=[1.0], reference_models=4, seed=0)
    (_, non_private), (_, eps_1) = procedures(config)
    assert (non_private.dp, non_private.epochs) == (False, 100)
    assert (eps_1.dp, eps_1.target_epsilon) == (True, 1.0)
    reports = {r["setting"]: r for r in run_sweep(config)}
    leaky, private = reports["no DP"]["attacks"], reports["eps=1"]["attacks"]

    # the non-private model gives its members away; LiRA's calibration sharpens the attack
    assert leaky["loss"]["auc"] >= 0.7
    assert leaky["lira"]["auc"] >= 0.8
    assert leaky["lira"]["tpr_at_fpr"]["0.01"] >= 0.1  # vs 0.01 by chance
    assert reports["no DP"]["empirical_epsilon"] > 0.5

    # eps=1: both attacks near a coin flip, and what they prove stays within the accountant
    for attack in ("loss", "lira"):
        assert abs(private[attack]["auc"] - 0.5) <= 0.06, (attack, private[attack]["auc"])
    assert reports["eps=1"]["accountant_epsilon"] == pytest.approx(1.0, abs=0.03)
    assert reports["eps=1"]["empirical_epsilon"] <= reports["eps=1"]["accountant_epsilon"]


def _untrained_run_dir(run_dir: Path) -> None:
    """A finished-looking federated run without a Flower run: a resolved config (3 sites of
    1500 synthetic events, DP off), a completed ``fl_result.json`` and an untrained checkpoint."""
    from federated.config import FLConfig, PublicDataConfig, SiteSplitConfig
    from federated.site_split import fit_public_inputs
    from modelling.checkpoint import save_checkpoint
    from modelling.config import DataConfig, DataSource, ModelConfig
    from modelling.models import build_autoencoder
    from morpheus_ext.config_io import dump_config
    from morpheus_ext.feature_spec import load_spec
    from synthetic import SyntheticConfig

    run_dir.mkdir(parents=True, exist_ok=True)
    src = DataSource(synthetic=SyntheticConfig(n_events=1500, n_sites=3, seed=0))
    config = FLConfig(
        data=DataConfig(train=src),
        public=PublicDataConfig(source=src),
        sites=SiteSplitConfig(n_sites=3),
        model=ModelConfig(hidden=[16, 4]),
    )
    config.privacy.enabled = False
    dump_config(config, run_dir / "config.yaml")
    (run_dir / "fl_result.json").write_text(json.dumps({"status": "completed", "dp": None}))
    spec = load_spec("security_events")
    public = fit_public_inputs(src, spec, "normal")
    model = build_autoencoder(config.model, spec.tensor_width, seed=0)
    save_checkpoint(
        run_dir / "model", model, config.model, public.normalizer, "security_events", "h"
    )


def test_fl_audit_reads_a_run_dir_and_writes_audit_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run-directory path without a Flower run: a resolved config, a completed
    ``fl_result.json`` (DP off) and an untrained checkpoint; members and non-members come
    from the config's site split."""
    import argparse

    from pipelines import cli_fl

    _untrained_run_dir(tmp_path)
    parser = argparse.ArgumentParser(prog="secureai")
    cli_fl.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["fl", "audit", "--run-dir", str(tmp_path), "--reference-models", "2", "--max-rows", "100"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "100 members vs 100 held-out non-members" in out
    assert "accountant epsilon: none (DP off)" in out
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["rows"] == {"members": 100, "non_members": 100}
    assert sorted(doc["attacks"]) == ["lira", "loss"]
    assert doc["attacks"]["lira"]["reference_models"] == 2
    assert doc["accountant"]["epsilon"] is None and doc["within_accountant"] is None
    assert abs(doc["attacks"]["loss"]["auc"] - 0.5) < 0.15  # an untrained model knows no one


def test_fl_compare_audits_every_federated_experiment_into_its_table_and_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fl compare`` with ``audit:`` runs the real audit on each federated experiment's run
    directory; its AUC and proved epsilon land in results.json, the table and the figure.
    The federated runs themselves are replaced by ``fake_federated_row`` (a prepared run
    directory, no Flower simulation): what is under test is compare's wiring."""
    import yaml

    from federated import compare as compare_module
    from federated.compare import CompareConfig, compare

    doc = yaml.safe_load((Path(__file__).parents[2] / "configs" / "baselines.yml").read_text())
    doc["experiments"] = [doc["experiments"][1], doc["experiments"][3]]  # no DP, eps 3
    doc["criteria"] = []
    doc["report"].update(reference="fl_nodp", results_md=None)
    doc["audit"] = {"reference_models": 2, "max_rows": 100}
    config = CompareConfig.model_validate(doc)

    def fake_federated_row(
        cfg: CompareConfig, out: Path, exp: compare_module.ExperimentConfig
    ) -> dict[str, object]:
        _untrained_run_dir(out / exp.name)
        dp = exp.name != "fl_nodp"
        return {
            "kind": "federated", "strategy": "fedmedian", "dp": "ε=3" if dp else "off",
            "target_epsilon": 3.0 if dp else None, "epsilon_spent": 3.0 if dp else None,
            "attack": "none", "rounds": 1, "wall_s": 0.0, "run_dir": str(out / exp.name),
            "metrics": {"auroc": 0.9, "auprc": 0.5, "best_f1": 0.5, "tpr_at_fpr": {"0.01": 0.4}},
        }  # fmt: skip

    monkeypatch.setattr(compare_module, "_federated", fake_federated_row)
    result = compare(config, tmp_path / "cmp")
    for row in result.rows:
        audit = row["audit"]
        assert audit["attack"] == "lira" and audit["members"] == 100
        assert abs(audit["auc"] - 0.5) < 0.15 and audit["empirical_epsilon"] >= 0
        assert (Path(row["run_dir"]) / "audit.json").is_file()
    table = (tmp_path / "cmp" / "results.md").read_text()
    assert "| MIA AUC | ε proved (95%) |" in table.splitlines()[0]
    assert {line.count("|") for line in table.splitlines()[:4]} == {14}  # 13 columns
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [r["audit"]["auc"] for r in saved["rows"]] == [r["audit"]["auc"] for r in result.rows]
    assert result.figure.stat().st_size > 0
