"""What one site does in a round, independent of Flower: train (DP or not), evaluate, report.

The ClientApp (``federated.client``) is a thin adapter from Flower messages to this class, so
the site's logic is testable in-process and the same in simulation and deployment.

Per round, a site with DP on:

1. plans its noise multiplier the first time it is sampled (fixed for the run,
   :func:`federated.privacy.plan_noise`);
2. the first time, asks its ledger whether the epsilon the whole run is planned to reach fits
   the site's lifetime budget (refused before any training otherwise); every round, projects
   the epsilon it will have after this round and asks again
   (:class:`federated.ledger.PrivacyLedger`);
3. trains with DP-SGD from the global weights (:func:`federated.dp_training.train_dp_round`);
4. records the new epsilon in its ledger and returns weights + metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from federated.attacks import poison
from federated.config import FLConfig
from federated.ledger import PrivacyLedger
from federated.privacy import ACCOUNTANT, SitePrivacyState, plan_noise
from federated.prometheus_metrics import ClientMetrics
from federated.site_split import load_federated_data
from federated.site_window import load_site_rows
from modelling.config import TrainConfig
from modelling.models import build_autoencoder
from modelling.training import evaluate_loss, fit_autoencoder
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.stages.preprocess.featurizer import Featurizer

StateDict = dict[str, torch.Tensor]


def round_seed(seed: int, site: int, server_round: int) -> int:
    """Distinct, reproducible seed per (run, site, round)."""
    return int(np.random.default_rng([seed, site, server_round]).integers(2**31 - 1))


@dataclass
class SiteUpdate:
    state_dict: StateDict
    metrics: dict[str, float | int]


@dataclass(frozen=True)
class WindowSource:
    """Where a ``sites.method: window`` site's rows come from (its SuperNode's node config)."""

    path: Path
    name: str
    until: datetime
    """The run's start: every message of the run reads the window as of then."""


class Site:
    """One site's data, normalized with the run's normalizer: its rows of the run's split, or
    (``window``) its own training window (:mod:`federated.site_window`)."""

    def __init__(
        self,
        config: FLConfig,
        index: int,
        normalizer: Normalizer,
        ledger_dir: Path,
        window: WindowSource | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.normalizer = normalizer
        self.holdout_frame: pd.DataFrame | None = None
        self.window_info: dict[str, Any] | None = None
        if window is None:
            data = load_federated_data(config)
            if not 0 <= index < len(data.names):
                raise ValueError(f"site index {index} out of range: the run has {len(data.names)}")
            self.name = data.names[index]
            self.width = data.spec.tensor_width
            self.x_train = normalizer.transform(data.site_train(index))
            self.x_val = normalizer.transform(data.site_val(index))
        else:
            spec = load_spec(config.data.spec)
            rows = load_site_rows(window.path, spec, config.window, window.until, config.seed)
            featurizer = Featurizer(spec)
            self.name = window.name
            self.width = spec.tensor_width
            self.x_train = normalizer.transform(np.asarray(featurizer.transform(rows.train).tensor))
            self.x_val = normalizer.transform(np.asarray(featurizer.transform(rows.holdout).tensor))
            self.holdout_frame = rows.holdout
            self.window_info = rows.info
        self.ledger_path = ledger_dir / f"{self.name}.json"

    def _model(self, state_dict: StateDict) -> torch.nn.Module:
        model = build_autoencoder(self.config.model, self.width)
        model.load_state_dict(state_dict)
        return model

    def plan(self) -> SitePrivacyState:
        p = self.config.privacy
        plan = plan_noise(
            len(self.x_train),
            self.config.local.batch_size,
            self.config.federation.rounds,
            self.config.local.epochs,
            p.target_epsilon,
            p.delta,
        )
        return SitePrivacyState(plan.noise_multiplier, plan.sample_rate, plan.delta)

    def ledger(self) -> PrivacyLedger:
        return PrivacyLedger.open(
            self.ledger_path, self.name, self.config.privacy.site_budget_epsilon
        )

    def train(
        self,
        global_state: StateDict,
        server_round: int,
        run_id: str,
        dp: SitePrivacyState | None,
    ) -> tuple[SiteUpdate, SitePrivacyState | None]:
        """One local round from ``global_state``; ``dp`` is this run's accountant so far."""
        cfg = self.config
        seed = round_seed(cfg.seed, self.index, server_round)
        model = self._model(global_state)
        ledger = self.ledger()
        metrics: dict[str, float | int] = {}
        if cfg.privacy.enabled:
            per_round_steps = cfg.local.epochs
            if dp is None:  # first time this run samples the site: can the run finish here?
                dp = self.plan()
                planned = dp.projected_epsilon(
                    round(1.0 / dp.sample_rate) * per_round_steps * cfg.federation.rounds
                )
                ledger.check_run(run_id, planned)
            per_round = round(1.0 / dp.sample_rate) * per_round_steps
            ledger.check(run_id, dp.projected_epsilon(per_round), server_round)
            from federated.dp_training import train_dp_round  # (Opacus: only when training)

            stats = train_dp_round(model, self.x_train, cfg.local, cfg.privacy, dp, seed)
            dp.rounds.append(server_round)
            epsilon = dp.epsilon()
            ledger.record(run_id, epsilon, dp.delta, self._dp_details(dp))
            metrics.update(
                {
                    "train-loss": stats.train_loss,
                    "samples-per-s": stats.samples_per_s,
                    "train-seconds": stats.seconds,
                    "epsilon": epsilon,
                    "noise-multiplier": dp.noise_multiplier,
                    "sample-rate": dp.sample_rate,
                    "steps": dp.steps,
                    "local-steps": stats.steps,
                    "delta": dp.delta,
                }
            )
        else:
            train_cfg = TrainConfig(
                epochs=cfg.local.epochs,
                batch_size=cfg.local.batch_size,
                lr=cfg.local.lr,
                patience=cfg.local.epochs,
                seed=seed,
                threads=cfg.local.threads,
            )
            history = fit_autoencoder(model, self.x_train, self.x_val, train_cfg)
            ledger.record(run_id, None, None, {"dp": False, "last_round": server_round})
            metrics.update(
                {
                    "train-loss": history[-1].train_loss,
                    "samples-per-s": 0.0,
                    "train-seconds": 0.0,
                    "epsilon": 0.0,
                    "noise-multiplier": 0.0,
                    "sample-rate": 0.0,
                    "steps": 0,
                    "local-steps": len(history)
                    * max(1, -(-len(self.x_train) // cfg.local.batch_size)),
                    "delta": 0.0,
                }
            )
        metrics["budget-left-epsilon"] = ledger.budget_epsilon - ledger.spent()[0]
        self._write_metrics(server_round, metrics, ledger.budget_epsilon)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        malicious = self.index in cfg.attack.malicious_sites
        if malicious:
            poisoned = poison(
                {k: v.numpy() for k, v in global_state.items()},
                {k: v.numpy() for k, v in state.items()},
                cfg.attack.kind,
                cfg.attack.scale,
                seed,
            )
            state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in poisoned.items()}
        metrics.update(
            {
                "num-examples": len(self.x_train),
                "site-id": self.index,
                "server-round": server_round,
                "malicious": int(malicious),
            }
        )
        return SiteUpdate(state, metrics), dp

    def _write_metrics(
        self, server_round: int, metrics: dict[str, float | int], budget: float
    ) -> None:
        """The site's own metrics textfile next to its ledger (``ClientMetrics``)."""
        client = ClientMetrics()
        client.record_round(
            self.name,
            server_round,
            int(metrics["local-steps"]),
            int(metrics["steps"]),
            float(metrics["epsilon"]),
            budget,
            float(metrics["budget-left-epsilon"]),
        )
        client.write_textfile(self.ledger_path.with_suffix(".prom"))

    def evaluate(self, global_state: StateDict) -> dict[str, float | int]:
        """Validation loss of the global model on this site's validation rows."""
        loss = evaluate_loss(self._model(global_state), self.x_val)
        return {"num-examples": len(self.x_val), "val-loss": loss, "site-id": self.index}

    def _dp_details(self, dp: SitePrivacyState) -> dict[str, Any]:
        return {
            "accountant": ACCOUNTANT,
            "noise_multiplier": dp.noise_multiplier,
            "sample_rate": dp.sample_rate,
            "steps": dp.steps,
            "rounds": list(dp.rounds),
            "max_grad_norm": self.config.privacy.max_grad_norm,
            "target_epsilon": self.config.privacy.target_epsilon,
        }


def privacy_report(index: int, dp: SitePrivacyState | None) -> dict[str, float | int]:
    """A site's final word on what this run spent (its answer to the server's query)."""
    if dp is None:
        return {
            "site-id": index,
            "epsilon": 0.0,
            "noise-multiplier": 0.0,
            "sample-rate": 0.0,
            "steps": 0,
            "rounds-trained": 0,
            "delta": 0.0,
        }
    return {
        "site-id": index,
        "epsilon": dp.epsilon(),
        "noise-multiplier": dp.noise_multiplier,
        "sample-rate": dp.sample_rate,
        "steps": dp.steps,
        "rounds-trained": len(dp.rounds),
        "delta": dp.delta,
    }
