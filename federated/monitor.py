"""Per-round observability of a federated run: rounds.jsonl, metrics.prom and an HTTP endpoint.

:class:`MonitoredStrategy` wraps any Flower strategy (FedMedian, FedAvg, ...) without changing
what it does: it watches the messages going out and the replies coming back, and hands them on
untouched. Per round it records how many sites were sampled, returned, failed (error reply, e.g.
a refused privacy budget or a crash) or timed out (no reply within the round timeout), the
weighted train and validation losses, each site's epsilon so far, the norm of each update
(local - global): the number that exposes a poisoned update, and what each site reports about
itself (local optimizer steps, lifetime privacy budget left).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federated.prometheus_metrics import FLMetrics

ROUNDS_FILE = "rounds.jsonl"
METRICS_FILE = "metrics.prom"


@dataclass
class RoundRecord:
    round: int
    started_at: float
    seconds: float = 0.0
    sampled: int = 0
    returned: int = 0
    failed: int = 0
    timed_out: int = 0
    failures: list[str] = field(default_factory=list)
    sites_returned: list[int] = field(default_factory=list)
    train_loss: float | None = None
    validation_loss: float | None = None
    public_loss: float | None = None
    epsilon: dict[str, float] = field(default_factory=dict)
    epsilon_max: float = 0.0
    update_norm: dict[str, float] = field(default_factory=dict)
    samples_per_s: float | None = None
    local_steps: dict[str, int] = field(default_factory=dict)
    budget_left_epsilon: dict[str, float] = field(default_factory=dict)


def _weighted(values: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in values)
    return sum(v * w for v, w in values) / total if total else None


def _metrics_of(msg: Message) -> MetricRecord:
    return next(iter(msg.content.metric_records.values()))


class RoundMonitor:
    """Collects the round records; writes them and the Prometheus metrics as rounds end."""

    def __init__(self, run_dir: Path, metrics: FLMetrics) -> None:
        self.run_dir = run_dir
        self.metrics = metrics
        self.records: list[RoundRecord] = []
        self.initial_public_loss: float | None = None
        self.epsilon: dict[str, float] = {}
        self._global: dict[str, np.ndarray] = {}
        (run_dir / ROUNDS_FILE).unlink(missing_ok=True)

    @property
    def current(self) -> RoundRecord:
        return self.records[-1]

    def round_started(self, server_round: int, arrays: ArrayRecord, sampled: int) -> None:
        self.records.append(RoundRecord(server_round, time.time(), sampled=sampled))
        self._global = {k: v.numpy() for k, v in arrays.items()}

    def train_replies(self, replies: list[Message]) -> None:
        rec = self.current
        losses, speeds = [], []
        for msg in replies:
            if msg.has_error():
                rec.failed += 1
                rec.failures.append(f"node {msg.metadata.src_node_id}: {msg.error.reason}")
                continue
            m = _metrics_of(msg)
            site = str(int(m["site-id"]))  # type: ignore[arg-type]
            rec.returned += 1
            rec.sites_returned.append(int(site))
            losses.append((float(m["train-loss"]), float(m["num-examples"])))  # type: ignore[arg-type]
            if float(m.get("samples-per-s", 0.0)):  # type: ignore[arg-type]
                speeds.append(float(m["samples-per-s"]))  # type: ignore[arg-type]
            if float(m.get("noise-multiplier", 0.0)) > 0:  # type: ignore[arg-type]
                self.epsilon[site] = float(m["epsilon"])  # type: ignore[arg-type]
            if "local-steps" in m:
                rec.local_steps[site] = int(m["local-steps"])  # type: ignore[arg-type]
            if "budget-left-epsilon" in m:
                rec.budget_left_epsilon[site] = float(m["budget-left-epsilon"])  # type: ignore[arg-type]
            arrays = next(iter(msg.content.array_records.values()))
            sq = sum(
                float(np.sum((v.numpy().astype(np.float64) - self._global[k]) ** 2))
                for k, v in arrays.items()
                if k in self._global
            )
            rec.update_norm[site] = float(np.sqrt(sq))
        rec.timed_out = max(0, rec.sampled - rec.returned - rec.failed)
        rec.train_loss = _weighted(losses)
        rec.samples_per_s = float(np.mean(speeds)) if speeds else None
        rec.sites_returned.sort()

    def evaluate_replies(self, replies: list[Message]) -> None:
        losses = [
            (float(_metrics_of(m)["val-loss"]), float(_metrics_of(m)["num-examples"]))  # type: ignore[arg-type]
            for m in replies
            if not m.has_error()
        ]
        self.current.validation_loss = _weighted(losses)

    def round_finished(self, server_round: int, public_loss: float) -> None:
        """Called last in a round (by the server-side evaluation): flush everything."""
        if server_round == 0:
            self.initial_public_loss = public_loss
            self.metrics.public_loss.set(public_loss)
            self._flush_textfile()
            return
        rec = self.current
        rec.public_loss = public_loss
        rec.seconds = time.time() - rec.started_at
        rec.epsilon = dict(sorted(self.epsilon.items(), key=lambda kv: int(kv[0])))
        rec.epsilon_max = max(self.epsilon.values(), default=0.0)
        with (self.run_dir / ROUNDS_FILE).open("a") as f:
            f.write(json.dumps(asdict(rec)) + "\n")
        m = self.metrics
        m.round.set(server_round)
        for state in ("sampled", "returned", "failed", "timed_out"):
            value = getattr(rec, state)
            m.clients.labels(state).set(value)
            m.clients_total.labels(state).inc(value)
        if rec.train_loss is not None:
            m.train_loss.set(rec.train_loss)
        if rec.validation_loss is not None:
            m.validation_loss.set(rec.validation_loss)
        m.public_loss.set(public_loss)
        for site, eps in rec.epsilon.items():
            m.epsilon.labels(site).set(eps)
        m.epsilon_max.set(rec.epsilon_max)
        for site, norm in rec.update_norm.items():
            m.update_norm.labels(site).set(norm)
        for site, steps in rec.local_steps.items():
            m.local_steps.labels(site).inc(steps)
        for site, left in rec.budget_left_epsilon.items():
            m.budget_left.labels(site).set(left)
        m.round_seconds.set(rec.seconds)
        self._flush_textfile()

    def privacy_reports(self, reports: dict[str, dict[str, float]]) -> None:
        """The sites' final reports (late rounds included) replace what the replies showed."""
        for site, report in reports.items():
            if report.get("noise-multiplier", 0.0) > 0:
                self.epsilon[site] = report["epsilon"]
                self.metrics.epsilon.labels(site).set(report["epsilon"])
        self.metrics.epsilon_max.set(max(self.epsilon.values(), default=0.0))
        self._flush_textfile()

    def site_publish(self, outcomes: dict[str, dict[str, Any]]) -> None:
        """What each site did with the final model (published, refused by its gate, error)."""
        for site, o in outcomes.items():
            kind = "published" if o.get("published") else "refused" if o.get("refused") else "error"
            self.metrics.site_versions.labels(site, kind).inc()
            if "served-after" in o:
                self.metrics.site_served_version.labels(site).set(float(o["served-after"]))
        self._flush_textfile()

    def _flush_textfile(self) -> None:
        self.metrics.write_textfile(self.run_dir / METRICS_FILE)


class MonitoredStrategy(Strategy):
    """Any strategy, observed. Aggregation is the wrapped strategy's, untouched."""

    def __init__(self, inner: Strategy, monitor: RoundMonitor) -> None:
        self.inner = inner
        self.monitor = monitor

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.monitor.round_started(server_round, arrays, len(messages))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.monitor.train_replies(replies)  # before: some strategies consume the arrays
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        self.monitor.evaluate_replies(replies)
        return self.inner.aggregate_evaluate(server_round, replies)


def public_evaluation(
    monitor: RoundMonitor, loss_fn: Callable[[ArrayRecord], float]
) -> Callable[[int, ArrayRecord], MetricRecord | None]:
    """The strategy's ``evaluate_fn``: server-side loss on public data, which also closes the
    round's record (Flower calls it last in every round, and once before round 1)."""

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        loss = loss_fn(arrays)
        monitor.round_finished(server_round, loss)
        return MetricRecord({"public-loss": loss})

    return evaluate


def summarize(records: list[RoundRecord]) -> dict[str, Any]:
    """Run-level numbers for result files and reports."""
    done = [r for r in records if r.seconds]
    return {
        "rounds_completed": len(done),
        "mean_round_seconds": float(np.mean([r.seconds for r in done])) if done else None,
        "first_round_validation_loss": done[0].validation_loss if done else None,
        "final_validation_loss": done[-1].validation_loss if done else None,
        "first_round_public_loss": done[0].public_loss if done else None,
        "final_public_loss": done[-1].public_loss if done else None,
        "site_rounds": {
            state: int(sum(getattr(r, state) for r in done))
            for state in ("sampled", "returned", "failed", "timed_out")
        },
    }
