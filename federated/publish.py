"""Publishing a trained autoencoder as the next ``dfp_autoencoder`` version, safely.

The loop a site's sidecar runs after federated rounds (or a model engineer runs by hand):

1. **export** the checkpoint's autoencoder with a scoring head calibrated on the site's own
   normal validation rows (the calibration part: it never leaves the site, and the gate never
   scores it) and the new version number baked in;
2. **validate**: ONNX checker, ONNX Runtime vs torch parity, input/output names and shapes
   against the served config, feature-spec hash and normalizer equal to what is served;
3. **gate** (:mod:`federated.gate`, on rows the calibration never saw): AUROC on a labelled
   holdout, or without labels the false-positive rate on held-out normal rows *and* the recall
   on canary anomalies made from them; a regression is refused with both numbers of every
   check and nothing in the repository changes;
4. **publish atomically**: everything is written into a hidden staging folder and renamed to
   ``dfp_autoencoder/<n+1>`` in one step (Triton ignores hidden folders, so a publisher killed
   midway leaves nothing servable behind); a manifest records sha256 of every file, parent
   version, provenance (FL run id, rounds, epsilon), metrics and creation time;
5. **serve and confirm**: ask Triton to load it (explicit mode) or let it poll, then confirm
   with a probe request that ``MODEL_VERSION`` answers ``n+1``; keep the last K versions,
   never deleting the served one.

Rollback pins an earlier version (``version_policy: specific``) the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch

from federated.gate import GateRefused, PublishConfig, decide, split_rows
from modelling.calibration import calibrate, calibrated_head
from modelling.checkpoint import Checkpoint, normalizer_from_encoder
from modelling.export import export_scored_autoencoder, version_metadata
from modelling.models import ScoredAutoencoder
from morpheus_ext.errors import SecureAIError
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.model_repository import (
    AE_OUTPUTS,
    AUTOENCODER,
    ENCODER,
    ENSEMBLE,
    INPUT,
    MANIFEST,
    NORMALIZED,
    ModelRepository,
    pinned_version,
    served_version,
    sha256_file,
)
from morpheus_ext.repository_writer import repository_lock, set_version_policy, write_manifest

log = logging.getLogger(__name__)
PAUSE_ENV = "SECUREAI_PUBLISH_PAUSE_AT"
"""Test hook: a stage name at which the publisher stops and waits (to be killed by the test)."""


class PublishRefused(SecureAIError, RuntimeError):
    """The candidate failed validation or the promotion gate (message has the numbers)."""


@dataclass
class PublishResult:
    version: int
    path: Path
    manifest: dict[str, Any]
    gate: dict[str, Any]


# --------------------------------------------------------------------------- repository state
def _pause_point(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"publish paused at {stage}", flush=True)
        while True:  # the test kills us here
            time.sleep(1)


# --------------------------------------------------------------------------- Triton control
class TritonControl:
    """Make Triton serve what the repository says, and confirm it with a probe request.

    ``mode="explicit"``: call ``load_model`` (Triton re-reads the model folder); ``"poll"``:
    Triton notices by itself; ``"auto"`` (default): try ``load_model`` and, when the server
    answers that it polls its repository, wait for the poll instead. ``sync`` runs first (the
    CPU harness re-derives its variant). Callers confirm with :meth:`confirm` and restore the
    repository when it fails, so the repository and the server never disagree for long.
    """

    def __init__(
        self,
        http_url: str,
        mode: Literal["auto", "explicit", "poll"] = "auto",
        sync: Callable[[], object] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        import tritonclient.http as httpclient

        self.client = httpclient.InferenceServerClient(url=http_url.removeprefix("http://"))
        self.mode = mode
        self.sync = sync
        self.timeout_s = timeout_s
        self._lib = httpclient

    def apply(self) -> None:
        if self.sync is not None:
            self.sync()
        if self.mode == "poll":
            return
        from tritonclient.utils import InferenceServerException

        try:
            self.client.load_model(AUTOENCODER)
        except InferenceServerException as exc:
            if self.mode == "auto" and "polling is enabled" in str(exc):
                log.info("Triton polls its repository: waiting for the poll, not loading")
                self.mode = "poll"
                return
            raise

    def probe_version(self) -> int:
        """``MODEL_VERSION`` of one probe request (all outputs requested: Triton 2.51 reports a
        spurious ensemble deadlock when a request asks for a subset)."""
        inp = self._lib.InferInput(INPUT, [1, 256], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 256), np.float32))
        out = self.client.infer(ENSEMBLE, [inp])
        return int(out.as_numpy("MODEL_VERSION").reshape(-1)[0])

    def confirm(self, version: int) -> float:
        """Seconds until the ensemble answers with ``version`` (raises on timeout)."""
        start = time.monotonic()
        seen = None
        while time.monotonic() - start < self.timeout_s:
            with contextlib.suppress(Exception):
                seen = self.probe_version()
                if seen == version:
                    return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(
            f"Triton still serves version {seen} after {self.timeout_s:.0f}s, expected {version}"
        )


# --------------------------------------------------------------------------- candidate
def _scores(session: ort.InferenceSession, normalized: np.ndarray) -> tuple[np.ndarray, float]:
    score, _, threshold, _ = session.run(None, {NORMALIZED: normalized})
    return np.asarray(score).reshape(-1), float(np.asarray(threshold).reshape(-1)[0])


def _validate(
    path: Path,
    module: ScoredAutoencoder,
    spec: FeatureSpec,
    repository: Path,
    normalized: np.ndarray,
    parity_atol: float,
) -> ort.InferenceSession:
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:
        raise PublishRefused(f"ONNX checker failed: {str(exc).splitlines()[0]}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.shape[1:]) for i in session.get_inputs()]
    if inputs != [(NORMALIZED, [spec.tensor_width])]:
        raise PublishRefused(
            f"candidate inputs {inputs}, the served model takes "
            f"[('{NORMALIZED}', [{spec.tensor_width}])]"
        )
    outputs = {o.name: o.shape[1:] for o in session.get_outputs()}
    n_fields = len(spec.layout.fields)
    want = {"ANOMALY_SCORE": [1], "FIELD_Z": [n_fields], "THRESHOLD": [1], "MODEL_VERSION": [1]}
    if list(outputs) != list(AE_OUTPUTS) or outputs != want:
        raise PublishRefused(f"candidate outputs {outputs}, the served config expects {want}")
    served = ModelRepository(repository).config_parameters(AUTOENCODER).get("feature_spec_hash")
    meta = session.get_modelmeta().custom_metadata_map.get("feature_spec_hash")
    if not (served == meta == spec.spec_hash):
        raise PublishRefused(
            f"feature spec hash mismatch: candidate {meta!r}, served {served!r}, "
            f"serving spec {spec.spec_hash!r}"
        )
    sample = normalized[:1024]
    with torch.no_grad():
        ref = module(torch.from_numpy(sample))[0].numpy().reshape(-1)
    got, _ = _scores(session, sample)
    diff = float(np.abs(got - ref).max()) if len(sample) else 0.0
    if diff > parity_atol:
        raise PublishRefused(f"ONNX vs torch parity {diff:.2e} exceeds {parity_atol:.0e}")
    return session


def publish(
    checkpoint: Checkpoint,
    repository: Path,
    spec: FeatureSpec,
    validation: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    config: PublishConfig | None = None,
    provenance: dict[str, Any] | None = None,
    triton: TritonControl | None = None,
    contamination: float = 0.0,
) -> PublishResult:
    """Export, validate, gate and atomically publish ``checkpoint`` as the next version.

    ``contamination``: share of the (unlabelled) validation rows estimated to be attacks; the
    threshold leaves them out of the false-positive budget (:func:`calibrate`)."""
    config = config or PublishConfig()
    repo = ModelRepository(repository)
    if checkpoint.spec_hash != spec.spec_hash:
        raise PublishRefused(
            f"feature spec hash mismatch: checkpoint {checkpoint.spec_hash!r}, "
            f"serving spec {spec.spec_hash!r}"
        )
    served_norm = normalizer_from_encoder(repo.version_dir(ENCODER) / "model.onnx")
    if not (
        np.allclose(served_norm.center, checkpoint.normalizer.center)
        and np.allclose(served_norm.scale, checkpoint.normalizer.scale)
    ):
        raise PublishRefused(
            f"the candidate was trained with another normalizer than the served "
            f"{ENCODER} of {repository}, so its scores would mean something else there; "
            f"retrain from what this repository serves: set `initial_model: {{repository: "
            f"{repository}, version: served}}` in the run config (weights and normalizer of the "
            f"served version) or `public.encoder: {repo.version_dir(ENCODER) / 'model.onnx'}`"
        )
    try:
        rows = split_rows(spec, checkpoint.normalizer, validation, holdout, config)
    except GateRefused as exc:
        raise PublishRefused(str(exc)) from exc
    x_val = rows.calibration  # calibration rows only: the gate never sees them
    model = checkpoint.build(spec.tensor_width)
    calib = calibrate(model, x_val, spec.layout, config.target_fpr, contamination)

    with repository_lock(repository):
        for stale in (repository / AUTOENCODER).glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a publisher killed midway (we hold the lock)
        problems = verify(repository)
        if problems:
            raise PublishRefused(
                f"repository fails verification: {problems[0]} "
                f"({len(problems)} problem(s); `secureai model verify`)"
            )
        current = repo.versions(AUTOENCODER)
        version = (current[-1] + 1) if current else 1
        parent = served_version(repository) if current else None
        module = calibrated_head(model, spec.layout, calib, version)
        staging = repository / AUTOENCODER / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            onnx_path = export_scored_autoencoder(
                module,
                spec.tensor_width,
                staging / "model.onnx",
                version_metadata(spec, version),
            )
            _pause_point("exported")
            session = _validate(onnx_path, module, spec, repository, x_val, config.parity_atol)
            served_path = (
                None if parent is None else repo.version_dir(AUTOENCODER, parent) / ("model.onnx")
            )
            served = (
                None
                if served_path is None
                else ort.InferenceSession(str(served_path), providers=["CPUExecutionProvider"])
            )
            try:
                gate = decide(
                    config,
                    lambda x: _scores(session, x),
                    None if served is None else (lambda x: _scores(served, x)),
                    rows,
                    config.target_fpr,
                )
            except GateRefused as exc:
                raise PublishRefused(str(exc)) from exc
            manifest = {
                **(provenance or checkpoint.provenance),
                "parent_version": parent,
                "feature_spec": f"{spec.name}:{spec.version}",
                "feature_spec_hash": spec.spec_hash,
                "architecture": checkpoint.model_config.model_dump(),
                "calibration": {
                    "target_fpr": calib.target_fpr,
                    "threshold": calib.threshold,
                    "n_samples": calib.n_samples,
                    "contamination": calib.contamination,
                },
                "gate": gate,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": AUTOENCODER,
                "version": version,
            }
            write_manifest(staging, manifest)
            _pause_point("manifest")
            for f in staging.iterdir():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
            final = repository / AUTOENCODER / str(version)
            os.rename(staging, final)  # the atomic step: Triton sees all of it or nothing
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        config_path = repository / AUTOENCODER / "config.pbtxt"
        config_before = config_path.read_text()
        if pinned_version(config_before) is not None:
            set_version_policy(repository, None)
        _pause_point("renamed")
        manifest = json.loads((final / MANIFEST).read_text())
        if triton is not None:
            try:
                seconds = _serve(triton, version)
            except Exception as exc:
                withdrawn = final.with_name(f".withdrawn-{version}-{os.getpid()}")
                os.rename(final, withdrawn)
                config_path.write_text(config_before)
                shutil.rmtree(withdrawn, ignore_errors=True)
                _restore(triton)
                raise PublishRefused(
                    f"Triton did not serve version {version} ({_first_line(exc)}); the version "
                    f"was withdrawn and the repository serves {parent} again"
                    f"{_mode_hint(exc)}"
                ) from exc
            log.info("Triton serves %s version %d (%.1fs)", AUTOENCODER, version, seconds)
        prune(repository, config.keep_last)
    return PublishResult(version, final, manifest, gate)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _mode_hint(exc: BaseException) -> str:
    if "polling is enabled" in str(exc):
        return "; this Triton polls its repository: use --control-mode poll (or auto)"
    if "explicit model load" in str(exc) or "not allowed" in str(exc):
        return "; check --control-mode against the server's --model-control-mode"
    return ""


def _serve(triton: TritonControl, version: int) -> float:
    triton.apply()
    return triton.confirm(version)


def _restore(triton: TritonControl) -> None:
    """Best effort: let the server pick the restored repository up again."""
    with contextlib.suppress(Exception):
        triton.apply()


def rollback(
    repository: Path, version: int | None = None, triton: TritonControl | None = None
) -> int:
    """Serve ``version`` (default: the one before the served one) by pinning it.

    With ``triton``, the command returns only once Triton answers with ``version``; if it does
    not (refused load, timeout), ``config.pbtxt`` is restored as it was and the error says so,
    so the repository and the server agree either way.
    """
    repo = ModelRepository(repository)
    versions = repo.versions(AUTOENCODER)
    current = served_version(repository)
    if version is None:
        older = [v for v in versions if v < current]
        if not older:
            raise PublishRefused(f"no version older than the served {current} to roll back to")
        version = older[-1]
    if version not in versions:
        raise PublishRefused(f"{AUTOENCODER} has no version {version} (have {versions})")
    config_path = repository / AUTOENCODER / "config.pbtxt"
    with repository_lock(repository):
        before = config_path.read_text()
        set_version_policy(repository, version)
        if triton is not None:
            try:
                _serve(triton, version)
            except Exception as exc:
                config_path.write_text(before)
                _restore(triton)
                raise PublishRefused(
                    f"Triton did not switch to version {version} ({_first_line(exc)}); "
                    f"config.pbtxt restored, the repository serves {current} again"
                    f"{_mode_hint(exc)}"
                ) from exc
    return version


def prune(repository: Path, keep_last: int) -> list[int]:
    """Delete all but the newest ``keep_last`` versions, never the served one."""
    versions = ModelRepository(repository).versions(AUTOENCODER)
    served = served_version(repository)
    doomed = [v for v in versions[:-keep_last] if v != served]
    for v in doomed:
        shutil.rmtree(repository / AUTOENCODER / str(v))
    return doomed


def verify(repository: Path) -> list[str]:
    """Every version's files against its manifest, plus embedded version and spec hash."""
    problems: list[str] = []
    repo = ModelRepository(repository)
    spec_hash = repo.config_parameters(AUTOENCODER).get("feature_spec_hash")
    for model in (ENCODER, AUTOENCODER):
        for v in repo.versions(model):
            vdir = repository / model / str(v)
            manifest = repo.manifest(model, v)
            if not manifest:
                problems.append(f"{model}/{v}: no manifest")
                continue
            for name, digest in manifest.get("files", {}).items():
                path = vdir / name
                if not path.is_file():
                    problems.append(f"{model}/{v}/{name}: missing")
                elif sha256_file(path) != digest:
                    problems.append(f"{model}/{v}/{name}: sha256 differs from the manifest")
            onnx_path = vdir / "model.onnx"
            if onnx_path.is_file():
                try:
                    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
                except (
                    Exception
                ) as exc:  # a truncated or overwritten file is a finding, not a crash
                    problems.append(
                        f"{model}/{v}/model.onnx: not a readable ONNX model ({type(exc).__name__})"
                    )
                    continue
                if meta.get("feature_spec_hash") != spec_hash:
                    problems.append(
                        f"{model}/{v}: feature spec hash {meta.get('feature_spec_hash')}"
                        f" != served {spec_hash}"
                    )
                if model == AUTOENCODER and meta.get("model_version") != str(v):
                    problems.append(f"{model}/{v}: embedded version {meta.get('model_version')}")
    return problems
