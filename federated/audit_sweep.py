"""The audit's calibration sweep: one tiny site, trained without DP and at several epsilons.

A federated run on the small config trains too little for any attack to see its members, DP
or not (docs/privacy_audit.md), so it cannot show that the audit *can* catch a leak. This sweep
builds the setting where a leak is certain: one site of ``members`` synthetic normal rows,
an over-parameterised autoencoder trained for many epochs without DP (it memorises), and the
same rows under DP-SGD at each epsilon, every model trained with the sites' own functions
(:func:`federated.audit.train_like_site`). Each model is audited against ``members`` held-out
rows of the same organisation. The test (tests/federated/test_privacy_audit.py) runs the
non-private and the eps=1 settings with 4 reference models; the full sweep is::

    python -m federated.audit_sweep --reference-models 16 --members 500 --epsilons 1 3 8

(minutes on 2 cores; not part of ``make test``).

>>> cfg = SweepConfig(members=30, epsilons=[], non_private_epochs=2, reference_models=0)
>>> [row["setting"] for row in run_sweep(cfg)]
['no DP']
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import Field

from federated.audit import AuditConfig, Procedure, audit_model, planned_state, train_like_site
from modelling.config import ModelConfig
from morpheus_ext.config_io import StrictModel


class SweepConfig(StrictModel):
    """The tiny site and the settings audited; defaults are the test's."""

    members: int = Field(default=200, ge=10)
    """Rows the site trains on; as many held-out rows are the non-members."""
    hidden: list[int] = Field(default_factory=lambda: [128, 32])
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    non_private_epochs: int = Field(default=100, ge=1)
    dp_epochs: int = Field(default=30, ge=1)
    epsilons: list[float] = Field(default_factory=lambda: [1.0])
    delta: float = Field(default=1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    reference_models: int = Field(default=4, ge=0)
    seed: int = 0


def site_rows(members: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalized members and as many non-members: one synthetic organisation's normal rows,
    split at random; the normalizer is fitted on a separate public sample."""
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.normalizer import Normalizer
    from morpheus_ext.stages.preprocess.featurizer import Featurizer
    from synthetic import SyntheticConfig, generate

    spec = load_spec("security_events")

    def rows(n: int, data_seed: int) -> np.ndarray:
        frame = generate(SyntheticConfig(n_events=n, seed=data_seed, anomaly_rate=0.0, n_sites=1))
        return np.asarray(Featurizer(spec).transform(frame).tensor)

    normalizer = Normalizer.fit(rows(1000, 7), spec.layout)
    x = normalizer.transform(rows(3 * members, 5)).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order[:members]], x[order[members : 2 * members]]


def procedures(config: SweepConfig) -> list[tuple[str, Procedure]]:
    base = Procedure(
        model=ModelConfig(hidden=config.hidden),
        epochs=config.non_private_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        dp=False,
        delta=config.delta,
        max_grad_norm=config.max_grad_norm,
    )
    out = [("no DP", base)]
    for eps in config.epsilons:
        proc = replace(base, epochs=config.dp_epochs, dp=True, target_epsilon=eps)
        out.append((f"eps={eps:g}", proc))
    return out


def run_sweep(config: SweepConfig) -> list[dict[str, Any]]:
    """One audit per setting: attack metrics beside the accountant's epsilon."""
    members, non_members = site_rows(config.members, config.seed)
    audit = AuditConfig(reference_models=config.reference_models, seed=config.seed)
    results = []
    for name, proc in procedures(config):
        model = train_like_site(members, proc, seed=config.seed)
        report = audit_model(model, members, non_members, proc, audit)
        accountant = None
        if proc.dp:
            state = planned_state(len(members), proc)
            state.add_steps(proc.epochs * round(1 / state.sample_rate))
            accountant = state.epsilon()
        results.append({"setting": name, "accountant_epsilon": accountant, **report})
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | attack | AUC | TPR@0.1%FPR | TPR@1%FPR | eps lower bound (95%) | "
        "accountant eps |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        acc = "none" if r["accountant_epsilon"] is None else f"{r['accountant_epsilon']:.2f}"
        for name, a in r["attacks"].items():
            lines.append(
                f"| {r['setting']} | {name} | {a['auc']:.3f} | {a['tpr_at_fpr']['0.001']:.3f} | "
                f"{a['tpr_at_fpr']['0.01']:.3f} | {a['epsilon_lower_bound']['epsilon']:.2f} | "
                f"{acc} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--reference-models", type=int, default=4)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the full reports here")
    args = parser.parse_args(argv)
    config = SweepConfig(
        members=args.members,
        reference_models=args.reference_models,
        epsilons=args.epsilons,
        seed=args.seed,
    )
    results = run_sweep(config)
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
