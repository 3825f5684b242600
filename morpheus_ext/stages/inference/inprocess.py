"""In-process engine: the ``dfp_ensemble`` steps run with ONNX Runtime + the shared postproc.

The same files Triton serves (``dfp_encoder/<v>/model.onnx``, ``dfp_autoencoder/<v>/model.onnx``)
and the same :func:`~morpheus_ext.stages.postprocess.postproc.postprocess` function, so the
embedded default and
the Triton path give the same score records. No server, no network: the demo's default.

It serves what the repository serves: the pinned version after a rollback, else the latest.
With ``follow=True`` it watches the repository (:class:`ServedVersionWatch`) and switches to a
newly served version at a batch boundary, the way Triton does: the new session is loaded
before the old one is dropped, so no batch fails or waits for a model; every output row
carries the ``MODEL_VERSION`` that scored it.

Example:

>>> from morpheus_ext.feature_spec import load_spec
>>> from morpheus_ext.model_repository import DEFAULT_REPOSITORY
>>> engine = InProcessEngine(DEFAULT_REPOSITORY, load_spec("security_events").spec_hash)
>>> out = engine.infer(np.zeros((3, 256), dtype=np.float32))
>>> out["ANOMALY_SCORE"].shape, int(out["MODEL_VERSION"][0]) >= 1
((3, 1), True)
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import onnxruntime as ort

from morpheus_ext.model_repository import (
    AUTOENCODER,
    ENCODER,
    ENSEMBLE,
    INPUT,
    NORMALIZED,
    POSTPROC,
    ModelRepository,
    ModelRepositoryError,
    ServedVersionWatch,
    check_spec_hash,
    served_version,
)
from morpheus_ext.prometheus_metrics import pipeline_metrics
from morpheus_ext.stages.inference.base import ModelInfo
from morpheus_ext.stages.postprocess.postproc import DEFAULT_TOP_K, postprocess
from morpheus_ext.triton_limits import MAX_BATCH

log = logging.getLogger(__name__)


class InProcessEngine:
    """Runs encoder -> autoencoder (ONNX Runtime sessions) -> postproc on the calling thread."""

    def __init__(
        self,
        repository: Path | str,
        spec_hash: str,
        autoencoder_version: int | None = None,
        threads: int | None = None,
        follow: bool = False,
        follow_interval_s: float = 1.0,
    ) -> None:
        """``autoencoder_version=None``: the served one; ``follow``: switch when it changes
        (never with an explicit version)."""
        repo = ModelRepository(repository)
        self.repo, self.spec_hash = repo, spec_hash
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The pipeline alternates pandas work and inference on the same cores: ORT's spinning
        # idle threads would steal the other core from the featurizer (measured: featurize +
        # infer 189k -> 215k events/s at batch 4096 on 2 cores with spinning off).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.options = options
        self.encoder = self._session(repo, ENCODER, None, options, spec_hash)
        if autoencoder_version is None:
            autoencoder_version = served_version(repo.root)
        self.version = autoencoder_version
        self.autoencoder = self._session(repo, AUTOENCODER, autoencoder_version, options, spec_hash)
        self.watch = (
            ServedVersionWatch(repo.root, AUTOENCODER, follow_interval_s)
            if follow and autoencoder_version == served_version(repo.root)
            else None
        )
        params = repo.config_parameters(POSTPROC) if (repo.root / POSTPROC).is_dir() else {}
        self.top_k = int(params.get("top_k", DEFAULT_TOP_K))
        self.info = ModelInfo(name=ENSEMBLE, spec_hash=spec_hash, max_batch_size=MAX_BATCH)

    @staticmethod
    def _session(
        repo: ModelRepository,
        model: str,
        version: int | None,
        options: ort.SessionOptions,
        spec_hash: str,
    ) -> ort.InferenceSession:
        path = repo.version_dir(model, version) / "model.onnx"
        if not path.is_file():
            raise ModelRepositoryError(f"missing {path}")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        check_spec_hash(spec_hash, meta.get("feature_spec_hash"), f"{model} ({path})")
        return session

    def normalize(self, tensor: np.ndarray) -> np.ndarray:
        """Just the ``dfp_encoder`` step (the fitted normalizer), e.g. to feed baselines."""
        x = np.ascontiguousarray(tensor, dtype=np.float32)
        (normalized,) = self.encoder.run([NORMALIZED], {INPUT: x})
        return np.asarray(normalized)

    def submit(self, tensor: np.ndarray) -> Future[dict[str, np.ndarray]]:
        """Runs now, on the calling thread (ONNX Runtime already uses every core)."""
        fut: Future[dict[str, np.ndarray]] = Future()
        start = time.perf_counter()
        try:
            fut.set_result(self.infer(tensor))
        except Exception as exc:
            fut.set_exception(exc)
        pipeline_metrics().inference_latency.labels("inprocess").observe(
            time.perf_counter() - start
        )
        return fut

    def _maybe_switch(self) -> None:
        """At a batch boundary: load the newly served version, then swap (one assignment)."""
        if self.watch is None:
            return
        version = self.watch.poll()
        if version is None or version == self.version:
            return
        try:
            session = self._session(self.repo, AUTOENCODER, version, self.options, self.spec_hash)
        except Exception as exc:  # keep scoring with the old version; say why once
            log.warning("in-process engine stays on version %s: %s", self.version, exc)
            return
        log.info("in-process engine: %s version %s -> %s", AUTOENCODER, self.version, version)
        self.autoencoder, self.version = session, version

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self._maybe_switch()
        normalized = self.normalize(tensor)
        score, field_z, threshold, version = self.autoencoder.run(None, {NORMALIZED: normalized})
        out: dict[str, np.ndarray] = {
            "ANOMALY_SCORE": score,
            "FIELD_Z": field_z,
            "THRESHOLD": threshold,
            "MODEL_VERSION": version,
        }
        out.update(postprocess(score, field_z, threshold, self.top_k))
        return out

    def close(self) -> None:
        """Nothing to release: sessions are freed with the engine."""
