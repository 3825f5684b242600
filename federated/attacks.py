"""Malicious sites for robustness experiments: honest training, then a poisoned update.

An update is ``local - global``. The three classic model-poisoning moves, per tensor:

* ``scaled``: ``global + scale * update`` (boosting, e.g. to dominate a mean);
* ``sign_flip``: ``global - scale * update`` (pushes the model away from the optimum);
* ``random``: ``global + scale * rms(update) * N(0, 1)`` (noise of a plausible size).

A mean (FedAvg) follows any single large update; coordinate-wise median/trimmed mean and Krum
bound a minority's influence. ``docs/federated.md`` shows what each strategy does with one
malicious site of five.

>>> import numpy as np
>>> g = {"w": np.zeros(3, np.float32)}
>>> l = {"w": np.array([1.0, 2.0, 3.0], np.float32)}
>>> poison(g, l, "sign_flip", 10.0, seed=0)["w"].tolist()
[-10.0, -20.0, -30.0]
"""

from __future__ import annotations

import numpy as np

from federated.config import AttackKind


def poison(
    global_arrays: dict[str, np.ndarray],
    local_arrays: dict[str, np.ndarray],
    kind: AttackKind,
    scale: float,
    seed: int,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, local in local_arrays.items():
        base = global_arrays[key]
        if not np.issubdtype(local.dtype, np.floating):
            out[key] = local
            continue
        update = local - base
        if kind == "scaled":
            new = base + scale * update
        elif kind == "sign_flip":
            new = base - scale * update
        else:
            rms = float(np.sqrt(np.mean(update.astype(np.float64) ** 2))) or 1e-3
            new = base + scale * rms * rng.standard_normal(update.shape)
        out[key] = new.astype(local.dtype)
    return out
