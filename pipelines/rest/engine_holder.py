"""The service's inference engine, built in the background; ``/readyz`` says when it is ready."""

from __future__ import annotations

import logging
import threading
import time

from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.base import InferenceEngine
from morpheus_ext.stages.postprocess.leakage import leakage_detector
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from pipelines.rest.config import ApiConfig

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- engine
class EngineHolder:
    """Builds the inference engine in the background; ``/readyz`` says 503 until it exists.

    With ``engine: triton`` the API may start before Triton: it keeps retrying every
    ``engine_retry_s`` and reports the last reason. The in-process engine serves what the
    repository serves (the pinned one after a rollback) and follows it when it changes.
    """

    def __init__(self, config: ApiConfig, spec: FeatureSpec) -> None:
        self.config, self.spec = config, spec
        self.pipeline: ScoringPipeline | None = None
        self.engine: InferenceEngine | None = None
        self.reason: str | None = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-builder", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.02)
        return self.ready

    def _build(self) -> InferenceEngine:
        from pipelines.engines import build_engine

        return build_engine(self.config.inference, self.spec)

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                engine = self._build()
            except Exception as exc:
                text = str(exc).strip()
                reason = text.splitlines()[0] if text else type(exc).__name__
                self.reason = reason
                if reason != last:
                    log.warning("inference engine not ready (retrying): %s", reason)
                    last = reason
                self._stop.wait(self.config.engine_retry_s)
                continue
            self.engine = engine
            self.pipeline = ScoringPipeline(
                Featurizer(self.spec),
                engine,
                self.config.limits.max_event_bytes,
                leakage=leakage_detector(self.config.leakage),
            )
            self.reason = None
            log.info("inference engine ready (%s)", self.config.inference.engine)
            return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.engine is not None:
            self.engine.close()
