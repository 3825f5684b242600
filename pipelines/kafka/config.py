"""Configuration of the Kafka scoring pipeline (``secureai run --config configs/pipeline.yml``).

Validated by pydantic like every other config (unknown keys are errors). The ``kafka.common``,
``kafka.consumer`` and ``kafka.producer`` dicts are passed through to librdkafka unchanged
(SASL, SSL, timeouts, compression ...), except the few keys the pipeline's guarantees depend
on (:data:`MANAGED_CONSUMER_KEYS`, :data:`MANAGED_PRODUCER_KEYS`). A string value written as
``${NAME}`` is read from the environment at load time, so secrets stay out of the file::

    kafka:
      common: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512,
               sasl.username: scorer, sasl.password: "${KAFKA_PASSWORD}"}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from morpheus_ext.config_io import ConfigError, StrictModel, load_config
from morpheus_ext.stages.input.kafka_source import MANAGED_CONSUMER_KEYS
from morpheus_ext.stages.output.kafka_sink import MANAGED_PRODUCER_KEYS
from morpheus_ext.stages.output.training_window import TrainingWindowConfig
from morpheus_ext.stages.postprocess.correlation import CorrelationConfig
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.postprocess.incidents import IncidentConfig
from morpheus_ext.stages.postprocess.leakage import LeakageConfig
from morpheus_ext.stages.preprocess.decode import DEFAULT_MAX_EVENT_BYTES
from pipelines.engines import InferenceConfig

ClientValue = str | int | float | bool
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _expand_env(options: dict[str, ClientValue], where: str) -> dict[str, ClientValue]:
    out: dict[str, ClientValue] = {}
    for key, value in options.items():
        if isinstance(value, str) and (m := _ENV_REF.match(value)):
            name = m.group(1)
            if name not in os.environ:
                raise ValueError(f"{where}.{key} refers to ${{{name}}}, which is not set")
            out[key] = os.environ[name]
        else:
            out[key] = value
    return out


def _check_managed(options: dict[str, ClientValue], managed: dict[str, str], where: str) -> None:
    for key in options:
        if key in managed:
            raise ValueError(f"{where}: '{key}' is managed by the pipeline ({managed[key]})")


class KafkaSettings(StrictModel):
    bootstrap_servers: str = Field(min_length=1)
    topics: list[str] = Field(min_length=1)
    """Input topics carrying raw security events (JSON objects, one per message)."""
    group_id: str = Field(default="secureai-scoring", min_length=1)
    scores_topic: str = "security-scores"
    dead_letter_topic: str = "security-events-dlq"
    incidents_topic: str = "security-incidents"
    """With ``incidents.enabled``: incident records (key = incident id; compacted topic)."""
    correlation_topic: str = "security-correlation"
    """With ``correlation.enabled``: one indicator message (keyed hashes only) per incident
    record, in the batch's delivery; read by ``secureai correlate``."""
    campaigns_topic: str = "security-campaigns"
    """With ``correlation.enabled``: the correlator's campaign notices (key = site), read back
    by every site's pipeline."""
    batch_size: int = Field(default=4096, ge=1, le=100_000)
    """A batch closes at this many events ..."""
    batch_timeout_ms: int = Field(default=50, ge=1, le=60_000)
    """... or this long after its first event ..."""
    batch_idle_ms: float = Field(default=5.0, gt=0, le=60_000)
    """... or when nothing new arrived for this long: full batches under load, no waiting for
    ``batch_timeout_ms`` when events are sparse. A batch costs ~6 ms of CPU whatever its size
    below a few hundred events, so a site with a trickle of events that can wait (a demo, a
    small office) raises this (e.g. to ``batch_timeout_ms``) and scores fewer, fuller batches."""
    max_inflight_batches: int = Field(default=4, ge=1, le=64)
    """At-least-once: batches produced but not yet acknowledged; bounds replays after a crash."""
    exactly_once: bool = False
    """Kafka transactions around consume-transform-produce (see docs/kafka.md)."""
    transactional_id: str | None = None
    """Exactly-once: stable per replica, unique among replicas (a restart fences its crashed
    predecessor); default ``<group_id>-<hostname>`` (the pod name on Kubernetes). Two replicas on
    one host need their own."""
    transaction_timeout_s: float = Field(default=30.0, gt=0)
    dead_letter_max_bytes: int = Field(default=960_000, ge=4096)
    """A larger dead letter keeps a prefix of the original plus its size and sha256."""
    connect_timeout_s: float = Field(default=15.0, gt=0)
    """At start: how long to wait for a broker to answer before giving up (one error line)."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """SIGTERM: how long to wait for the broker to acknowledge what was produced."""
    unassigned_warn_s: float = Field(default=60.0, gt=0)
    """No partition assigned for this long: a warning (again every as long) and the
    ``secureai_consumer_unassigned_seconds`` gauge say so (a spare replica, or a wedged group)."""
    common: dict[str, ClientValue] = Field(default_factory=dict)
    """librdkafka options for every client (SASL/SSL ...)."""
    consumer: dict[str, ClientValue] = Field(default_factory=dict)
    producer: dict[str, ClientValue] = Field(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        if any(not t.strip() for t in value):
            raise ValueError("topic names must not be empty")
        return value

    @model_validator(mode="after")
    def _client_options(self) -> KafkaSettings:
        both = {**MANAGED_CONSUMER_KEYS, **MANAGED_PRODUCER_KEYS}
        _check_managed(self.common, both, "kafka.common")
        _check_managed(self.consumer, MANAGED_CONSUMER_KEYS, "kafka.consumer")
        _check_managed(self.producer, MANAGED_PRODUCER_KEYS, "kafka.producer")
        self.common = _expand_env(self.common, "kafka.common")
        self.consumer = _expand_env(self.consumer, "kafka.consumer")
        self.producer = _expand_env(self.producer, "kafka.producer")
        outputs = [self.scores_topic, self.dead_letter_topic, self.incidents_topic]
        if set(outputs) & set(self.topics):
            raise ValueError(
                "scores_topic, dead_letter_topic and incidents_topic must differ from the input "
                "topics"
            )
        if len(set(outputs)) < len(outputs):
            raise ValueError("scores_topic, dead_letter_topic and incidents_topic must differ")
        return self

    def consumer_options(self) -> dict[str, Any]:
        return {**self.common, **self.consumer}

    def producer_options(self) -> dict[str, Any]:
        return {**self.common, **self.producer}


class RetrySettings(StrictModel):
    """Backoff while the inference backend fails: ``initial_s * 2**n`` capped at ``max_s``."""

    initial_s: float = Field(default=0.2, gt=0)
    max_s: float = Field(default=5.0, gt=0)


class StreamFingerprintConfig(FingerprintConfig):
    """Fingerprinting in the Kafka pipeline: the baselines' knobs plus their durability.

    The checkpoint file is the source of truth for the baselines *and* the input offsets they
    reflect (docs/fingerprinting.md, "Durability"); one file per consumer instance.
    """

    checkpoint_path: str | None = "state/baselines-{instance}.npz"
    """Where the baselines and their offsets are checkpointed (``{instance}``: ``instance_id``,
    ``{group}``: ``kafka.group_id``). null: in memory only (a restart starts empty)."""
    checkpoint_interval_s: float = Field(default=10.0, gt=0)
    """Seconds between checkpoints (each writes the whole state: ~700 B per entity); a restart
    re-reads at most this much of the stream, learning it without emitting it twice."""
    instance_id: str = Field(default="0", pattern=r"^[A-Za-z0-9._-]+$")
    """Names this process's checkpoint; give every process of the group its own (e.g. the pod
    name of a StatefulSet) — baselines are per process (see docs)."""

    def baselines_config(self) -> FingerprintConfig:
        """The plain :class:`FingerprintConfig` (what the checkpoint records)."""
        fields = set(FingerprintConfig.model_fields)
        return FingerprintConfig.model_validate(self.model_dump(include=fields))

    def checkpoint_file(self, group_id: str) -> Path | None:
        if self.checkpoint_path is None:
            return None
        return Path(self.checkpoint_path.format(instance=self.instance_id, group=group_id))


class PipelineConfig(StrictModel):
    name: str = "kafka-scoring"
    spec: str = "security_events"
    """Feature spec name or YAML path; must match the served model's spec hash."""
    kafka: KafkaSettings
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, ge=1)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0 or null: off)."""
    fingerprint: StreamFingerprintConfig | None = None
    """Per-entity baselines, checkpointed with the consumed offsets (docs/fingerprinting.md)."""
    leakage: LeakageConfig | None = None
    """Secrets in event fields found, masked and reported (docs/triage.md); null: off."""
    incidents: IncidentConfig | None = None
    """Flagged records grouped into incidents, emitted to ``kafka.incidents_topic`` with the
    batch and checkpointed before its offsets commit (docs/triage.md); null: off."""
    correlation: CorrelationConfig | None = None
    """Cross-site correlation (docs/triage.md): a keyed-hash indicator message per incident
    record to ``kafka.correlation_topic``, campaign notices from ``kafka.campaigns_topic``
    applied to this site's incidents; needs ``incidents`` with a ``site``. null: off."""
    training_window: TrainingWindowConfig | None = None
    """Keep the scored events on the site's disk for its sidecar's retraining (docs/loop.md);
    null: keep nothing."""

    @model_validator(mode="after")
    def _correlation(self) -> PipelineConfig:
        c = self.correlation
        if c is None or not c.enabled:
            return self
        inc = self.incidents
        if inc is None or not inc.enabled or not inc.site:
            raise ValueError(
                "correlation needs incidents enabled with a site name (incidents: {enabled: "
                "true, site: <this site>})"
            )
        k = self.kafka
        named = [k.scores_topic, k.dead_letter_topic, k.incidents_topic, *k.topics]
        if {k.correlation_topic, k.campaigns_topic} & set(named) or (
            k.correlation_topic == k.campaigns_topic
        ):
            raise ValueError(
                "kafka.correlation_topic and kafka.campaigns_topic must differ from each other "
                "and from the other topics"
            )
        return self

    @model_validator(mode="after")
    def _checkpoint_path(self) -> PipelineConfig:
        fp = self.fingerprint
        if fp is not None and fp.checkpoint_path is not None:
            try:
                fp.checkpoint_file(self.kafka.group_id)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"fingerprint.checkpoint_path: only {{instance}} and {{group}} may be "
                    f"substituted ({exc})"
                ) from None
        return self

    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds: loopback unless set (containers: ``0.0.0.0``)."""


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Load and validate; every problem is one :class:`ConfigError` line."""
    return load_config(path, PipelineConfig)


__all__ = [
    "ConfigError",
    "InferenceConfig",
    "KafkaSettings",
    "PipelineConfig",
    "RetrySettings",
    "StreamFingerprintConfig",
    "load_pipeline_config",
]
