"""The Triton model repository as data: names, tensor names, versions, manifests, spec checks.

Read-only helpers shared by the in-process engine, the Triton stage and the CLI. Writing versions
is the trainer's/publisher's job (``federated``); this module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class ModelRepositoryError(RuntimeError):
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
