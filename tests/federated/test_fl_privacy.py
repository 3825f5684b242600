"""DP accounting and local DP-SGD: sigma once per run, history across rounds, Opacus' numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from federated.config import LocalTrainConfig, PrivacyConfig
from federated.dp_training import train_dp_round
from federated.privacy import SitePrivacyState, plan_noise, rdp_epsilon, steps_per_epoch
from modelling.config import ModelConfig
from modelling.models import build_autoencoder


def opacus_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_plan_reaches_target_after_all_planned_rounds(target: float) -> None:
    plan = plan_noise(6001, 256, rounds=5, local_epochs=2, target_epsilon=target, delta=1e-5)
    assert plan.steps_per_round == 2 * steps_per_epoch(6001, 256) == 48
    assert plan.planned_steps == 5 * 48
    spent = opacus_epsilon(plan.noise_multiplier, plan.sample_rate, plan.planned_steps, 1e-5)
    assert target * 0.97 <= spent <= target  # Opacus' search tolerance is 0.01


def test_state_accumulates_rounds_and_survives_a_record_round_trip() -> None:
    state = SitePrivacyState(1.1, 1 / 24, 1e-5)
    for r in (1, 2, 3):
        state.add_steps(24)
        state.rounds.append(r)
        state = SitePrivacyState.from_record(state.to_record())  # what context.state does
    assert state.history == [(1.1, 1 / 24, 72)]
    assert state.rounds == [1, 2, 3]
    assert abs(state.epsilon() - opacus_epsilon(1.1, 1 / 24, 72, 1e-5)) < 1e-12
    assert state.projected_epsilon(24) == pytest.approx(opacus_epsilon(1.1, 1 / 24, 96, 1e-5))
    assert rdp_epsilon([], 1e-5) == 0.0


def test_per_round_retargeting_would_overspend() -> None:
    """Why sigma is computed once: a sigma planned for one round, reused for three, overspends."""
    one_round = plan_noise(6001, 256, rounds=1, local_epochs=1, target_epsilon=3.0, delta=1e-5)
    whole_run = plan_noise(6001, 256, rounds=3, local_epochs=1, target_epsilon=3.0, delta=1e-5)
    steps = 3 * one_round.steps_per_round
    assert opacus_epsilon(one_round.noise_multiplier, one_round.sample_rate, steps, 1e-5) > 3.5
    assert opacus_epsilon(whole_run.noise_multiplier, whole_run.sample_rate, steps, 1e-5) <= 3.0


@pytest.fixture(scope="module")
def tiny_data() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, size=(640, 256)).astype(np.float32)
    x[:, 128:] = (rng.random((640, 128)) < 0.05).astype(np.float32)
    return x


def _round(data: np.ndarray, mode: str, state: SitePrivacyState) -> dict[str, torch.Tensor]:
    model = build_autoencoder(ModelConfig(hidden=[32, 8]), 256, seed=0)
    local = LocalTrainConfig(epochs=1, batch_size=64, lr=0.01, threads=1)
    privacy = PrivacyConfig(max_grad_norm=0.05, grad_sample_mode=mode)
    stats = train_dp_round(model, data, local, privacy, state, seed=3)
    assert stats.steps == 10 and stats.samples > 0
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_dp_round_extends_the_accountant_and_matches_opacus(tiny_data: np.ndarray) -> None:
    plan = plan_noise(len(tiny_data), 64, rounds=2, local_epochs=1, target_epsilon=3.0, delta=1e-5)
    state = SitePrivacyState(plan.noise_multiplier, plan.sample_rate, 1e-5)
    _round(tiny_data, "ghost", state)
    _round(tiny_data, "ghost", state)
    assert state.history == [(plan.noise_multiplier, 0.1, 20)]
    expected = opacus_epsilon(plan.noise_multiplier, 0.1, 20, 1e-5)
    assert abs(state.epsilon() - expected) < 1e-6
    assert state.epsilon() <= 3.0


def test_ghost_clipping_equals_per_sample_hooks(tiny_data: np.ndarray) -> None:
    """Ghost clipping is a faster way to the same clipped, noised gradient (same seed)."""
    a = _round(tiny_data, "ghost", SitePrivacyState(1.0, 0.1, 1e-5))
    b = _round(tiny_data, "hooks", SitePrivacyState(1.0, 0.1, 1e-5))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
