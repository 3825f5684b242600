"""Public-data pretraining of the initial global model (``public.pretrain``).

The public sample is non-private by construction (it fits the normalizer and calibrates the
model, both published with it), so training on it costs no privacy budget. Starting the DP
rounds from weights that already reconstruct normal events leaves DP-SGD only the fine-tuning:
the same epsilon buys a better model (docs/results.md, "Closing the AUPRC gap under DP").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from federated.config import PublicPretrainConfig
from modelling.config import ModelConfig, TrainConfig
from modelling.models import build_autoencoder
from modelling.training import evaluate_loss, fit_autoencoder

INITIAL_WEIGHTS_FILE = "initial_weights.pt"
"""Run-directory file of the pretrained initial weights (the audit's reference models start
there, :func:`federated.audit.audit_run`)."""


def pretrain_on_public(
    model_config: ModelConfig,
    normalized: np.ndarray,
    config: PublicPretrainConfig,
    seed: int,
    threads: int = 1,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The seeded initial model trained on the normalized public rows, and what it did.

    The rows are split once by a ``seed``-ed permutation into training and early-stopping
    rows; the best weights on the held-out rows are returned (float32, what every site gets).
    """
    n = len(normalized)
    n_val = max(1, round(n * config.val_fraction))
    if n - n_val < 1:
        raise ValueError(f"public.pretrain: {n} public rows are too few to hold out a validation")
    order = np.random.default_rng(seed).permutation(n)
    val, train = normalized[order[:n_val]], normalized[order[n_val:]]
    model = build_autoencoder(model_config, normalized.shape[1], seed)
    initial_val_loss = evaluate_loss(model, val)
    history = fit_autoencoder(
        model,
        train,
        val,
        TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            patience=config.patience,
            seed=seed,
            threads=threads,
        ),
    )
    best = min(history, key=lambda r: r.val_loss)
    info = {
        "rows": {"train": len(train), "val": len(val)},
        "epochs_run": len(history),
        "best_epoch": best.epoch,
        "best_val_loss": best.val_loss,
        "initial_val_loss": initial_val_loss,
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, info
