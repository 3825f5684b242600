"""Triton engine: ``dfp_ensemble`` on a Triton Inference Server over gRPC (default) or HTTP.

What it guarantees the pipeline:
* **checked at start** — server reachable, model ready, input ``EVENT_TENSOR`` FP32 ``[-1, 256]``,
  ``max_batch_size > 0`` and the feature-spec hash of the served model equal to the pipeline's;
  any mismatch is one clear :class:`TritonEngineError` (the CLI prints it and exits non-zero);
* **split and overlapped** — a batch is cut to the model's ``max_batch_size`` and the pieces are
  sent concurrently (``max_in_flight``); :meth:`TritonEngine.submit` returns a future so the
  caller featurizes the next batch while this one is inferred;
* **no batch dropped or scored twice** — a failed piece is retried (exponential backoff with a
  cap) until it succeeds or ``max_outage_s`` passes; each piece's result is kept exactly once,
  so an outage only delays records. The outage is visible in metrics (``secureai_inference_up``
  0, ``secureai_inference_errors_total``) and in the log (one WARNING when it starts, one INFO
  when it ends).

* **CUDA shared memory** (opt-in, ``shared_memory="cuda"``) — with Triton on the same GPU host
  the batch and the outputs travel through CUDA IPC buffers (:mod:`.cuda_shm`) rather than the
  request body; the rest (split, retry, checks) is unchanged.

Names and shapes stay those Morpheus' own TritonInferenceStage expects (one input with dims
[256], ``max_batch_size > 0``, ``ANOMALY_SCORE`` mappable to ``probs``).

Example:

A server that is not there is one clear line, after ``connect_timeout_s``:

>>> TritonEngine("127.0.0.1:1", "hash", connect_timeout_s=0.2)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
morpheus_ext.stages.inference.triton.TritonEngineError: ...127.0.0.1:1...
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from morpheus_ext.stages.inference.base import ModelInfo

if TYPE_CHECKING:
    from morpheus_ext.stages.inference.cuda_shm import CudaSharedMemory
from morpheus_ext.errors import SecureAIError
from morpheus_ext.model_repository import AUTOENCODER, ENSEMBLE, ENSEMBLE_OUTPUTS, INPUT
from morpheus_ext.prometheus_metrics import pipeline_metrics

log = logging.getLogger(__name__)
Protocol = Literal["grpc", "http"]
SharedMemory = Literal["none", "cuda"]
ENGINE = "triton"


class TritonEngineError(SecureAIError, RuntimeError):
    """The server or model cannot serve this pipeline (message is one user-facing line)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff: ``initial_s * 2**n`` capped at ``max_s``; give up after ``max_outage_s``."""

    initial_s: float = 0.1
    max_s: float = 2.0
    max_outage_s: float = 300.0


@dataclass(frozen=True)
class TLSOptions:
    """gRPC TLS: CA bundle to verify the server, optional client key/cert for mutual TLS."""

    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None


@dataclass
class _Outage:
    started: float | None = None
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client_module(protocol: Protocol) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client
    return client


def _strip_scheme(url: str) -> str:
    for scheme in ("grpc://", "http://", "https://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


class TritonEngine:
    """Scores EVENT_TENSOR batches with ``dfp_ensemble`` on a Triton server."""

    def __init__(
        self,
        url: str,
        spec_hash: str,
        model: str = ENSEMBLE,
        protocol: Protocol = "grpc",
        max_in_flight: int = 4,
        request_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        tls: TLSOptions | None = None,
        connect_timeout_s: float = 10.0,
        shared_memory: SharedMemory = "none",
        cuda_device: int = 0,
    ) -> None:
        self.url = _strip_scheme(url)
        self.model = model
        self.protocol = protocol
        self.request_timeout_s = request_timeout_s
        self.retry = retry or RetryPolicy()
        self.tls = tls
        self._client_lib = _client_module(protocol)
        self._local = threading.local()
        self._outage = _Outage()
        self._metrics = pipeline_metrics()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="triton")
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.info = self._check_model(spec_hash, connect_timeout_s)
        self._shm = self._shared_memory(shared_memory, cuda_device)
        self._metrics.engine_up.labels(ENGINE).set(1)

    # ------------------------------------------------------------------ connection
    def _client(self) -> Any:
        """One client per thread: the HTTP client (gevent) is not safe to share across threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs: dict[str, Any] = {"url": self.url}
            if self.protocol == "grpc" and self.tls is not None:
                kwargs.update(
                    ssl=True,
                    root_certificates=self.tls.root_certificates,
                    private_key=self.tls.private_key,
                    certificate_chain=self.tls.certificate_chain,
                )
            if self.protocol == "http":
                kwargs.update(
                    connection_timeout=self.request_timeout_s,
                    network_timeout=self.request_timeout_s,
                )
            client = self._client_lib.InferenceServerClient(**kwargs)
            self._local.client = client
        return client

    def _check_model(self, spec_hash: str, connect_timeout_s: float) -> ModelInfo:
        client = self._client()
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                if client.is_server_ready():
                    break
                reason = "not ready"
            except Exception as exc:  # connection refused, DNS, TLS: all mean "not reachable"
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
            if time.monotonic() > deadline:
                raise TritonEngineError(
                    f"Triton server at {self.url} ({self.protocol}) is unreachable: {reason}"
                )
            time.sleep(0.2)
        try:
            if not client.is_model_ready(self.model):
                raise TritonEngineError(f"model {self.model!r} is not ready on {self.url}")
            config = self._config(self.model)
            metadata = self._metadata(self.model)
        except TritonEngineError:
            raise
        except Exception as exc:
            raise TritonEngineError(
                f"cannot read model {self.model!r} on {self.url}: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
        inputs = metadata["inputs"]
        if [i["name"] for i in inputs] != [INPUT]:
            raise TritonEngineError(
                f"model {self.model!r} takes inputs "
                f"{[i['name'] for i in inputs]}, expected ['{INPUT}']"
            )
        shape = [int(d) for d in inputs[0]["shape"]]
        if inputs[0]["datatype"] != "FP32" or shape[1:] != [256]:
            raise TritonEngineError(
                f"model {self.model!r} input {INPUT} is "
                f"{inputs[0]['datatype']} {shape}, expected FP32 [-1, 256]"
            )
        max_batch = int(config.get("max_batch_size", 0))
        if max_batch <= 0:
            raise TritonEngineError(
                f"model {self.model!r} has max_batch_size {max_batch}; "
                "the pipeline needs a batching model (> 0)"
            )
        served_hash = self._spec_hash(config)
        if served_hash != spec_hash:
            raise TritonEngineError(
                f"feature spec mismatch: model {self.model!r} on {self.url} was trained for spec "
                f"hash {served_hash!r}, the pipeline's spec has {spec_hash!r}"
            )
        return ModelInfo(name=self.model, spec_hash=spec_hash, max_batch_size=max_batch)

    def _config(self, model: str) -> dict[str, Any]:
        client = self._client()
        if self.protocol == "grpc":
            return dict(client.get_model_config(model, as_json=True)["config"])
        return dict(client.get_model_config(model))

    def _metadata(self, model: str) -> dict[str, Any]:
        client = self._client()
        if self.protocol == "grpc":
            return dict(client.get_model_metadata(model, as_json=True))
        return dict(client.get_model_metadata(model))

    def _spec_hash(self, config: dict[str, Any]) -> str | None:
        params = config.get("parameters", {})
        value = params.get("feature_spec_hash", {}).get("string_value")
        if value is None and config.get("platform") == "ensemble":
            # An ensemble without the parameter: ask the autoencoder step that it runs.
            params = self._config(AUTOENCODER).get("parameters", {})
            value = params.get("feature_spec_hash", {}).get("string_value")
        return None if value is None else str(value)

    def _shared_memory(self, kind: SharedMemory, device_id: int) -> CudaSharedMemory | None:
        """``cuda``: tensors travel through CUDA IPC buffers (same GPU host; see cuda_shm)."""
        if kind == "none":
            return None
        from morpheus_ext.stages.inference.cuda_shm import (
            CudaSharedMemory,
            CudaSharedMemoryUnavailable,
            layouts_from_metadata,
        )

        try:
            layouts = layouts_from_metadata(self._metadata(self.model))
            return CudaSharedMemory(layouts, self.info.max_batch_size, device_id)
        except CudaSharedMemoryUnavailable as exc:
            raise TritonEngineError(str(exc)) from exc

    # ------------------------------------------------------------------ inference
    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self.submit(tensor).result()

    def submit(self, tensor: np.ndarray) -> Future[dict[str, np.ndarray]]:
        """Start inferring a batch; the future resolves to the concatenated ensemble outputs."""
        x = np.ascontiguousarray(tensor, dtype=np.float32)
        step = self.info.max_batch_size
        pieces = [
            self._pool.submit(self._infer_piece, x[i : i + step])
            for i in range(0, max(len(x), 1), step)
        ]
        return _gather(pieces)

    def _infer_piece(self, x: np.ndarray) -> dict[str, np.ndarray]:
        backoff = self.retry.initial_s
        while True:
            self._track(+1)
            start = time.perf_counter()
            try:
                out = self._request(x)
            except Exception as exc:
                self._track(-1)
                self._failed(exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, self.retry.max_s)
                continue
            self._track(-1)
            self._metrics.inference_latency.labels(ENGINE).observe(time.perf_counter() - start)
            self._recovered()
            return out

    def _request(self, x: np.ndarray) -> dict[str, np.ndarray]:
        lib = self._client_lib
        if self._shm is not None:
            timeout: dict[str, Any] = (
                {"timeout": int(self.request_timeout_s * 1e6)}
                if self.protocol == "http"
                else {"client_timeout": self.request_timeout_s}
            )
            return dict(self._shm.infer(self._client(), lib, self.model, x, **timeout))
        inp = lib.InferInput(INPUT, list(x.shape), "FP32")
        if self.protocol == "http":
            inp.set_data_from_numpy(x, binary_data=True)
            outputs = [lib.InferRequestedOutput(n, binary_data=True) for n in ENSEMBLE_OUTPUTS]
            result = self._client().infer(
                self.model, [inp], outputs=outputs, timeout=int(self.request_timeout_s * 1e6)
            )
        else:
            inp.set_data_from_numpy(x)
            outputs = [lib.InferRequestedOutput(n) for n in ENSEMBLE_OUTPUTS]
            result = self._client().infer(
                self.model, [inp], outputs=outputs, client_timeout=self.request_timeout_s
            )
        return {name: result.as_numpy(name) for name in ENSEMBLE_OUTPUTS}

    def _track(self, delta: int) -> None:
        with self._inflight_lock:
            self._inflight += delta
            self._metrics.inflight.labels(ENGINE).set(self._inflight)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._metrics.inference_errors.labels(ENGINE, type(exc).__name__).inc()
        with self._outage.lock:
            self._outage.failures += 1
            if self._outage.started is None:
                self._outage.started = now
                self._metrics.engine_up.labels(ENGINE).set(0)
                log.warning(
                    "Triton at %s unavailable (%s: %s); holding the batch and retrying",
                    self.url,
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "",
                )
            elif now - self._outage.started > self.retry.max_outage_s:
                raise TritonEngineError(
                    f"Triton at {self.url} unavailable for more than "
                    f"{self.retry.max_outage_s:.0f}s; giving up (no batch was dropped: the "
                    "failed batch was never scored)"
                ) from exc

    def _recovered(self) -> None:
        with self._outage.lock:
            if self._outage.started is not None:
                log.info(
                    "Triton at %s back after %.1fs (%d failed attempts)",
                    self.url,
                    time.monotonic() - self._outage.started,
                    self._outage.failures,
                )
                self._outage.started, self._outage.failures = None, 0
                self._metrics.engine_up.labels(ENGINE).set(1)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        try:
            if self._shm is not None:
                self._shm.close(self._client())  # this thread's client: the pool's are gone
        finally:
            client = getattr(self._local, "client", None)
            if client is not None:
                client.close()


def _gather(pieces: list[Future[dict[str, np.ndarray]]]) -> Future[dict[str, np.ndarray]]:
    """One future over the pieces' futures, concatenating outputs in submission order."""
    done: Future[dict[str, np.ndarray]] = Future()
    remaining = [len(pieces)]
    lock = threading.Lock()

    def finish(_: Future[dict[str, np.ndarray]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            parts = [p.result() for p in pieces]
        except BaseException as exc:
            done.set_exception(exc)
            return
        done.set_result({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    for p in pieces:
        p.add_done_callback(finish)
    return done
