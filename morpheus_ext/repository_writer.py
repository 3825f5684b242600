"""Writing the production-shaped Triton model repository (configs + version folders).

``dfp_encoder`` and ``dfp_autoencoder`` are ONNX models served by the native
``onnxruntime_onnx`` platform with dynamic batching (the NGC Triton image); ``anomaly_postproc``
is a python-backend model (``morpheus_ext/stages/postprocess/triton_postproc.py``);
``dfp_ensemble`` chains them. CPU-only machines serve a variant derived mechanically from this
layout (``scripts/triton/cpu_repository.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.model_repository import (
    AUTOENCODER,
    ENCODER,
    ENSEMBLE,
    INPUT,
    MANIFEST,
    NORMALIZED,
    POSTPROC,
    sha256_file,
)
from morpheus_ext.stages.postprocess.postproc import DEFAULT_TOP_K
from morpheus_ext.triton_limits import MAX_BATCH

POSTPROC_MODEL_SOURCE = '''"""Triton entry point of anomaly_postproc (from the repository writer).

The model is morpheus_ext/stages/postprocess/triton_postproc.py (one home, shared code).
"""

from morpheus_ext.stages.postprocess.triton_postproc import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''
"""The whole ``model.py`` of every ``anomaly_postproc`` version: a re-export, no logic."""


LATEST_POLICY = "version_policy: { latest: { num_versions: 1 } }"
"""Serve the newest version (the default; a rollback pins one instead)."""


def _params(params: dict[str, str]) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
        for k, v in sorted(params.items())
    )


def _io(kind: str, name: str, dtype: str, dims: list[int]) -> str:
    return f'{kind} [ {{ name: "{name}" data_type: {dtype} dims: {dims} }} ]\n'


def render_configs(spec: FeatureSpec, top_k: int = DEFAULT_TOP_K) -> dict[str, str]:
    """config.pbtxt text for the four models (all protobuf text format, checked by a test)."""
    width = spec.tensor_width
    n_fields = len(spec.layout.fields)
    k = min(top_k, n_fields)
    params = _params(
        {"feature_spec": f"{spec.name}:{spec.version}", "feature_spec_hash": spec.spec_hash}
    )
    batching = "dynamic_batching { max_queue_delay_microseconds: 100 }\n"
    onnx_head = f'platform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n'
    encoder = (
        f'name: "{ENCODER}"\n'
        + onnx_head
        + _io("input", INPUT, "TYPE_FP32", [width])
        + _io("output", NORMALIZED, "TYPE_FP32", [width])
        + batching
        + params
    )
    ae_out = (
        "output [\n"
        '  { name: "ANOMALY_SCORE" data_type: TYPE_FP32 dims: [1] },\n'
        f'  {{ name: "FIELD_Z" data_type: TYPE_FP32 dims: [{n_fields}] }},\n'
        '  { name: "THRESHOLD" data_type: TYPE_FP32 dims: [1] },\n'
        '  { name: "MODEL_VERSION" data_type: TYPE_INT64 dims: [1] }\n'
        "]\n"
    )
    autoencoder = (
        f'name: "{AUTOENCODER}"\n'
        + onnx_head
        + LATEST_POLICY
        + "\n"
        + _io("input", NORMALIZED, "TYPE_FP32", [width])
        + ae_out
        + batching
        + params
    )
    postproc = (
        f'name: "{POSTPROC}"\nbackend: "python"\nmax_batch_size: {MAX_BATCH}\n'
        "input [\n"
        '  { name: "ANOMALY_SCORE" data_type: TYPE_FP32 dims: [1] },\n'
        f'  {{ name: "FIELD_Z" data_type: TYPE_FP32 dims: [{n_fields}] }},\n'
        '  { name: "THRESHOLD" data_type: TYPE_FP32 dims: [1] }\n'
        "]\n"
        "output [\n"
        '  { name: "IS_ANOMALY" data_type: TYPE_BOOL dims: [1] },\n'
        '  { name: "MEAN_ABS_Z" data_type: TYPE_FP32 dims: [1] },\n'
        '  { name: "MAX_ABS_Z" data_type: TYPE_FP32 dims: [1] },\n'
        f'  {{ name: "TOP_FIELDS" data_type: TYPE_INT32 dims: [{k}] }},\n'
        f'  {{ name: "TOP_Z" data_type: TYPE_FP32 dims: [{k}] }}\n'
        "]\n"
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n" + _params({"top_k": str(k)})
    )
    ens_outputs = [
        ("ANOMALY_SCORE", "TYPE_FP32", 1),
        ("FIELD_Z", "TYPE_FP32", n_fields),
        ("THRESHOLD", "TYPE_FP32", 1),
        ("MODEL_VERSION", "TYPE_INT64", 1),
        ("IS_ANOMALY", "TYPE_BOOL", 1),
        ("MEAN_ABS_Z", "TYPE_FP32", 1),
        ("MAX_ABS_Z", "TYPE_FP32", 1),
        ("TOP_FIELDS", "TYPE_INT32", k),
        ("TOP_Z", "TYPE_FP32", k),
    ]
    ensemble = (
        f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH}\n'
        + _io("input", INPUT, "TYPE_FP32", [width])
        + "output [\n"
        + ",\n".join(f'  {{ name: "{n}" data_type: {t} dims: [{d}] }}' for n, t, d in ens_outputs)
        + "\n]\n"
        "ensemble_scheduling {\n  step [\n"
        f'    {{ model_name: "{ENCODER}" model_version: -1\n'
        f'      input_map {{ key: "{INPUT}" value: "{INPUT}" }}\n'
        f'      output_map {{ key: "{NORMALIZED}" value: "normalized" }} }},\n'
        f'    {{ model_name: "{AUTOENCODER}" model_version: -1\n'
        f'      input_map {{ key: "{NORMALIZED}" value: "normalized" }}\n'
        + "".join(
            f'      output_map {{ key: "{o}" value: "{o}" }}\n'
            for o in ("ANOMALY_SCORE", "FIELD_Z", "THRESHOLD", "MODEL_VERSION")
        )
        + "    },\n"
        f'    {{ model_name: "{POSTPROC}" model_version: -1\n'
        + "".join(
            f'      input_map {{ key: "{o}" value: "{o}" }}\n'
            for o in ("ANOMALY_SCORE", "FIELD_Z", "THRESHOLD")
        )
        + "".join(
            f'      output_map {{ key: "{o}" value: "{o}" }}\n'
            for o in ("IS_ANOMALY", "MEAN_ABS_Z", "MAX_ABS_Z", "TOP_FIELDS", "TOP_Z")
        )
        + "    }\n  ]\n}\n"
        + params
    )
    return {ENCODER: encoder, AUTOENCODER: autoencoder, POSTPROC: postproc, ENSEMBLE: ensemble}


def write_manifest(version_dir: Path, info: dict[str, Any]) -> Path:
    """Manifest of a version: sha256 of every file plus provenance/metrics (``info``)."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(version_dir.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    doc = {**info, "files": files}
    path = version_dir / MANIFEST
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def write_repository(
    root: Path,
    spec: FeatureSpec,
    encoder_onnx: Path,
    autoencoder_onnx: Path,
    version: int,
    manifest: dict[str, Any],
    top_k: int = DEFAULT_TOP_K,
) -> Path:
    """Write (or overwrite) ``version`` of every model plus the configs into ``root``.

    Each version folder is assembled in a staging folder and renamed in, so a server polling the
    repository never sees a half-written version (shared/notes/services.md).
    """
    root.mkdir(parents=True, exist_ok=True)
    for model, text in render_configs(spec, top_k).items():
        (root / model).mkdir(exist_ok=True)
        (root / model / "config.pbtxt").write_text(text)
    payloads: dict[str, dict[str, Path | str]] = {
        ENCODER: {"model.onnx": encoder_onnx},
        AUTOENCODER: {"model.onnx": autoencoder_onnx},
        POSTPROC: {"model.py": POSTPROC_MODEL_SOURCE},
        ENSEMBLE: {".keep": "ensemble versions hold no files; Triton needs the folder\n"},
    }
    for model, files in payloads.items():
        staging = root / model / f".staging-{version}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, src in files.items():
            if isinstance(src, Path):
                shutil.copyfile(src, staging / name)
            else:
                (staging / name).write_text(src)
        if model in (ENCODER, AUTOENCODER):
            write_manifest(staging, {**manifest, "model": model, "version": version})
        final = root / model / str(version)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    return root


def set_version_policy(repository: Path, version: int | None) -> None:
    """Pin ``version`` (rollback) or go back to "latest"; atomic rewrite of config.pbtxt.

    Read back by :func:`morpheus_ext.model_repository.served_version`.
    """
    path = repository / AUTOENCODER / "config.pbtxt"
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("version_policy")]
    policy = (
        LATEST_POLICY
        if version is None
        else f"version_policy: {{ specific: {{ versions: [{version}] }} }}"
    )
    lines.insert(2, policy)
    tmp = path.with_name(".config.pbtxt.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def repository_lock(repository: Path) -> Iterator[None]:
    """One writer (publish, rollback, prune) at a time per repository."""
    with (repository / ".publish.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
