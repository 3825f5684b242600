"""ONNX export of the two served graphs: the fitted normalizer and the scored autoencoder.

torch 2.13's default exporter is the dynamo one (needs onnxscript, freezes the batch dim unless
told otherwise); the TorchScript exporter (``dynamo=False``) with ``dynamic_axes`` is smaller,
faster to run here and measured equal to torch within 1e-7 (shared/notes/federated.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from modelling.calibration import Calibration, calibrated_head
from modelling.models import ScoredAutoencoder
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.model_repository import AE_OUTPUTS, INPUT, NORMALIZED
from morpheus_ext.normalizer import Normalizer

OPSET = 17


def _set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)


def export_encoder(normalizer: Normalizer, path: Path, metadata: dict[str, str]) -> Path:
    """``EVENT_TENSOR -> NORMALIZED``: (x - centre) / scale, NaN -> 0, clip. Built op by op."""
    width = normalizer.center.shape[0]
    inits = [
        numpy_helper.from_array(normalizer.center.astype(np.float32), "center"),
        numpy_helper.from_array(normalizer.scale.astype(np.float32), "scale"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(-normalizer.clip, np.float32), "lo"),
        numpy_helper.from_array(np.array(normalizer.clip, np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("Sub", [INPUT, "center"], ["centered"]),
        helper.make_node("Div", ["centered", "scale"], ["scaled"]),
        helper.make_node("IsNaN", ["scaled"], ["missing"]),
        helper.make_node("Where", ["missing", "zero", "scaled"], ["imputed"]),
        helper.make_node("Clip", ["imputed", "lo", "hi"], [NORMALIZED]),
    ]
    graph = helper.make_graph(
        nodes,
        "dfp_encoder",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(NORMALIZED, TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="secureai"
    )
    model.ir_version = 8
    _set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def export_scored_autoencoder(
    module: ScoredAutoencoder, width: int, path: Path, metadata: dict[str, str]
) -> Path:
    """``NORMALIZED -> ANOMALY_SCORE, FIELD_Z, THRESHOLD, MODEL_VERSION`` with a dynamic batch."""
    module = module.eval()
    dummy = torch.zeros(2, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[NORMALIZED],
            output_names=list(AE_OUTPUTS),
            dynamic_axes={NORMALIZED: {0: "batch"}, **{o: {0: "batch"} for o in AE_OUTPUTS}},
        )
    model = onnx.load(str(path))
    _set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def version_metadata(spec: FeatureSpec, version: int) -> dict[str, str]:
    """What a version's ONNX files carry. No run id or time: the same config gives
    byte-identical models (provenance lives in the version manifest and the checkpoint)."""
    return {
        "feature_spec": f"{spec.name}:{spec.version}",
        "feature_spec_hash": spec.spec_hash,
        "model_version": str(version),
    }


@dataclass(frozen=True)
class ExportedVersion:
    encoder: Path
    autoencoder: Path
    scored: ScoredAutoencoder
    """The torch graph the autoencoder file was exported from (for the ONNX parity check)."""
    metadata: dict[str, str]


def export_version(
    model: nn.Module,
    normalizer: Normalizer,
    spec: FeatureSpec,
    calibration: Calibration,
    version: int,
    export_dir: Path,
) -> ExportedVersion:
    """Turn a trained network into a servable version's two ONNX files (``dfp_encoder``,
    ``dfp_autoencoder`` with the calibrated scoring head): the one way both trainings do it."""
    scored = calibrated_head(model, spec.layout, calibration, version)
    meta = version_metadata(spec, version)
    encoder = export_encoder(normalizer, export_dir / "dfp_encoder.onnx", meta)
    autoencoder = export_scored_autoencoder(
        scored, spec.tensor_width, export_dir / "dfp_autoencoder.onnx", meta
    )
    return ExportedVersion(encoder, autoencoder, scored, meta)
