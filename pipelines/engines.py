"""Choosing the inference engine from configuration (``inference:`` in pipeline configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from morpheus_ext.config_io import StrictModel
from morpheus_ext.feature_spec import FeatureSpec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY, ENSEMBLE
from morpheus_ext.stages.inference.base import InferenceEngine


class TLSConfig(StrictModel):
    root_certificates: Path | None = None
    private_key: Path | None = None
    certificate_chain: Path | None = None


class InferenceConfig(StrictModel):
    """``engine: inprocess`` (ONNX Runtime, the default) or ``triton`` (a server at ``url``)."""

    engine: Literal["inprocess", "triton"] = "inprocess"
    repository: Path = DEFAULT_REPOSITORY
    """In-process: the model repository to load (the same files Triton serves)."""
    url: str = "127.0.0.1:8001"
    model: str = ENSEMBLE
    protocol: Literal["grpc", "http"] = "grpc"
    max_in_flight: int = Field(default=4, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_outage_s: float = Field(default=300.0, gt=0)
    """How long a Triton outage may last before the pipeline gives up (nothing is dropped)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    tls: TLSConfig | None = None
    shared_memory: Literal["none", "cuda"] = "none"
    """Triton on the same GPU host: ``cuda`` passes tensors through CUDA IPC buffers instead of
    the request body (needs a GPU and ``tritonclient[cuda]``; checked at start)."""
    cuda_device: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    """In-process: ONNX Runtime intra-op threads (default: all cores)."""
    follow_repository: bool = True
    """In-process: switch to a newly published, rolled-back or pinned version at a batch
    boundary (Triton does the same by itself)."""


def _read(path: Path | None) -> str | None:
    return None if path is None else path.read_text()


def build_engine(config: InferenceConfig, spec: FeatureSpec) -> InferenceEngine:
    """The engine the config names, checked against the spec (raises a one-line error)."""
    if config.engine == "inprocess":
        from morpheus_ext.stages.inference.inprocess import InProcessEngine

        return InProcessEngine(
            config.repository,
            spec.spec_hash,
            threads=config.threads,
            follow=config.follow_repository,
        )
    from morpheus_ext.stages.inference.triton import RetryPolicy, TLSOptions, TritonEngine

    tls = None
    if config.tls is not None:
        tls = TLSOptions(
            _read(config.tls.root_certificates),
            _read(config.tls.private_key),
            _read(config.tls.certificate_chain),
        )
    return TritonEngine(
        config.url,
        spec.spec_hash,
        model=config.model,
        protocol=config.protocol,
        max_in_flight=config.max_in_flight,
        request_timeout_s=config.request_timeout_s,
        retry=RetryPolicy(max_outage_s=config.max_outage_s),
        tls=tls,
        connect_timeout_s=config.connect_timeout_s,
        shared_memory=config.shared_memory,
        cuda_device=config.cuda_device,
    )
