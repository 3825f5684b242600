"""Privacy you can check: a membership-inference audit of a trained model version.

The accountant's epsilon is a proof about the *mechanism* (DP-SGD with this sigma, clip and
sampling rate); it says nothing if the mechanism was wired wrongly (noise never added, the
clip on the wrong tensor, the history dropped between rounds). The audit attacks the model
that came out: it asks the model which rows it trained on and measures how well that works.

* members: rows the sites trained on; non-members: the sites' validation rows, held out by
  the same seeded split from the same sites (:mod:`federated.site_split`), so the only
  difference between the two sets is membership;
* score: each row's reconstruction error (MSE over its 256 normalized slots);
* attacks (:mod:`federated.mia`): loss threshold (Yeom et al. 2018) and LiRA (Carlini et al.
  2022) calibrated with ``reference_models`` models trained like a site (same code path:
  :func:`federated.dp_training.train_dp_round` with DP, ``fit_autoencoder`` without) on random
  halves of the audit pool;
* result: AUC, TPR at 0.1% / 1% FPR, and the epsilon the attack proves at ``confidence``
  beside the accountant's epsilon, in ``<run_dir>/audit.json``.

A correct DP run gives AUC near 0.5 and an empirical epsilon at or below the accountant's; an
empirical bound *above* the accountant's epsilon is a bug in the DP wiring (or an unlucky
draw at the stated confidence). The bound is a lower bound: a small one does not show the
model is private, only that these attacks could not show otherwise.

>>> from modelling.config import ModelConfig
>>> rng = np.random.default_rng(0)
>>> rows = rng.normal(size=(40, 256)).astype(np.float32)
>>> proc = Procedure(model=ModelConfig(hidden=[16, 4]), epochs=2, batch_size=8, dp=False)
>>> model = train_like_site(rows[:20], proc, seed=0)
>>> report = audit_model(model, rows[:20], rows[20:], proc, AuditConfig(reference_models=2))
>>> sorted(report["attacks"]), report["rows"]
(['lira', 'loss'], {'members': 20, 'non_members': 20})
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from federated.config import FLConfig, LocalTrainConfig, PrivacyConfig
from federated.dp_training import train_dp_round
from federated.mia import attack_metrics, epsilon_lower_bound, lira_scores, loss_scores
from federated.pretrain import INITIAL_WEIGHTS_FILE
from federated.privacy import SitePrivacyState, plan_noise
from modelling.config import ModelConfig, TrainConfig
from modelling.models import build_autoencoder
from modelling.rundir import write_json
from modelling.training import fit_autoencoder, seed_everything
from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError

AUDIT_FILE = "audit.json"


class AuditError(SecureAIError, ValueError):
    """A run directory the audit cannot read (missing, unfinished, no site split)."""


class AuditConfig(StrictModel):
    """What the audit does; every field has a default small enough for 2 cores."""

    reference_models: int = Field(default=4, ge=0, le=64)
    """LiRA's reference models (0: loss-threshold attack only). Each trains once."""
    lira: Literal["offline", "online"] = "offline"
    """``offline``: calibrate with the OUT models of a row only (Carlini et al.'s offline
    LiRA); ``online``: compare the IN and OUT Gaussians (stronger, same models)."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """Confidence of the Clopper-Pearson bounds behind the empirical epsilon."""
    max_rows: int = Field(default=2000, ge=10)
    """At most this many members and this many non-members (seeded sample)."""
    seed: int = 0
    threads: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class Procedure:
    """How a site trained: what the reference models repeat (all local epochs of the run in
    one go; with DP, sigma planned for exactly those steps at ``target_epsilon``)."""

    model: ModelConfig
    epochs: int
    batch_size: int = 256
    lr: float = 2e-3
    dp: bool = True
    target_epsilon: float = 1.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    grad_sample_mode: Literal["ghost", "hooks"] = "ghost"
    threads: int = 1

    @classmethod
    def of_run(cls, config: FLConfig) -> Procedure:
        p = config.privacy
        return cls(
            model=config.model,
            epochs=config.federation.rounds * config.local.epochs,
            batch_size=config.local.batch_size,
            lr=config.local.lr,
            dp=p.enabled,
            target_epsilon=p.target_epsilon,
            delta=p.delta,
            max_grad_norm=p.max_grad_norm,
            grad_sample_mode=p.grad_sample_mode,
            threads=config.local.threads,
        )


def planned_state(n_rows: int, proc: Procedure) -> SitePrivacyState:
    """The accountant of a DP procedure on ``n_rows`` rows, before any step."""
    plan = plan_noise(n_rows, proc.batch_size, 1, proc.epochs, proc.target_epsilon, proc.delta)
    return SitePrivacyState(plan.noise_multiplier, plan.sample_rate, plan.delta)


def train_like_site(
    rows: np.ndarray,
    proc: Procedure,
    seed: int,
    initial: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A model trained on ``rows`` the way a site trains (the sites' own functions).

    DP: :func:`federated.dp_training.train_dp_round` with the noise planned for the whole
    procedure, so the accountant's epsilon is ``proc.target_epsilon``. No DP:
    ``fit_autoencoder`` as a non-DP site, validated on its own rows (no early stop before
    ``epochs``; the weights with the lowest training loss are kept), in float32. ``initial``:
    the run's initial global weights (``public.pretrain``) instead of seeded random ones, so
    the reference models start where the sites started.
    """
    model = build_autoencoder(proc.model, rows.shape[1], seed=seed)
    if initial is not None:
        model.load_state_dict(initial)
    if proc.dp:
        state = planned_state(len(rows), proc)
        local = LocalTrainConfig(
            epochs=proc.epochs, batch_size=proc.batch_size, lr=proc.lr, threads=proc.threads
        )
        privacy = PrivacyConfig(
            target_epsilon=proc.target_epsilon,
            delta=proc.delta,
            max_grad_norm=proc.max_grad_norm,
            grad_sample_mode=proc.grad_sample_mode,
        )
        train_dp_round(model, rows, local, privacy, state, seed)
    else:
        fit_autoencoder(
            model,
            rows,
            rows,
            TrainConfig(
                epochs=proc.epochs,
                batch_size=proc.batch_size,
                lr=proc.lr,
                patience=proc.epochs,
                seed=seed,
                threads=proc.threads,
                precision="float32",
            ),
        )
    return model.eval()


@torch.no_grad()
def reconstruction_errors(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Per-row mean squared reconstruction error on normalized rows: the attack's signal (the
    loss each row contributed to training, and the anomaly score the model serves)."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        out.append(((model(chunk) - chunk) ** 2).mean(dim=1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _attack(
    is_member: np.ndarray, score: np.ndarray, delta: float, config: AuditConfig
) -> dict[str, Any]:
    bound = epsilon_lower_bound(is_member, score, delta, config.confidence, config.seed)
    return {**attack_metrics(is_member, score), "epsilon_lower_bound": bound.to_dict()}


def audit_model(
    model: nn.Module,
    members: np.ndarray,
    non_members: np.ndarray,
    proc: Procedure,
    config: AuditConfig,
    initial: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Both attacks on ``model``; LiRA's reference models repeat ``proc`` on random halves of
    the pool (members + non-members), so every row is IN for about half of them, starting
    from ``initial`` when the run started from non-random weights."""
    seed_everything(config.seed, config.threads)
    started = time.perf_counter()
    pool = np.concatenate([members, non_members]).astype(np.float32)
    is_member = np.r_[np.ones(len(members), int), np.zeros(len(non_members), int)]
    target = reconstruction_errors(model, pool)
    attacks = {"loss": _attack(is_member, loss_scores(target), proc.delta, config)}
    k = config.reference_models
    if k:
        rng = np.random.default_rng([config.seed, 1])
        ref_in = np.zeros((k, len(pool)), dtype=bool)
        ref_loss = np.zeros((k, len(pool)))
        for i in range(k):
            ref_in[i, rng.permutation(len(pool))[: len(pool) // 2]] = True
            ref = train_like_site(
                pool[ref_in[i]], proc, seed=config.seed * 1000 + 17 + i, initial=initial
            )
            ref_loss[i] = reconstruction_errors(ref, pool)
        scores = lira_scores(target, ref_loss, ref_in, online=config.lira == "online")
        attacks["lira"] = {
            **_attack(is_member, scores, proc.delta, config),
            "variant": config.lira,
            "reference_models": k,
            "reference_rows": len(pool) // 2,
        }
    empirical = max(a["epsilon_lower_bound"]["epsilon"] for a in attacks.values())
    return {
        "rows": {"members": len(members), "non_members": len(non_members)},
        "attacks": attacks,
        "empirical_epsilon": empirical,
        "confidence": config.confidence,
        "delta": proc.delta,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= n else np.sort(rng.choice(rows, n, replace=False))


def load_run(run_dir: Path) -> tuple[FLConfig, dict[str, Any], Path]:
    """The resolved config and ``fl_result.json`` of a finished run, or one line saying why
    the directory cannot be audited."""
    from federated.server import RESULT_FILE
    from modelling.checkpoint import CHECKPOINT_DIR
    from morpheus_ext.config_io import load_config

    if not run_dir.is_dir():
        raise AuditError(f"run directory not found: {run_dir}")
    for name in ("config.yaml", RESULT_FILE, f"{CHECKPOINT_DIR}/checkpoint.json"):
        if not (run_dir / name).is_file():
            raise AuditError(
                f"{run_dir} is not a finished federated run (no {name}): audit the directory "
                "`secureai fl simulate --run-dir` wrote"
            )
    result = json.loads((run_dir / RESULT_FILE).read_text())
    if result.get("status") != "completed":
        raise AuditError(
            f"the run in {run_dir} did not complete (status {result.get('status')!r}): "
            "nothing to audit"
        )
    config = load_config(run_dir / "config.yaml", FLConfig)
    if config.sites.method == "window":
        raise AuditError(
            "this run's sites trained on their own windows: the audit needs the run's site "
            "split (sites.method site_column or dirichlet) to know members from non-members"
        )
    return config, result, run_dir / CHECKPOINT_DIR


def audit_run(run_dir: Path, config: AuditConfig | None = None) -> dict[str, Any]:
    """Audit a finished federated run and write ``<run_dir>/audit.json``.

    Members: a seeded sample of the rows every site trained on; non-members: the sites'
    validation rows (never trained on, same sites). The accountant's epsilon is the largest a
    site spent (each row is protected by its own site's accounting).
    """
    from federated.site_split import load_federated_data
    from modelling.checkpoint import load_checkpoint

    config = config or AuditConfig()
    fl, result, checkpoint_dir = load_run(run_dir)
    checkpoint = load_checkpoint(checkpoint_dir)
    data = load_federated_data(fl)
    rng = np.random.default_rng(config.seed)
    members = _sample(np.concatenate(data.train_rows), config.max_rows, rng)
    non_members = _sample(np.concatenate(data.val_rows), config.max_rows, rng)
    normalize = checkpoint.normalizer.transform
    model = checkpoint.build(data.spec.tensor_width)
    proc = Procedure.of_run(fl)
    # A run pretrained on the public sample saved its initial weights: start the references there.
    initial_path = run_dir / INITIAL_WEIGHTS_FILE
    initial = torch.load(initial_path) if initial_path.is_file() else None
    report = audit_model(
        model,
        normalize(data.tensor[members]),
        normalize(data.tensor[non_members]),
        proc,
        config,
        initial,
    )
    dp = result.get("dp")
    accountant = (
        {"epsilon": dp["epsilon_max"], "delta": dp["delta"], "accountant": dp["accountant"]}
        if dp
        else {"epsilon": None, "delta": fl.privacy.delta, "accountant": "none (DP off)"}
    )
    eps = accountant["epsilon"]
    doc = {
        "run_dir": str(run_dir),
        "fl_run_id": result.get("fl_run_id"),
        "method": "membership inference: loss threshold (Yeom et al. 2018) and LiRA "
        "(Carlini et al. 2022); empirical epsilon from Clopper-Pearson bounds (Jagielski et "
        "al. 2020); docs/privacy_audit.md",
        "audit_config": config.model_dump(mode="json"),
        "procedure": {
            "dp": proc.dp,
            "epochs": proc.epochs,
            "batch_size": proc.batch_size,
            "target_epsilon": proc.target_epsilon if proc.dp else None,
            "reference_start": "seeded random" if initial is None else INITIAL_WEIGHTS_FILE,
        },
        "accountant": accountant,
        **report,
        "within_accountant": None if eps is None else report["empirical_epsilon"] <= eps + 1e-9,
    }
    write_json(run_dir / AUDIT_FILE, doc)
    return doc
