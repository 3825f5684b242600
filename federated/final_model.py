"""The output of a finished federated run: the global model as a servable model version.

Nothing new here on purpose: the global weights go through the same calibration
(``modelling.calibration``), ONNX export (``modelling.export``) and repository writer
(``morpheus_ext.repository_writer``) as a centralized run, into ``<run_dir>/model_repository``,
so the publish step and Triton treat both alike. The manifest adds what only a federated
version has:
``fl_run_id``, ``rounds``, ``dp`` (noise multiplier, clipping norm, delta, the epsilon each
site spent, accountant ``rdp``) and ``initial_model`` (the served version a warm-started run
began from: repository, version, sha256 of its ONNX files; ``None`` for a random start). The
run also leaves the checkpoint (``<run_dir>/model/``) that ``secureai model publish`` turns into
a site's next served version.

Calibration uses the run's public sample, like the normalizer: the threshold and per-field
statistics ship with the model outside the DP guarantee, so no site's private rows go into them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from federated.config import FLConfig
from federated.site_split import PublicInputs
from modelling.calibration import Calibration, calibrate
from modelling.centralized import MODEL_REPOSITORY, onnx_parity
from modelling.checkpoint import CHECKPOINT_DIR, save_checkpoint
from modelling.export import export_version
from modelling.models import build_autoencoder
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.repository_writer import write_repository


def export_global_model(
    run_dir: Path,
    config: FLConfig,
    spec: FeatureSpec,
    public: PublicInputs,
    state_dict: dict[str, torch.Tensor],
    fl_info: dict[str, Any],
    version: int = 1,
) -> tuple[Path, Calibration, float]:
    """Write the model repository; returns (repository, calibration, ONNX parity)."""
    model = build_autoencoder(config.model, spec.tensor_width)
    model.load_state_dict(state_dict)
    model.eval()
    calib = calibrate(model, public.normalized, spec.layout, config.calibration.target_fpr)
    exported = export_version(model, public.normalizer, spec, calib, version, run_dir / "export")
    enc, ae, scored, meta = (
        exported.encoder,
        exported.autoencoder,
        exported.scored,
        exported.metadata,
    )
    manifest = {
        "run_id": run_dir.name,
        "parent_version": None,
        "feature_spec": meta["feature_spec"],
        "feature_spec_hash": spec.spec_hash,
        "model": config.model.model_dump(),
        "calibration": {
            "target_fpr": calib.target_fpr,
            "threshold": calib.threshold,
            "n_samples": calib.n_samples,
            "source": "public sample of the run",
        },
        **fl_info,
    }
    repository = write_repository(run_dir / MODEL_REPOSITORY, spec, enc, ae, version, manifest)
    # The checkpoint `secureai model publish` reads (modelling.checkpoint), as centralized runs.
    save_checkpoint(
        run_dir / CHECKPOINT_DIR,
        model,
        config.model,
        public.normalizer,
        config.data.spec,
        spec.spec_hash,
        {"run_id": run_dir.name, "kind": "federated", **fl_info},
    )
    parity = onnx_parity(repository, spec, scored, public.normalizer, public.raw[:2048])
    return repository, calib, parity
