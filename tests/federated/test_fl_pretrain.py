"""``public.pretrain``: the initial global model trained on the public sample (no DP cost)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from federated.config import FLConfig, PublicPretrainConfig
from federated.pretrain import pretrain_on_public
from federated.server import initial_weights
from modelling.config import ModelConfig
from modelling.models import build_autoencoder
from modelling.training import evaluate_loss

SRC = {"synthetic": {"n_events": 1000, "n_sites": 3}}
WIDTH = 24
MODEL = {"kind": "mlp", "hidden": [16, 4]}


def _config(**public: object) -> FLConfig:
    return FLConfig.model_validate(
        {
            "data": {"train": SRC},
            "public": {"source": SRC, **public},
            "sites": {"n_sites": 3},
            "model": MODEL,
        }
    )


def _rows(n: int = 600, seed: int = 0) -> np.ndarray:
    """Rank-3 rows: an autoencoder with a 4-wide code can learn them, a random one cannot."""
    basis = np.random.default_rng(100).normal(size=(3, WIDTH))
    z = np.random.default_rng(seed).normal(size=(n, 3))
    return (z @ basis * 0.5).astype(np.float32)


def test_pretrain_config_is_validated() -> None:
    assert _config().public.pretrain is None  # default: seeded random weights, as before
    cfg = _config(pretrain={"epochs": 3, "lr": 0.005})
    assert cfg.public.pretrain == PublicPretrainConfig(epochs=3, lr=0.005)
    for bad in ({"epochs": 0}, {"val_fraction": 1.0}, {"lr": 0}, {"epoch": 3}):
        with pytest.raises(ValidationError):
            _config(pretrain=bad)


def test_pretraining_learns_the_public_rows_and_is_seeded() -> None:
    rows = _rows()
    pre = PublicPretrainConfig(epochs=30, lr=0.01, batch_size=64, patience=30)
    model_config = ModelConfig.model_validate(MODEL)
    state, info = pretrain_on_public(model_config, rows, pre, seed=3)
    assert info["rows"] == {"train": 510, "val": 90}
    assert info["best_val_loss"] < 0.5 * info["initial_val_loss"]
    model = build_autoencoder(model_config, WIDTH)
    model.load_state_dict(state)
    fresh = build_autoencoder(model_config, WIDTH, seed=3)
    held_out = _rows(200, seed=1)  # unseen rows of the same low-rank family
    assert evaluate_loss(model, held_out) < 0.5 * evaluate_loss(fresh, held_out)
    again, _ = pretrain_on_public(model_config, rows, pre, seed=3)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert all(v.dtype == torch.float32 for v in state.values())


def test_initial_weights_pretrains_only_without_warm_start() -> None:
    rows = _rows()
    plain, none = initial_weights(_config(), WIDTH, rows, None)
    seeded = build_autoencoder(ModelConfig.model_validate(MODEL), WIDTH, seed=0).state_dict()
    assert none is None and all(torch.equal(plain[k], seeded[k]) for k in plain)
    cfg = _config(pretrain={"epochs": 5, "lr": 0.01, "batch_size": 64})
    pretrained, info = initial_weights(cfg, WIDTH, rows, None)
    assert info is not None and info["epochs_run"] >= 1
    assert not all(torch.equal(pretrained[k], plain[k]) for k in plain)
    with pytest.raises(ValueError, match="width"):
        initial_weights(cfg, WIDTH + 1, rows, None)


def test_audit_reference_models_start_from_the_initial_weights() -> None:
    """LiRA's reference models must start where the sites started (the pretrained weights)."""
    from federated.audit import Procedure, train_like_site

    rows = _rows(64)
    model_config = ModelConfig.model_validate(MODEL)
    initial = build_autoencoder(model_config, WIDTH, seed=5).state_dict()
    # lr so small that training leaves the starting weights (float32) where they were
    proc = Procedure(model=model_config, epochs=1, batch_size=32, lr=1e-12, dp=False)
    started = train_like_site(rows, proc, seed=0, initial=initial).state_dict()
    random = train_like_site(rows, proc, seed=0).state_dict()
    assert all(torch.allclose(started[k], initial[k], atol=1e-6) for k in initial)
    assert not all(torch.allclose(random[k], initial[k], atol=1e-6) for k in initial)
