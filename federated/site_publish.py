"""A site gates and publishes the run's final global model into its *own* repository.

The server sends every site the final weights once the rounds are over (``query.publish``).
Each site then does what a model engineer does with ``secureai model publish``, with its own
data, which never leaves it: it calibrates and gates the candidate on the held-out rows of its
training window (rows no round trained on; :mod:`federated.gate` splits them again into
calibration and gate rows, and makes the canaries from the gate rows), and publishes into the
repository its pipeline serves from. A site whose gate refuses keeps serving what it served; the
reply says which, with the gate's numbers, so the coordinator can count published and refused.

Its rows carry attacks (nobody labelled them): the share of held-out rows the trim rule flags
beyond the served version's own false-positive rate is the estimated ``contamination``, kept
out of the candidate's false-positive budget when its threshold is calibrated.

Labels a stream may carry (a lab's synthetic events do) are dropped before gating unless
``publish.gate: holdout`` asks for them: a real site has none, and the loop must be judged the
way it runs there.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from federated.config import FLConfig
from federated.gate import GateRefused
from federated.publish import PublishRefused, TritonControl, publish
from federated.site_round import Site
from modelling.checkpoint import Checkpoint
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import (
    AUTOENCODER,
    ModelRepository,
    ModelRepositoryError,
    served_version,
)


def publish_at_site(
    site: Site,
    config: FLConfig,
    state_dict: dict[str, torch.Tensor],
    repository: Path,
    provenance: dict[str, Any],
    triton_url: str | None = None,
) -> tuple[dict[str, float | int], str]:
    """Gate + publish; returns (metrics for the reply, a one-line outcome)."""
    spec = load_spec(config.data.spec)
    if site.holdout_frame is None:
        raise ValueError("query.publish needs a site that trains on its window")
    checkpoint = Checkpoint(
        config.model, state_dict, site.normalizer, spec.name, spec.spec_hash, provenance
    )
    holdout = site.holdout_frame
    label = spec.label_column
    if config.publish.gate != "holdout" and label is not None and label in holdout:
        holdout = holdout.drop(columns=[label])  # a site gates without labels (see module doc)
    before = served_version(repository)
    served_target = float(
        (ModelRepository(repository).manifest(AUTOENCODER, before).get("calibration") or {}).get(
            "target_fpr", config.publish.target_fpr
        )
    )
    share = float((site.window_info or {}).get("holdout_suspect_share", 0.0))
    contamination = max(0.0, share - served_target)
    triton = TritonControl(triton_url) if triton_url else None
    metrics: dict[str, float | int] = {"site-id": site.index, "served-before": before}
    try:
        result = publish(
            checkpoint,
            repository,
            spec,
            holdout,
            None,
            config.publish,
            provenance,
            triton,
            contamination,
        )
    except (PublishRefused, GateRefused, ModelRepositoryError) as exc:
        metrics.update({"published": 0, "refused": 1, "served-after": served_version(repository)})
        return metrics, f"refused: {exc}"
    gate = result.gate
    metrics.update({"published": 1, "refused": 0, "served-after": result.version})
    for key in ("candidate", "served"):
        with contextlib.suppress(KeyError, TypeError):
            metrics[f"gate-{key}"] = float(gate[key])
    return metrics, f"published version {result.version} ({gate.get('gate')})"
