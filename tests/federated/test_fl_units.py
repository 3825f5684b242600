"""Small pieces of the federated stack: config checks, site splits, faults, attacks, strategies,
ledger, certificates, the CLI surface."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from pydantic import ValidationError

from federated.attacks import poison
from federated.certs import make_node_keys, make_tls
from federated.config import FederationConfig as Fed
from federated.config import FLConfig, SiteSplitConfig, StrategyConfig
from federated.ledger import PrivacyBudgetExceeded, PrivacyLedger, new_run_id
from federated.site_split import carve_mask, load_federated_data, public_inputs, site_assignment
from federated.stragglers import SimulatedDropout, apply_faults
from federated.strategy import build_strategy
from morpheus_ext.markdown_sections import update_section
from pipelines import cli_fl

SRC = {"synthetic": {"n_events": 1000, "n_sites": 3}}


def _config(**kw: object) -> FLConfig:
    return FLConfig.model_validate(
        {"data": {"train": SRC}, "public": {"source": SRC}, "sites": {"n_sites": 3}, **kw}
    )


def test_config_names_sites_that_do_not_exist() -> None:
    with pytest.raises(ValidationError, match=r"site indices \[3\] do not exist"):
        _config(attack={"malicious_sites": [3]})
    with pytest.raises(ValidationError, match="wait forever"):
        _config(federation={"min_available_clients": 4})
    assert _config().strategy.name == "fedmedian"  # robust by default
    assert _config().privacy.enabled


def test_site_column_and_dirichlet_splits() -> None:
    values = np.array(["b", "a", "c", "a"] * 50, dtype=object)
    names, site = site_assignment(values, SiteSplitConfig(n_sites=3), seed=0)
    assert names == ["a", "b", "c"] and site[:4].tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match="has 3 values"):
        site_assignment(values, SiteSplitConfig(n_sites=2), seed=0)
    split = SiteSplitConfig(method="dirichlet", n_sites=4, alpha=0.3)
    names, a = site_assignment(values, split, seed=1)
    _, b = site_assignment(values, split, seed=1)
    assert names == [f"site-{i}" for i in range(4)]
    assert (a == b).all() and set(a.tolist()) <= {0, 1, 2, 3}
    # small alpha: sites see very different mixes of the column's values
    mix = [np.mean(values[a == s] == "a") for s in range(4) if (a == s).sum() > 10]
    assert max(mix) - min(mix) > 0.3


def test_public_carve_is_disjoint_from_the_sites_rows() -> None:
    plain = _config()
    carved = FLConfig.model_validate(
        {
            "data": {"train": SRC},
            "public": {"carve": {"fraction": 0.2, "seed": 3}},
            "sites": {"n_sites": 3},
        }
    )
    everyone = load_federated_data(plain)
    normal = set(np.concatenate(everyone.train_rows + everyone.val_rows).tolist())
    data = load_federated_data(carved)
    assert carved.public.carve is not None
    mask = carve_mask(len(data.tensor), carved.public.carve)
    public_rows = sorted(normal & set(np.flatnonzero(mask).tolist()))
    site_rows = np.concatenate(data.train_rows + data.val_rows)
    assert not set(site_rows.tolist()) & set(np.flatnonzero(mask).tolist())
    assert len(site_rows) + len(public_rows) == len(normal)  # nothing lost, nothing twice
    assert mask.sum() == round(0.2 * len(data.tensor))
    public = public_inputs(carved, data.spec, None)
    assert public.info["rows"] == len(public_rows)
    np.testing.assert_array_equal(public.raw, data.tensor[public_rows])
    # recorded where the run keeps them (run.json's data info, fl_result.json's public info)
    recorded = data.info["public_carve"]
    assert isinstance(recorded, dict) and recorded == public.info["carve"]
    assert recorded["seed"] == 3 and recorded["carved_rows"] == mask.sum()
    # the carve's own seed, not the run's, picks the rows
    other = carved.model_copy(update={"seed": 5})
    assert (carve_mask(len(data.tensor), other.public.carve) == mask).all()  # type: ignore[arg-type]


def test_public_sample_is_a_source_or_a_carve_not_both() -> None:
    carve = {"fraction": 0.1}
    with pytest.raises(ValidationError, match=r"exactly one of source .* both given"):
        _config(public={"source": SRC, "carve": carve})
    with pytest.raises(ValidationError, match=r"exactly one of source .* neither given"):
        _config(public={})
    with pytest.raises(ValidationError, match="fraction"):
        _config(public={"carve": {"fraction": 1.0}})
    with pytest.raises(ValidationError, match=r"public\.carve takes its rows from data\.train"):
        _config(public={"carve": carve}, sites={"method": "window", "n_sites": 3})
    assert _config(public={"carve": carve}).public.source is None


def test_faults_are_seeded() -> None:
    from federated.config import StragglerConfig

    cfg = StragglerConfig(drop_probability=0.5)
    outcome = []
    for r in range(1, 21):
        try:
            apply_faults(cfg, 0, r, seed=0)
            outcome.append(True)
        except SimulatedDropout:
            outcome.append(False)
    again = []
    for r in range(1, 21):
        try:
            apply_faults(cfg, 0, r, seed=0)
            again.append(True)
        except SimulatedDropout:
            again.append(False)
    assert outcome == again and 3 < sum(outcome) < 17
    with pytest.raises(SimulatedDropout):
        apply_faults(StragglerConfig(drop_sites=[2]), 2, 1, seed=0)


def test_attacks() -> None:
    g: dict[str, np.ndarray] = {"w": np.ones(4, np.float32), "n": np.array([3], np.int64)}
    local: dict[str, np.ndarray] = {"w": np.full(4, 2.0, np.float32), "n": np.array([3])}
    assert poison(g, local, "scaled", 5.0, 0)["w"].tolist() == [6.0] * 4
    assert poison(g, local, "sign_flip", 5.0, 0)["w"].tolist() == [-4.0] * 4
    noisy = poison(g, local, "random", 5.0, 0)["w"]
    assert noisy.dtype == np.float32 and not np.allclose(noisy, 2.0)
    assert poison(g, local, "random", 5.0, 0)["n"].tolist() == [3]  # integer buffers untouched


@pytest.fixture
def task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


def _replies(values: list[float]) -> list[Message]:
    out = []
    for node, v in enumerate(values):
        request = Message(
            RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train"
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": Array(np.full(3, v, np.float32))}),
                "metrics": MetricRecord({"num-examples": 100, "train-loss": 0.1, "epsilon": v}),
            }
        )
        out.append(Message(content, reply_to=request))
    return out


@pytest.mark.parametrize(
    ("name", "expected"),
    [("fedavg", 20.86), ("fedmedian", 1.1), ("fedtrimmedavg", 1.1), ("krum", 1.05)],
)
def test_strategies_against_one_poisoned_update(
    task_identity: None, name: str, expected: float
) -> None:
    """Four honest sites near 1, one sends 100: only the mean follows it."""
    strategy = build_strategy(StrategyConfig(name=name, trim_beta=0.2), Fed())
    arrays, metrics = strategy.aggregate_train(1, _replies([1.0, 1.05, 1.1, 1.15, 100.0]))
    assert arrays is not None and metrics is not None
    # (Krum picks one honest update: 1.05 and 1.1 tie on distance, the first wins.)
    assert float(arrays["w"].numpy()[0]) == pytest.approx(expected, abs=1e-5)
    if name != "krum":  # Krum reports the metrics of the update it picked
        assert metrics["epsilon"] == 100.0  # privacy counters aggregate by max, never by mean
        assert metrics["num-examples"] == 500


def test_ledger_budget_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "site-0.json"
    ledger = PrivacyLedger.open(path, "site-0", budget_epsilon=5.0)
    ledger.check("r1", 3.0, 1)
    ledger.record("r1", 3.0, 1e-5, {"noise_multiplier": 1.0})
    ledger.record("r0", None, None, {"dp": False})  # a non-DP run is recorded, not counted
    reopened = PrivacyLedger.open(path, "site-0", budget_epsilon=50.0)
    assert reopened.budget_epsilon == 5.0  # a run config cannot raise a stored budget
    assert reopened.spent() == (3.0, 1e-5)
    reopened.check("r1", 4.9, 9)  # the same run may grow up to the budget
    with pytest.raises(PrivacyBudgetExceeded, match=r"earlier runs 3\.000"):
        reopened.check("r2", 2.5, 1)
    doc = json.loads(path.read_text())
    assert doc["spent_epsilon"] == 3.0 and doc["composition"].startswith("basic")


def test_fl_ledger_shows_a_sites_history_and_names_a_missing_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import build_parser
    from pipelines.cli_base import run_cli

    ledger = PrivacyLedger.open(tmp_path / "site-0.json", "site-0", budget_epsilon=10.0)
    first, second = new_run_id("fed"), new_run_id("fed")
    assert first != second
    ledger.record(first, 2.5, 1e-5, {"noise_multiplier": 1.2, "rounds": [1, 2, 3]})
    ledger.record(second, 3.0, 1e-5, {"noise_multiplier": 1.1, "rounds": [1, 2]})
    assert run_cli(build_parser(), ["fl", "ledger", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "site site-0: epsilon spent 5.500 of 10.000 (left 4.500)" in out
    assert first in out and second in out and "2 run(s)" in out
    assert run_cli(build_parser(), ["fl", "ledger", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in doc[0]["runs"]] == [first, second]
    assert doc[0]["left_epsilon"] == pytest.approx(4.5)
    assert run_cli(build_parser(), ["fl", "ledger", str(tmp_path), "--site", "site-9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"secureai: error: no ledger of site 'site-9' in {tmp_path}"]


def test_certificates_chain_and_node_keys(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    keys = make_node_keys(tmp_path, "node")
    key = load_ssh_private_key(keys.private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert keys.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert oct(keys.private_key.stat().st_mode)[-3:] == "600"


def test_results_section_is_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## Other\nkeep me\n")
    update_section(doc, "fl_compare:privacy_utility", ["## FL", "first"])
    update_section(doc, "fl_compare:privacy_utility", ["## FL", "second"])
    text = doc.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count("fl_compare:privacy_utility:begin") == 1


def test_cli_registers_fl_commands() -> None:
    parser = argparse.ArgumentParser(prog="secureai")
    cli_fl.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fl", "simulate", "--config", "configs/fed_dp_small.yml"])
    assert args.func is cli_fl.cmd_simulate
    args = parser.parse_args(["fl", "compare", "--no-docs"])
    assert args.func is cli_fl.cmd_compare and args.config == "configs/baselines.yml"
    args = parser.parse_args(["fl", "deploy", "--insecure", "--no-auth"])
    assert args.func is cli_fl.cmd_deploy and args.insecure and args.no_auth


@pytest.mark.parametrize(
    "path",
    [
        "configs/fed_dp_small.yml",
        "configs/fed_stragglers.yml",
        "configs/fed_robustness.yml",
        "configs/baselines.yml",
        "configs/fl_nsl_kdd.yml",
    ],
)
def test_shipped_configs_validate(path: str) -> None:
    from federated.compare import CompareConfig
    from morpheus_ext.config_io import load_config

    root = Path(__file__).resolve().parents[2]
    compare = path.endswith(("baselines.yml", "fed_robustness.yml", "fl_nsl_kdd.yml"))
    model: type[FLConfig] | type[CompareConfig] = CompareConfig if compare else FLConfig
    load_config(root / path, model)
