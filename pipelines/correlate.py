"""``secureai correlate``: the organisation's correlator service (docs/triage.md).

Consumes every site's indicator messages from ``kafka.correlation_topic`` (keyed hashes only:
the correlator never sees a raw value, nor the key), joins them with
:class:`~morpheus_ext.stages.postprocess.correlation.Correlator` and produces campaign notices
to ``kafka.campaigns_topic`` (key = site). At-least-once: a batch's offsets are committed only
after the broker acknowledged its notices; SIGTERM/SIGINT drain (finish the batch, wait for
acknowledgements, commit, leave the group).

Why a restart re-reads the window: the correlator's state is the indicators of the last
``window_s``; rather than checkpointing it, each assigned partition starts at the offset of
``window_s`` ago (by message time) when that is before the committed offset, so the state is
rebuilt from the topic. The notices this sends again are no-ops at the sites
(``IncidentTracker.set_campaign`` ignores a campaign it already has).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import Field, model_validator

from morpheus_ext.config_io import StrictModel, load_config
from morpheus_ext.stages.input.kafka_source import consumer_config
from morpheus_ext.stages.output.kafka_sink import producer_config
from morpheus_ext.stages.postprocess.correlation import (
    CorrelationConfig,
    Correlator,
    notice_messages,
)
from pipelines.kafka.config import ClientValue, _expand_env

log = logging.getLogger(__name__)


class CorrelatorKafka(StrictModel):
    bootstrap_servers: str = Field(min_length=1)
    group_id: str = Field(default="secureai-correlator", min_length=1)
    correlation_topic: str = "security-correlation"
    campaigns_topic: str = "security-campaigns"
    batch_size: int = Field(default=1000, ge=1)
    poll_timeout_s: float = Field(default=0.2, gt=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    rewind_window: bool = True
    """At start, re-read each partition from ``window_s`` ago (rebuilds the state)."""
    common: dict[str, ClientValue] = Field(default_factory=dict)
    consumer: dict[str, ClientValue] = Field(default_factory=dict)
    producer: dict[str, ClientValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _client_options(self) -> CorrelatorKafka:
        """``${NAME}`` values read from the environment, as in the pipeline's config."""
        self.common = _expand_env(self.common, "kafka.common")
        self.consumer = _expand_env(self.consumer, "kafka.consumer")
        self.producer = _expand_env(self.producer, "kafka.producer")
        if self.correlation_topic == self.campaigns_topic:
            raise ValueError("correlation_topic and campaigns_topic must differ")
        return self


class CorrelatorConfig(StrictModel):
    """``configs/correlator.yml``."""

    name: str = "correlator"
    kafka: CorrelatorKafka
    correlation: CorrelationConfig = Field(default_factory=lambda: CorrelationConfig(enabled=True))


def load_correlator_config(path: str | Path) -> CorrelatorConfig:
    return load_config(path, CorrelatorConfig)


class CorrelatorService:
    """The consume -> correlate -> produce -> commit loop (one process per organisation)."""

    def __init__(self, config: CorrelatorConfig) -> None:
        self.config = config
        k = config.kafka
        self.correlator = Correlator(config.correlation)
        self.consumer = Consumer(
            consumer_config(k.bootstrap_servers, k.group_id, {**k.common, **k.consumer})
        )
        self.producer = Producer(producer_config(k.bootstrap_servers, {**k.common, **k.producer}))
        self.stop = threading.Event()
        self.messages_in = 0
        self.notices_out = 0
        self._failed: KafkaError | None = None

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: draining", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self.config.kafka.rewind_window or not partitions:
            return
        since_ms = int((time.time() - self.config.correlation.window_s) * 1000)
        try:
            committed = consumer.committed(partitions, timeout=10)
            by_time = consumer.offsets_for_times(
                [TopicPartition(p.topic, p.partition, since_ms) for p in partitions], timeout=10
            )
        except KafkaException as exc:
            log.warning("rewind to the window failed (%s): starting at the committed offsets", exc)
            return
        starts = []
        for c, t in zip(committed, by_time, strict=True):
            start = c.offset
            if t.offset >= 0 and (start < 0 or t.offset < start):
                start = t.offset
            starts.append(TopicPartition(c.topic, c.partition, start))
        consumer.assign(starts)

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failed = err

    def run(self, max_messages: int | None = None) -> dict[str, int]:
        k = self.config.kafka
        self.consumer.subscribe([k.correlation_topic], on_assign=self._on_assign)
        try:
            while not self.stop.is_set():
                if max_messages is not None and self.messages_in >= max_messages:
                    break
                batch = self.consumer.consume(k.batch_size, timeout=k.poll_timeout_s)
                if batch:
                    self._process(batch)
        finally:
            self.producer.flush(k.drain_timeout_s)
            self.consumer.close()
        return {
            "messages_in": self.messages_in,
            "notices_out": self.notices_out,
            "campaigns": self.correlator.campaigns_formed,
        }

    def _process(self, batch: list[Any]) -> None:
        k = self.config.kafka
        offsets: dict[tuple[str, int], int] = {}
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("correlation topic: %s", msg.error())
                continue
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            self.messages_in += 1
            try:
                message = orjson.loads(msg.value() or b"")
                notices = self.correlator.observe(message)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("malformed indicator message skipped (%s)", exc)
                continue
            for key, value in notice_messages(notices):
                self.producer.produce(k.campaigns_topic, value, key, on_delivery=self._delivered)
            self.notices_out += len(notices)
            if notices:
                log.info(
                    "campaign %s at %d sites: %d notices",
                    notices[0]["campaign"]["campaign_id"],
                    notices[0]["campaign"]["sites"],
                    len(notices),
                )
        left = self.producer.flush(k.drain_timeout_s)
        if left or self._failed is not None:
            raise RuntimeError(
                f"campaign notices not acknowledged ({self._failed or f'{left} pending'}); "
                "offsets not committed, a restart re-reads them"
            )
        if offsets:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                asynchronous=False,
            )


def run_correlator(config: CorrelatorConfig, install_signals: bool = True) -> dict[str, int]:
    """Build and run until SIGTERM (what ``secureai correlate`` does)."""
    service = CorrelatorService(config)
    if install_signals:
        service.install_signal_handlers()
    log.info(
        "correlator: %s -> %s (indicators %s, window %.0f s, >= %d sites)",
        config.kafka.correlation_topic,
        config.kafka.campaigns_topic,
        ",".join(config.correlation.fields),
        config.correlation.window_s,
        config.correlation.min_sites,
    )
    return service.run()
