"""Warm start: a federated run's initial global model from a version a Triton repository serves.

Retraining starts from what is in production, not from random weights (``initial_model`` in
the run config). The served ``dfp_autoencoder/<N>/model.onnx`` is the only copy of the weights a
site is guaranteed to have, so they are read back from it: its initializers are named after the
torch ``state_dict`` of :class:`modelling.models.ScoredAutoencoder` (``autoencoder.<key>``;
the TorchScript exporter keeps parameter names, and ``nn.Linear`` becomes ``Gemm`` with
``transB=1``, i.e. the torch layout). Anything stored transposed (``Gemm`` with ``transB=0`` or
``MatMul``) is transposed back; a missing, extra or mis-shaped tensor is refused.

Before any weight is used the version is checked against the run: its manifest's architecture
must equal ``model`` and its feature spec hash (manifest, ONNX metadata, served config) the run's
spec; the sha256 of ``model.onnx`` must equal its manifest. The run's normalizer then comes from
the served ``dfp_encoder`` (the one encoder Triton pairs with every autoencoder version, and the
one ``secureai model publish`` requires), so the retrained model is publishable against it.

torch lives here (``federated``), never in ``morpheus_ext``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from federated.config import InitialModelConfig
from modelling.checkpoint import normalizer_from_encoder
from modelling.config import ModelConfig
from modelling.models import build_autoencoder
from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.model_repository import (
    AUTOENCODER,
    ENCODER,
    MANIFEST,
    ModelRepository,
    sha256_file,
)
from morpheus_ext.normalizer import Normalizer

PREFIX = "autoencoder."
"""Initializer names of the autoencoder inside the exported ``ScoredAutoencoder``."""


class WarmStartError(SecureAIError, ValueError):
    """The served version cannot start this run (message: one line, what differs)."""


@dataclass(frozen=True)
class InitialModel:
    """A served version, loaded: torch weights, its normalizer and where both came from."""

    state_dict: dict[str, torch.Tensor]
    normalizer: Normalizer
    encoder_path: Path
    info: dict[str, Any]
    """Provenance (repository, version, sha256 of the ONNX files, parent run id): recorded in
    ``fl_result.json``, ``run.json``, the checkpoint and every manifest built from the run."""


def _served(repository: Path) -> int:
    # Lazy: federated.publish pulls in onnxruntime/sklearn, not needed to resolve "latest"/N.
    from morpheus_ext.model_repository import served_version

    return served_version(repository)


def resolve_version(config: InitialModelConfig) -> int:
    """``served`` (what Triton serves, honouring a rollback pin), ``latest`` or a number."""
    repository = config.repository
    versions = ModelRepository(repository).versions(AUTOENCODER)
    if not versions:
        raise WarmStartError(f"initial_model: no {AUTOENCODER} versions in {repository}")
    if config.version == "served":
        version = _served(repository)
    elif config.version == "latest":
        version = versions[-1]
    else:
        version = config.version
    if version not in versions:
        raise WarmStartError(
            f"initial_model: {AUTOENCODER} has no version {version} in {repository} "
            f"(have {versions})"
        )
    return version


def _architecture(config: ModelConfig) -> dict[str, Any]:
    """The fields that decide the weights' names and shapes for this kind of model."""
    keys = ("hidden", "dropout") if config.kind == "mlp" else ("channels", "latent")
    dump = config.model_dump()
    return {"kind": config.kind, **{k: dump[k] for k in keys}}


def _transposed_inputs(graph: onnx.GraphProto) -> set[str]:
    """Initializers used as a matrix product's right operand in (in, out) layout."""
    names: set[str] = set()
    for node in graph.node:
        if node.op_type == "MatMul":
            names.add(node.input[1])
        elif node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            if "transB" not in attrs or attrs["transB"].i == 0:
                names.add(node.input[1])
    return names


def state_dict_from_onnx(
    path: Path, model_config: ModelConfig, width: int
) -> dict[str, torch.Tensor]:
    """The autoencoder ``state_dict`` stored in an exported ``dfp_autoencoder`` ONNX file."""
    graph = onnx.load(str(path)).graph
    stored = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    transposed = _transposed_inputs(graph)
    target = build_autoencoder(model_config, width).state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        name = PREFIX + key
        if name not in stored:
            raise WarmStartError(f"initial_model: {path} has no weight {name!r} (architecture?)")
        array = stored[name]
        want = tuple(tensor.shape)
        if array.shape != want and name in transposed and array.T.shape == want:
            array = array.T
        if array.shape != want:
            raise WarmStartError(
                f"initial_model: {name} in {path} has shape {list(array.shape)}, "
                f"the configured model needs {list(want)}"
            )
        state[key] = torch.tensor(np.ascontiguousarray(array), dtype=tensor.dtype)
    extra = sorted(n for n in stored if n.startswith(PREFIX) and n[len(PREFIX) :] not in target)
    if extra:
        raise WarmStartError(
            f"initial_model: {path} has weights the configured model lacks: {extra[:4]}"
        )
    return state


def _onnx_spec_hash(path: Path) -> str | None:
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return meta.get("feature_spec_hash")


def load_initial_model(
    config: InitialModelConfig,
    model_config: ModelConfig,
    spec: FeatureSpec,
    public_encoder: Path | None = None,
) -> InitialModel:
    """Check the chosen served version against the run and load it (see the module doc).

    ``public_encoder`` (the run's ``public.encoder``, if set) must be the served encoder file:
    a warm-started model is only publishable with the normalizer it was trained with."""
    repository = config.repository
    repo = ModelRepository(repository)
    version = resolve_version(config)
    where = f"{AUTOENCODER} version {version} in {repository}"
    vdir = repo.version_dir(AUTOENCODER, version)
    onnx_path = vdir / "model.onnx"
    if not onnx_path.is_file():
        raise WarmStartError(f"initial_model: {where} has no model.onnx")
    manifest = repo.manifest(AUTOENCODER, version)
    if not manifest:
        raise WarmStartError(f"initial_model: {where} has no {MANIFEST}")
    digest = sha256_file(onnx_path)
    if manifest.get("files", {}).get("model.onnx") != digest:
        raise WarmStartError(f"initial_model: {where}: model.onnx sha256 differs from its manifest")

    served_arch = manifest.get("architecture") or manifest.get("model")
    if not isinstance(served_arch, dict):
        raise WarmStartError(f"initial_model: the manifest of {where} records no architecture")
    theirs = _architecture(ModelConfig.model_validate(served_arch))
    ours = _architecture(model_config)
    if theirs != ours:
        raise WarmStartError(
            f"initial_model: architecture differs: {where} is {theirs}, the run's model is {ours}"
        )

    hashes = {
        "manifest": manifest.get("feature_spec_hash"),
        "model.onnx": _onnx_spec_hash(onnx_path),
        "config.pbtxt": repo.config_parameters(AUTOENCODER).get("feature_spec_hash"),
    }
    bad = {k: v for k, v in hashes.items() if v != spec.spec_hash}
    if bad:
        raise WarmStartError(
            f"initial_model: feature spec hash differs: {where} has {bad}, "
            f"the run's spec {spec.name}:{spec.version} has {spec.spec_hash!r}"
        )

    encoder_version = repo.latest(ENCODER)
    encoder_path = repo.version_dir(ENCODER, encoder_version) / "model.onnx"
    if not encoder_path.is_file():
        raise WarmStartError(
            f"initial_model: {ENCODER} version {encoder_version} has no model.onnx"
        )
    encoder_hash = _onnx_spec_hash(encoder_path)
    if encoder_hash != spec.spec_hash:
        raise WarmStartError(
            f"initial_model: feature spec hash differs: {ENCODER} version {encoder_version} "
            f"has {encoder_hash!r}, the run's spec has {spec.spec_hash!r}"
        )

    encoder_digest = sha256_file(encoder_path)
    if public_encoder is not None and sha256_file(public_encoder) != encoder_digest:
        raise WarmStartError(
            f"initial_model: public.encoder {public_encoder} is not the served {ENCODER} "
            f"(version {encoder_version} in {repository}); unset it or point it there"
        )

    state = state_dict_from_onnx(onnx_path, model_config, spec.tensor_width)
    info = {
        "repository": str(repository),
        "model": AUTOENCODER,
        "version": version,
        "sha256": digest,
        "run_id": manifest.get("run_id"),
        "encoder": {
            "model": ENCODER,
            "version": encoder_version,
            "sha256": encoder_digest,
        },
    }
    return InitialModel(state, normalizer_from_encoder(encoder_path), encoder_path, info)
