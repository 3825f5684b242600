"""Local (non-private) training of the autoencoder: centralized runs and non-DP FL clients.

Deterministic on CPU for a fixed seed: one seeded generator drives the shuffles, and torch's
deterministic algorithms are on. DP-SGD (Opacus) wraps the same model and loss elsewhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modelling.config import TrainConfig
from modelling.numerics import ensure_pinned


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed every RNG training touches and pin CPU kernels to deterministic ones (and to the
    machine-independent ones of modelling/numerics.py)."""
    ensure_pinned()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    if threads:
        torch.set_num_threads(threads)


def reconstruction_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), x)


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: np.ndarray, batch_size: int = 8192) -> float:
    model.eval()
    dtype = next(model.parameters()).dtype
    t = torch.from_numpy(x).to(dtype)
    total = 0.0
    for start in range(0, len(t), batch_size):
        chunk = t[start : start + batch_size]
        total += float(nn.functional.mse_loss(model(chunk), chunk, reduction="sum"))
    return total / max(1, t.numel())


def fit_autoencoder(
    model: nn.Module,
    train: np.ndarray,
    val: np.ndarray,
    config: TrainConfig,
    progress: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Adam on MSE with early stopping on the validation loss; restores the best weights.

    Trains in ``config.precision`` and hands the model back in float32 (what is exported).
    """
    seed_everything(config.seed, config.threads)
    dtype = torch.float64 if config.precision == "float64" else torch.float32
    model.to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    data = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)).to(dtype)
    gen = torch.Generator().manual_seed(config.seed)
    history: list[EpochRecord] = []
    best = float("inf")
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    stale = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(data), generator=gen)
        running, seen = 0.0, 0
        for start in range(0, len(data), config.batch_size):
            batch = data[order[start : start + config.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = reconstruction_loss(model, batch)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(batch)
            seen += len(batch)
        val_loss = evaluate_loss(model, val)
        history.append(EpochRecord(epoch, running / max(seen, 1), val_loss))
        if progress is not None:
            progress(history[-1])
        if val_loss < best - 1e-6:
            best, stale = val_loss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    model.float()
    model.eval()
    return history
