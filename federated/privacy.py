"""Privacy accounting of one site over one federated run (Opacus' RDP accountant).

Two rules, both measured (shared/notes/federated.md):

* The noise multiplier is computed **once**, for the whole planned run (rounds x local epochs
  steps at the site's sampling rate), and then fixed. Re-targeting epsilon every round (calling
  ``make_private_with_epsilon`` per round) ignores earlier rounds and overspends: a target of 3
  ends near 4 after three rounds.
* The accountant's history (``(sigma, q, steps)`` entries) must survive between rounds. Every
  round runs in a fresh ClientApp invocation, so the history travels in ``context.state``
  (:meth:`SitePrivacyState.to_record`), and the ledger keeps a persistent copy.

Epsilon is always recomputed from the full history with Opacus' own ``RDPAccountant``, so the
reported number equals what Opacus reports for the same (sigma, q, steps).

Opacus is imported where it is used, not with this module: every message to a site runs in
a fresh ClientApp process, and importing Opacus costs ~2 s of CPU beyond torch, which an
``evaluate`` message (no accountant, no DP-SGD) never needs.

>>> plan = plan_noise(n_rows=6001, batch_size=256, rounds=3, local_epochs=1,
...                   target_epsilon=3.0, delta=1e-5)
>>> round(plan.noise_multiplier, 3), plan.steps_per_round, round(plan.sample_rate, 5)
(1.008, 24, 0.04167)
>>> state = SitePrivacyState(plan.noise_multiplier, plan.sample_rate, plan.delta)
>>> state.add_steps(3 * plan.steps_per_round)
>>> round(state.epsilon(), 2) <= 3.0
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord

ACCOUNTANT = "rdp"
STATE_KEY = "dp-state"


@dataclass(frozen=True)
class NoisePlan:
    """Sigma for a site's whole run, and the quantities it was derived from."""

    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    planned_steps: int
    target_epsilon: float
    delta: float


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Opacus' Poisson loader makes ``len(loader)`` steps per epoch at rate ``1/len(loader)``."""
    return max(1, math.ceil(n_rows / batch_size))


def plan_noise(
    n_rows: int,
    batch_size: int,
    rounds: int,
    local_epochs: int,
    target_epsilon: float,
    delta: float,
) -> NoisePlan:
    """The noise multiplier reaching ``target_epsilon`` after every planned step of the run.

    A site sampled in fewer rounds than planned (partial participation, dropped rounds) ends
    below the target: the plan is an upper bound, never re-targeted.
    """
    from opacus.accountants.utils import get_noise_multiplier  # (lazy: see the module docstring)

    per_epoch = steps_per_epoch(n_rows, batch_size)
    sample_rate = 1.0 / per_epoch
    per_round = per_epoch * local_epochs
    planned = per_round * rounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opacus warns about the optimal-alpha range
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=planned,
            accountant=ACCOUNTANT,
        )
    return NoisePlan(float(sigma), sample_rate, per_round, planned, target_epsilon, delta)


def rdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """Epsilon of an accountant history, computed by Opacus' RDP accountant itself."""
    if not history:
        return 0.0
    from opacus.accountants import RDPAccountant  # (lazy: see the module docstring)

    accountant = RDPAccountant()
    accountant.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta))


@dataclass
class SitePrivacyState:
    """A site's accountant for one run: fixed sigma and q, the steps taken, the rounds."""

    noise_multiplier: float
    sample_rate: float
    delta: float
    history: list[tuple[float, float, int]] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(s for _, _, s in self.history)

    def add_steps(self, steps: int) -> None:
        """What Opacus' accountant does on every optimizer step, for ``steps`` at once."""
        if self.history and self.history[-1][:2] == (self.noise_multiplier, self.sample_rate):
            sigma, q, done = self.history[-1]
            self.history[-1] = (sigma, q, done + steps)
        else:
            self.history.append((self.noise_multiplier, self.sample_rate, steps))

    def epsilon(self) -> float:
        return rdp_epsilon(self.history, self.delta)

    def projected_epsilon(self, extra_steps: int) -> float:
        """Epsilon after ``extra_steps`` more steps: checked *before* training a round."""
        probe = SitePrivacyState(self.noise_multiplier, self.sample_rate, self.delta)
        probe.history = list(self.history)
        probe.add_steps(extra_steps)
        return probe.epsilon()

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                "noise-multiplier": self.noise_multiplier,
                "sample-rate": self.sample_rate,
                "delta": self.delta,
                "history-sigma": [float(h[0]) for h in self.history],
                "history-q": [float(h[1]) for h in self.history],
                "history-steps": [int(h[2]) for h in self.history],
                "rounds": [int(r) for r in self.rounds],
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord) -> SitePrivacyState:
        doc: dict[str, Any] = dict(record)
        history = zip(doc["history-sigma"], doc["history-q"], doc["history-steps"], strict=True)
        return cls(
            noise_multiplier=float(doc["noise-multiplier"]),
            sample_rate=float(doc["sample-rate"]),
            delta=float(doc["delta"]),
            history=[(float(a), float(b), int(c)) for a, b, c in history],
            rounds=[int(r) for r in doc["rounds"]],
        )
