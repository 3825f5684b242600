"""Simulated stragglers and dropouts, so partial participation and round timeouts get exercised.

A slow site sleeps before training; if it sleeps past the server's round timeout its reply
arrives too late and the round goes on without it (it still spent privacy: the accountant
counts the round, the ledger records it). A dropped site fails the round with an error reply.
Draws are seeded by (run seed, site, round), so a run's faults repeat exactly.
"""

from __future__ import annotations

import time

import numpy as np

from federated.config import StragglerConfig


class SimulatedDropout(RuntimeError):
    """This site "crashed" this round (a configured fault, not a bug)."""


def apply_faults(config: StragglerConfig, site: int, server_round: int, seed: int) -> float:
    """Sleep or raise as configured; returns the seconds slept."""
    if site in config.drop_sites:
        raise SimulatedDropout(f"site {site} is configured to drop out (stragglers.drop_sites)")
    if config.drop_probability > 0:
        draw = np.random.default_rng([seed, site, server_round]).random()
        if draw < config.drop_probability:
            raise SimulatedDropout(
                f"site {site} dropped round {server_round} "
                f"(stragglers.drop_probability={config.drop_probability})"
            )
    delay = float(config.delays_s.get(site, 0.0))
    if delay > 0:
        time.sleep(delay)
    return delay
