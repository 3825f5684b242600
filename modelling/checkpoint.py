"""A trained model as files: what a run leaves for publishing (``<run_dir>/model/``).

Centralized runs and federated runs both write this folder, and ``federated.publish`` reads it:
the autoencoder weights (torch ``state_dict``), its architecture, the normalizer it was trained
with, the feature spec and provenance (run id, rounds, DP accounting).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from modelling.config import ModelConfig
from modelling.models import build_autoencoder
from morpheus_ext.normalizer import Normalizer

CHECKPOINT_DIR = "model"


@dataclass
class Checkpoint:
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    normalizer: Normalizer
    spec: str
    spec_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def build(self, width: int = 256) -> nn.Module:
        model = build_autoencoder(self.model_config, width)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    model_config: ModelConfig,
    normalizer: Normalizer,
    spec: str,
    spec_hash: str,
    provenance: dict[str, Any] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "autoencoder.pt")
    np.savez(
        directory / "normalizer.npz",
        center=normalizer.center,
        scale=normalizer.scale,
        clip=np.array(normalizer.clip),
    )
    (directory / "checkpoint.json").write_text(
        json.dumps(
            {
                "model_config": model_config.model_dump(),
                "spec": spec,
                "spec_hash": spec_hash,
                "provenance": provenance or {},
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return directory


def load_checkpoint(directory: Path) -> Checkpoint:
    meta_path = directory / "checkpoint.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no model checkpoint in {directory} (expected checkpoint.json)")
    meta = json.loads(meta_path.read_text())
    norm = np.load(directory / "normalizer.npz")
    state = torch.load(directory / "autoencoder.pt", map_location="cpu", weights_only=True)
    return Checkpoint(
        model_config=ModelConfig.model_validate(meta["model_config"]),
        state_dict=state,
        normalizer=Normalizer(norm["center"], norm["scale"], float(norm["clip"])),
        spec=meta["spec"],
        spec_hash=meta["spec_hash"],
        provenance=meta.get("provenance", {}),
    )


def normalizer_from_encoder(path: Path) -> Normalizer:
    """The normalizer a served ``dfp_encoder`` ONNX file applies (its centre/scale/clip)."""
    model = onnx.load(str(path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return Normalizer(
        values["center"].astype(np.float32), values["scale"].astype(np.float32), float(values["hi"])
    )
