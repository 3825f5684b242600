"""One round of local DP-SGD at a site: Opacus per-sample clipping + Gaussian noise.

The model, the loss and the optimizer are the centralized ones (``modelling.models``, MSE,
Adam); Opacus wraps them for the round and is thrown away afterwards, so what leaves the site
is the plain module's weights (``dp_model._module``, never the GradSampleModule).

Privacy bookkeeping: the PrivacyEngine starts each round from the site's accountant history
(:class:`federated.privacy.SitePrivacyState`) with the run's fixed noise multiplier, and hands
the history back extended by the steps it took. Batches are Poisson-sampled at rate
``1/ceil(n/batch)``, which is the sampling rate the RDP analysis assumes.

``ghost`` clipping (Opacus' fast gradient clipping) needs a loss with one value per row; the
autoencoder's loss is the mean squared error of a row, averaged over its 256 slots, so the
batch loss is the same number as ``mse_loss`` and only the clipping bookkeeping differs.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from federated.config import LocalTrainConfig, PrivacyConfig
from federated.privacy import SitePrivacyState
from modelling.training import seed_everything


class RowMSE(nn.Module):
    """Mean squared error per row (``reduction='none'``), or its mean/sum over the batch."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_row = ((output - target) ** 2).mean(dim=1)
        if self.reduction == "none":
            return per_row
        if self.reduction == "sum":
            return per_row.sum()
        return per_row.mean()


@dataclass(frozen=True)
class RoundStats:
    train_loss: float
    steps: int
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def _quiet_opacus() -> None:
    """Known, understood notices: the non-secure RNG is documented (docs/federated.md), and the
    full-backward-hook notice fires because the input of the first layer needs no gradient."""
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message=".*Optimal order is the (largest|smallest) alpha")


def train_dp_round(
    model: nn.Module,
    train: np.ndarray,
    local: LocalTrainConfig,
    privacy: PrivacyConfig,
    state: SitePrivacyState,
    seed: int,
) -> RoundStats:
    """Train ``model`` in place for ``local.epochs`` with DP-SGD; extends ``state.history``."""
    seed_everything(seed, local.threads)
    data = TensorDataset(torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)))
    loader = DataLoader(data, batch_size=local.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=local.lr)
    criterion: nn.Module = RowMSE()
    model.train()
    with warnings.catch_warnings():
        _quiet_opacus()
        engine = PrivacyEngine(accountant="rdp")
        engine.accountant.history = list(state.history)
        if privacy.grad_sample_mode == "ghost":
            dp_model, dp_optimizer, dp_criterion, dp_loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                criterion=criterion,
                data_loader=loader,
                noise_multiplier=state.noise_multiplier,
                max_grad_norm=privacy.max_grad_norm,
                poisson_sampling=True,
                grad_sample_mode="ghost",
            )
        else:
            dp_model, dp_optimizer, dp_loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=state.noise_multiplier,
                max_grad_norm=privacy.max_grad_norm,
                poisson_sampling=True,
                grad_sample_mode="hooks",
            )
            dp_criterion = criterion
    rate = 1.0 / len(dp_loader)
    if abs(rate - state.sample_rate) > 1e-12:
        raise RuntimeError(
            f"sampling rate {rate} differs from the planned {state.sample_rate}: the site's data "
            "changed size during the run, so the noise plan no longer holds"
        )
    total, seen, steps = 0.0, 0, 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        _quiet_opacus()
        for _ in range(local.epochs):
            for (batch,) in dp_loader:
                dp_optimizer.zero_grad(set_to_none=True)
                loss = dp_criterion(dp_model(batch), batch)
                loss.backward()
                dp_optimizer.step()
                steps += 1
                if len(batch):
                    total += float(loss.detach()) * len(batch)
                    seen += len(batch)
    seconds = time.perf_counter() - start
    state.history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
    if hasattr(dp_model, "_close"):
        dp_model._close()  # removes Opacus' hooks from the plain module
    model.eval()
    return RoundStats(total / max(seen, 1), steps, seen, seconds)
