"""Configuration of the REST evaluator (``secureai serve-api --config configs/api.yml``).

Validated by pydantic (unknown keys are errors) like every other config, but loaded here rather
than through :mod:`pipelines.config`: that module imports the training stack (torch), and the
API image is lean (no torch). Every problem is one :class:`ApiConfigError` line.

Secrets never live in the file: the bearer token is read from an environment variable
(``auth.token_env``) or a mounted file (``auth.token_file``, e.g. a Kubernetes secret).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError
from morpheus_ext.stages.postprocess.leakage import LeakageConfig
from morpheus_ext.stages.preprocess.decode import DEFAULT_MAX_EVENT_BYTES
from pipelines.engines import InferenceConfig

DEFAULT_TOKEN_ENV = "SECUREAI_API_TOKEN"
MIN_TOKEN_CHARS = 16


class ApiConfigError(SecureAIError, ValueError):
    """A config (or secret) the service cannot start with; the message is one line."""


class AuthConfig(StrictModel):
    """Bearer-token authentication of ``/v1/*`` (health, readiness and metrics stay open)."""

    enabled: bool = True
    token_env: str = DEFAULT_TOKEN_ENV
    """Environment variable holding the token (used when ``token_file`` is not set)."""
    token_file: Path | None = None
    """File holding the token (surrounding whitespace is stripped), e.g. a mounted secret."""
    protect_metrics: bool = False
    """Also require the token on ``/metrics`` (Prometheus then needs ``authorization``)."""

    def resolve_token(self) -> str | None:
        """The configured token, or None when auth is disabled; raises if it is missing/short."""
        if not self.enabled:
            return None
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise ApiConfigError(
                    f"auth.token_file {self.token_file}: {exc.strerror or exc}"
                ) from None
            where = f"auth.token_file {self.token_file}"
        else:
            token = os.environ.get(self.token_env, "").strip()
            where = f"environment variable {self.token_env}"
        if not token:
            raise ApiConfigError(
                f"no API token: set {where} (or auth.enabled: false for local experiments)"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ApiConfigError(
                f"the API token in {where} is shorter than {MIN_TOKEN_CHARS} characters"
            )
        return token


class LimitsConfig(StrictModel):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413 before they are read into memory."""
    max_events: int = Field(default=1000, ge=1, le=100_000)
    """Events per ``POST /v1/score`` request; more is refused with 413."""
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, ge=1)
    """One event larger than this (serialised) is rejected with a reason, like in the pipeline."""
    max_concurrent_requests: int = Field(default=64, ge=1)
    """Beyond this many open requests uvicorn answers 503 at once (backpressure)."""


class ServerTLSConfig(StrictModel):
    """HTTPS for the API itself (uvicorn); ``ca_certfile`` + ``require_client_cert``: mTLS."""

    certfile: Path
    keyfile: Path
    ca_certfile: Path | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _client_cert_needs_ca(self) -> ServerTLSConfig:
        if self.require_client_cert and self.ca_certfile is None:
            raise ValueError("require_client_cert needs ca_certfile")
        return self


class ApiConfig(StrictModel):
    name: str = "secureai-api"
    host: str = "127.0.0.1"
    """Listen address; loopback by default (containers set 0.0.0.0 explicitly)."""
    port: int = Field(default=8080, ge=0, le=65535)
    spec: str = "security_events"
    """Feature spec name or YAML path; must match the served model's spec hash."""
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    models_repository: Path | None = None
    """Repository listed by ``GET /v1/models`` (default: ``inference.repository``). With
    ``engine: triton`` point it at the repository Triton serves (a shared read-only mount)."""
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tls: ServerTLSConfig | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Also serve Prometheus metrics on this port (``prometheus_client.start_http_server`` on
    ``metrics_host``); ``/metrics`` on the API port is always there. 0 or null: no extra port."""
    metrics_host: str = "127.0.0.1"
    """Address of the extra metrics port: loopback unless set, whatever ``host`` is (the
    unauthenticated endpoint is not exposed just because the API is)."""
    leakage: LeakageConfig = Field(default_factory=lambda: LeakageConfig(enabled=True))
    """Secrets in the posted events (keys, tokens, cards...) are masked before anything else
    sees them, and their records say so (``is_leak``, ``leakage``): a response never echoes a
    secret back, in a reason or a rejection (docs/triage.md). On unless turned off."""
    engine_retry_s: float = Field(default=2.0, gt=0)
    """While the engine cannot be built (Triton not up yet) ``/readyz`` says 503 and the
    service retries this often."""

    @property
    def repository_for_models(self) -> Path:
        return self.models_repository or self.inference.repository


def load_api_config(path: str | Path) -> ApiConfig:
    """Read and validate a YAML config; every problem is one :class:`ApiConfigError` line."""
    path = Path(path)
    if not path.is_file():
        raise ApiConfigError(f"config file not found: {path}")
    try:
        doc: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ApiConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_api_config(doc, str(path))


def parse_api_config(doc: Any, where: str = "config") -> ApiConfig:
    try:
        return ApiConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ApiConfigError(f"{where}: {loc}: {err['msg']}") from None
