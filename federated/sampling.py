"""Repeatable partial participation: sites are sampled in site order, not node-id order.

Flower's strategies sample with ``random.sample(grid.get_node_ids(), k)``. The server seeds
:mod:`random`, but node ids are random 64-bit numbers drawn anew by every SuperLink (and every
simulation), so the same seed would pick different *sites* in every run. This grid wrapper
lists the nodes ordered by their site index (asked once per node with a ``query`` message and
cached), so a seed picks the same sites in every run of a config, in simulation and deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federated.protocol import CONFIG, FL_RUN_ID

_UNKNOWN = 1 << 30


class SiteOrderedGrid(Grid):
    """Delegates to ``inner``; only ``get_node_ids`` changes (site order)."""

    def __init__(self, inner: Grid, fl_run_id: str, timeout: float) -> None:
        self.inner = inner
        self.fl_run_id = fl_run_id
        self.timeout = timeout
        self.sites: dict[int, int] = {}

    def _learn(self, nodes: list[int]) -> None:
        unknown = [n for n in nodes if n not in self.sites]
        if not unknown:
            return
        messages = [
            Message(
                RecordDict({CONFIG: ConfigRecord({FL_RUN_ID: self.fl_run_id})}),
                dst_node_id=node,
                message_type=MessageType.QUERY,
            )
            for node in unknown
        ]
        for node in unknown:
            self.sites[node] = _UNKNOWN  # asked once: a silent node is not asked every round
        for reply in self.inner.send_and_receive(messages, timeout=self.timeout):
            if not reply.has_error():
                metrics = next(iter(reply.content.metric_records.values()))
                self.sites[reply.metadata.src_node_id] = int(metrics["site-id"])  # type: ignore[arg-type]

    def get_node_ids(self) -> Iterable[int]:
        nodes = list(self.inner.get_node_ids())
        self._learn(nodes)
        # Known sites first, in site order; a node that did not answer goes last.
        return sorted(nodes, key=lambda n: (self.sites.get(n, _UNKNOWN), n))

    # ---- everything else is the wrapped grid's
    def set_run(self, run: Any) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Any:
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.inner.send_and_receive(messages, timeout=timeout)
