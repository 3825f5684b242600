"""A Flower ``Grid`` whose nodes are this process's ClientApp handlers (a fake transport for
unit tests of our server and client logic; the real engines are tested in test_fl_simulation
and test_fl_deployment)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from federated import client

HANDLERS: dict[str, Callable[[Message, Context], Message]] = {
    "train": client.train,
    "evaluate": client.evaluate,
    "query": client.query,
    "query.publish": client.publish,
}


class LoopbackGrid(Grid):
    """A Grid whose nodes are this process's ClientApp handlers."""

    def __init__(
        self,
        n_sites: int,
        run_config: dict[str, Any],
        late: Callable[[int, str], bool] = lambda site, kind: False,
        on_round: Callable[[int], None] | None = None,
        node_ids: list[int] | None = None,
        node_config: Callable[[int], dict[str, Any]] = lambda site: {},
    ) -> None:
        ids = node_ids or [100 + i for i in range(n_sites)]
        self.contexts = {
            ids[i]: Context(
                run_id=1,
                node_id=ids[i],
                node_config={"partition-id": i, "num-partitions": n_sites, **node_config(i)},
                state=RecordDict(),
                run_config=run_config,
            )
            for i in range(n_sites)
        }
        self.late = late
        self.on_round = on_round
        self.train_calls = 0

    def set_run(self, run: Any) -> None:  # pragma: no cover - not used in-process
        pass

    @property
    def run(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # pragma: no cover
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            kind = msg.metadata.message_type
            context = self.contexts[msg.metadata.dst_node_id]
            site = int(context.node_config["partition-id"])
            if kind == "train" and self.on_round is not None:
                self.on_round(int(msg.content["config"]["server-round"]))  # type: ignore[arg-type]
            try:
                reply = HANDLERS[kind](msg, context)
            except Exception as exc:
                reply = Message(Error(code=1, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            if not self.late(site, kind):
                replies.append(reply)
        return replies
