"""A site's side of cross-site correlation in the Kafka pipeline (docs/triage.md).

Two jobs, both small enough to keep out of the runner's loop:

* **out**: :meth:`SiteCorrelation.indicator_messages` turns the batch's incident records into
  indicator messages (keyed hashes, ``morpheus_ext/stages/postprocess/correlation.py``) that the
  delivery mode sends to ``kafka.correlation_topic`` *with* the batch (same acknowledgement,
  same transaction), key = incident id;
* **in**: :meth:`SiteCorrelation.poll`, called from the runner's ``_service()``, reads the
  correlator's notices from ``kafka.campaigns_topic`` with a consumer of its own (every
  partition assigned, read from the beginning, no group and no commits: notices are few and
  applying one twice changes nothing), applies those for this site with
  ``IncidentTracker.set_campaign`` and produces the raised incident record to
  ``kafka.incidents_topic`` with a plain idempotent producer (not the batch's transaction: a
  notice is not tied to input offsets).

Why read from the beginning: after a restart the incidents come back from their checkpoint with
the campaigns they had; a notice already applied is a no-op, one that arrived while the site
was down is applied now. A notice for an incident no longer open is skipped (its closed record
stays as it was). The raised record goes out with a producer of its own, so a crash can lose it
after the checkpoint already holds the campaign: the first time a process meets each notice it
sends the incident's record again even when the campaign was applied before (same id, same
revision: a compacted topic keeps one), so a restart re-sends what may have been lost.
"""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from morpheus_ext.pipeline import BatchResult
from morpheus_ext.stages.input.kafka_source import CONSUMER_DEFAULTS
from morpheus_ext.stages.output.kafka_sink import incident_messages, producer_config
from morpheus_ext.stages.postprocess.correlation import CorrelationConfig, indicator_message
from morpheus_ext.stages.postprocess.incidents import IncidentTracker
from pipelines.kafka.config import KafkaSettings

log = logging.getLogger(__name__)

ASSIGN_RETRY_S = 10.0
POLL_MESSAGES = 500
"""Notices read per ``poll()`` at most (the runner's loop must not stall on a burst)."""


class SiteCorrelation:
    """Indicator messages out, campaign notices in, for one site's pipeline."""

    def __init__(
        self, config: CorrelationConfig, kafka: KafkaSettings, tracker: IncidentTracker
    ) -> None:
        self.config = config
        self.kafka = kafka
        self.tracker = tracker
        self.site = tracker.config.site
        self._key = config.key()  # a missing/short key fails here, before anything is consumed
        self.notices_applied = 0
        self.notices_seen = 0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._assigned = False
        self._next_assign = 0.0
        self._sent: set[str] = set()
        """Incidents whose campaign record this process has sent (see the module docstring)."""

    # ------------------------------------------------------------------ out
    def indicator_messages(self, result: BatchResult) -> list[tuple[bytes | None, bytes]]:
        """One indicator message per incident record of the batch (key = incident id)."""
        fields = self.config.fields
        return [
            (
                r["incident_id"].encode(),
                orjson.dumps(indicator_message(r, self._key, fields, self.config.max_combinations)),
            )
            for r in result.incidents
        ]

    # ------------------------------------------------------------------ in
    def start(self) -> None:
        """Assign every partition of the campaigns topic from the beginning."""
        k = self.kafka
        options = k.consumer_options()
        conf = {**CONSUMER_DEFAULTS, **options}
        conf.update(
            {
                "bootstrap.servers": k.bootstrap_servers,
                "group.id": f"{k.group_id}-campaigns-unused",  # required by librdkafka; no commits
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        self._consumer = Consumer(conf)
        self._producer = Producer(producer_config(k.bootstrap_servers, k.producer_options()))
        self._assign()

    def _assign(self) -> bool:
        """Assign the topic's partitions (False while it does not exist: retried every
        :data:`ASSIGN_RETRY_S`, so the scoring loop never waits on it)."""
        assert self._consumer is not None
        now = time.monotonic()
        if now < self._next_assign:
            return False
        self._next_assign = now + ASSIGN_RETRY_S
        try:
            meta = self._consumer.list_topics(self.kafka.campaigns_topic, timeout=2)
        except KafkaException as exc:
            log.warning("campaigns topic %s: %s", self.kafka.campaigns_topic, exc)
            return False
        topic = meta.topics.get(self.kafka.campaigns_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        self._consumer.assign(
            [
                TopicPartition(self.kafka.campaigns_topic, p, OFFSET_BEGINNING)
                for p in topic.partitions
            ]
        )
        self._assigned = True
        return True

    def poll(self) -> int:
        """Apply the notices waiting (at most :data:`POLL_MESSAGES`); how many raised an
        incident. Never blocks."""
        if self._consumer is None or self._producer is None:
            return 0
        if not self._assigned and not self._assign():
            return 0
        self._producer.poll(0)
        applied = []
        for msg in self._consumer.consume(POLL_MESSAGES, timeout=0):
            if msg.error() is not None:
                log.debug("campaigns: %s", msg.error())
                continue
            try:
                notice = orjson.loads(msg.value() or b"")
                if notice.get("site") != self.site:
                    continue
                self.notices_seen += 1
                iid = str(notice["incident_id"])
                record = self.tracker.set_campaign(
                    iid, notice["campaign"], again=iid not in self._sent
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                log.warning("campaigns: malformed notice skipped (%s)", exc)
                continue
            if record is not None:
                applied.append(record)
                if len(self._sent) >= 4 * self.tracker.config.max_open:
                    self._sent.clear()  # bounded; at worst a record is sent once more
                self._sent.add(iid)
        if applied:
            self.notices_applied += len(applied)
            for key, value in incident_messages(applied):
                self._producer.produce(self.kafka.incidents_topic, value, key)
            log.info("campaigns: %d incident records sent for cross-site notices", len(applied))
        return len(applied)

    def close(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._producer.flush(timeout_s)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:  # closing after a broker loss must not hide the real error
                log.warning("closing the campaigns consumer: %s", exc)
