"""Repeatable partial participation: sites are sampled in site order, not node-id order.

Flower's strategies sample with ``random.sample(grid.get_node_ids(), k)``. The server seeds
:mod:`random`, but node ids are random 64-bit numbers drawn anew by every SuperLink (and every
simulation), so the same seed would pick different *sites* in every run. This grid wrapper
lists the nodes ordered by their site index (asked once per node with a ``query`` message and
cached), so a seed picks the same sites in every run of a config, in simulation and deployment.

:class:`PromptGrid` is the other wrapper every run uses: it waits for replies in short pulls.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federated.protocol import CONFIG, FL_RUN_ID

_UNKNOWN = 1 << 30
PULL_S = 0.25
"""How often :class:`PromptGrid` asks the SuperLink for replies."""


class DelegatingGrid(Grid):
    """Every call goes to ``inner``: the base of the wrappers below, which change one thing."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner

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

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.inner.send_and_receive(messages, timeout=timeout)


class PromptGrid(DelegatingGrid):
    """``send_and_receive`` pulls the replies every ``pull_s`` (Flower's deployment grid,
    ``HttpGrid``, sleeps 3 s between pulls).

    Why: a round ends when its last reply arrives, and the ServerApp then sleeps out the rest
    of its 3 s before it sees it; every round, the final query and the publish each lose up to
    3 s that way. A pull is one small request to the SuperLink on the same host or network.
    Same contract as Flower's: push, then pull until every reply is in or ``timeout`` passed
    (``None``: no limit); the replies that arrived are returned.
    """

    def __init__(self, inner: Grid, pull_s: float = PULL_S) -> None:
        super().__init__(inner)
        self.pull_s = pull_s

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        waiting = set(self.inner.push_messages(messages))
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while timeout is None or time.time() < end:
            pulled = list(self.inner.pull_messages(waiting))
            replies.extend(pulled)
            waiting.difference_update(m.metadata.reply_to_message_id for m in pulled)
            if not waiting:
                break
            time.sleep(self.pull_s)
        return replies


class SiteOrderedGrid(DelegatingGrid):
    """Delegates to ``inner``; only ``get_node_ids`` changes (site order)."""

    def __init__(self, inner: Grid, fl_run_id: str, timeout: float) -> None:
        super().__init__(inner)
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
