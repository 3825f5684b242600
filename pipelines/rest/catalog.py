"""What ``GET /v1/models`` lists: the autoencoder versions of a repository and their manifests.

The same rows as :func:`federated.publish.list_versions` (a test checks they agree), read with
:class:`~morpheus_ext.model_repository.ModelRepository` only: ``federated.publish`` imports torch,
and the API image has none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from morpheus_ext.model_repository import AUTOENCODER, ModelRepository, ModelRepositoryError

_PINNED = re.compile(r"version_policy\s*:\s*{\s*specific\s*:\s*{\s*versions\s*:\s*\[\s*(\d+)")


def served_version(repository: Path) -> int:
    """The version Triton serves: the one a rollback pinned (``specific``), else the latest."""
    config = repository / AUTOENCODER / "config.pbtxt"
    if not config.is_file():
        raise ModelRepositoryError(f"no {AUTOENCODER}/config.pbtxt in {repository}")
    m = _PINNED.search(config.read_text())
    return int(m.group(1)) if m else ModelRepository(repository).latest(AUTOENCODER)


def _epsilon(manifest: dict[str, Any]) -> float | None:
    dp = manifest.get("dp") or {}
    eps = dp.get("epsilon_spent") if isinstance(dp, dict) else None
    if isinstance(eps, dict):
        values = [v for v in eps.values() if isinstance(v, int | float)]
        return float(max(values)) if values else None
    return float(eps) if isinstance(eps, int | float) else None


def list_versions(repository: Path) -> list[dict[str, Any]]:
    """One row per ``dfp_autoencoder`` version, oldest first, with its full manifest."""
    repo = ModelRepository(repository)
    served = served_version(repository)
    rows = []
    for v in repo.versions(AUTOENCODER):
        m = repo.manifest(AUTOENCODER, v)
        calibration = m.get("calibration")
        rows.append(
            {
                "version": v,
                "served": v == served,
                "created_at": m.get("created_at"),
                "parent": m.get("parent_version"),
                "run_id": m.get("run_id"),
                "rounds": m.get("rounds"),
                "epsilon": _epsilon(m),
                "threshold": calibration.get("threshold")
                if isinstance(calibration, dict)
                else None,
                "gate": m.get("gate"),
                "manifest": m,
            }
        )
    return rows
