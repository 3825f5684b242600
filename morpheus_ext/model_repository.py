"""The Triton model repository as data: names, tensor names, versions, manifests, spec checks.

The one place that *reads* a repository: the in-process engine, the Triton stage, the CLI
(``secureai model list``), the REST catalogue (``GET /v1/models``) and the publisher all ask
here which versions exist and which one is served, so they cannot disagree. Writing (configs,
versions, the version policy, the lock) is :mod:`morpheus_ext.repository_writer`; the
promotion gate is ``federated/publish.py``. Never imports torch.

>>> repo = ModelRepository(DEFAULT_REPOSITORY)
>>> repo.versions(AUTOENCODER)[:1], served_version(DEFAULT_REPOSITORY) >= 1
([1], True)
>>> pinned_version("version_policy:{ specific :{ versions: [ 3 ] } }")
3
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morpheus_ext.errors import SecureAIError

ENSEMBLE = "dfp_ensemble"
ENCODER = "dfp_encoder"
AUTOENCODER = "dfp_autoencoder"
POSTPROC = "anomaly_postproc"
INPUT = "EVENT_TENSOR"
NORMALIZED = "NORMALIZED"
AE_OUTPUTS = ("ANOMALY_SCORE", "FIELD_Z", "THRESHOLD", "MODEL_VERSION")
POSTPROC_OUTPUTS = ("IS_ANOMALY", "MEAN_ABS_Z", "MAX_ABS_Z", "TOP_FIELDS", "TOP_Z")
ENSEMBLE_OUTPUTS = (*AE_OUTPUTS, *POSTPROC_OUTPUTS)
MANIFEST = "manifest.json"
DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "triton_model_repository"


class ModelRepositoryError(SecureAIError, RuntimeError):
    """A repository that cannot serve (missing version, spec mismatch); message is user-facing."""


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    path: Path
    manifest: dict[str, Any]


class ModelRepository:
    """A directory laid out as Triton expects: ``<model>/config.pbtxt`` + ``<model>/<n>/``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def versions(self, model: str) -> list[int]:
        d = self.root / model
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())

    def latest(self, model: str) -> int:
        vs = self.versions(model)
        if not vs:
            raise ModelRepositoryError(f"no versions of {model} in {self.root}")
        return vs[-1]

    def version_dir(self, model: str, version: int | None = None) -> Path:
        v = self.latest(model) if version is None else version
        path = self.root / model / str(v)
        if not path.is_dir():
            raise ModelRepositoryError(f"{model} has no version {v} in {self.root}")
        return path

    def manifest(self, model: str, version: int | None = None) -> dict[str, Any]:
        path = self.version_dir(model, version) / MANIFEST
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def config_parameters(self, model: str) -> dict[str, str]:
        """``parameters { key: .. value { string_value: .. } }`` entries of a config.pbtxt."""
        text = (self.root / model / "config.pbtxt").read_text()
        pattern = r'key:\s*"([^"]+)"\s*value\s*{\s*string_value:\s*"([^"]*)"'
        return dict(re.findall(pattern, text))


_PINNED = re.compile(r"version_policy\s*:\s*{\s*specific\s*:\s*{\s*versions\s*:\s*\[\s*(\d+)")


def pinned_version(config_text: str) -> int | None:
    """The version ``version_policy: { specific: ... }`` pins (a rollback); any whitespace."""
    m = _PINNED.search(config_text)
    return int(m.group(1)) if m else None


def served_version(repository: Path | str, model: str = AUTOENCODER) -> int:
    """The version Triton serves: the one a rollback pinned (``specific``), else the latest."""
    config = Path(repository) / model / "config.pbtxt"
    if not config.is_file():
        raise ModelRepositoryError(f"no {model}/config.pbtxt in {repository}")
    pinned = pinned_version(config.read_text())
    return pinned if pinned is not None else ModelRepository(repository).latest(model)


class ServedVersionWatch:
    """Notices when the served ``dfp_autoencoder`` version changes (publish, rollback, pin).

    Cheap enough for every batch: at most once per ``interval_s`` it stats ``config.pbtxt`` and
    lists the version folders, and re-derives the served version only when either changed.
    A publisher renames a complete version folder in one step, so a version seen here is whole.

    >>> watch = ServedVersionWatch(DEFAULT_REPOSITORY, interval_s=0)
    >>> watch.served >= 1, watch.poll()
    (True, None)
    """

    def __init__(self, repository: Path | str, model: str = AUTOENCODER, interval_s: float = 1.0):
        self.repository = Path(repository)
        self.model = model
        self.interval_s = interval_s
        self._next = 0.0
        self._stamp = self._fingerprint()
        self.served = served_version(self.repository, model)

    def _fingerprint(self) -> tuple[int, tuple[str, ...]]:
        folder = self.repository / self.model
        config = folder / "config.pbtxt"
        mtime = config.stat().st_mtime_ns if config.is_file() else 0
        names = tuple(sorted(p.name for p in folder.iterdir())) if folder.is_dir() else ()
        return mtime, names

    def poll(self) -> int | None:
        """The newly served version if it changed since the last call, else ``None``."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        try:
            stamp = self._fingerprint()
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            version = served_version(self.repository, self.model)
        except (OSError, ModelRepositoryError):
            return None  # mid-rewrite or gone for a moment: keep serving what we have
        if version == self.served:
            return None
        self.served = version
        return version


def _epsilon(manifest: dict[str, Any]) -> float | None:
    dp = manifest.get("dp") or {}
    eps = dp.get("epsilon_spent") if isinstance(dp, dict) else None
    if isinstance(eps, dict):
        values = [v for v in eps.values() if isinstance(v, int | float)]
        return float(max(values)) if values else None
    return float(eps) if isinstance(eps, int | float) else None


def list_versions(repository: Path | str) -> list[dict[str, Any]]:
    """One row per ``dfp_autoencoder`` version, oldest first, with its full manifest
    (``secureai model list`` and ``GET /v1/models``)."""
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


def check_spec_hash(expected: str, found: str | None, where: str) -> None:
    """Serving refuses a model trained for another feature layout."""
    if found != expected:
        raise ModelRepositoryError(
            f"feature spec mismatch: {where} was trained for spec hash {found!r}, "
            f"the pipeline's spec has {expected!r}; retrain or pick the matching spec"
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
