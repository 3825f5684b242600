"""What a Kafka run did (:class:`RunSummary`), and the error that stops it safely."""

from __future__ import annotations

from dataclasses import dataclass, field

from morpheus_ext.errors import SecureAIError


class KafkaPipelineError(SecureAIError, RuntimeError):
    """The pipeline cannot go on safely (message is one user-facing line)."""


@dataclass
class RunSummary:
    """Counters of one run; :meth:`line` is what ``secureai run`` prints at the end.

    >>> s = RunSummary(events_in=10, scored=9, rejected=1, batches=1, commits=1, seconds=2.0)
    >>> s.line().split(", ")[:3]
    ['10 events: 9 scored', '1 dead-lettered', '1 batches']
    """

    events_in: int = 0
    scored: int = 0
    rejected: int = 0
    batches: int = 0
    commits: int = 0
    rebalances: int = 0
    inference_failures: int = 0
    aborted_transactions: int = 0
    dropped_on_revoke: int = 0
    left_unscored: int = 0
    partitions: set[str] = field(default_factory=set)
    seconds: float = 0.0
    drained: bool = False
    checkpoints: int = 0
    learned_only: int = 0
    """Fingerprinting: replayed events learned without emitting them (their outputs were
    committed after the last checkpoint)."""
    rescored: int = 0
    """Fingerprinting: replayed events emitted again without learning them (already held by the
    restored baselines)."""
    incident_updates: int = 0
    """Incident records emitted (opened, updated, closed or re-emitted on a replay)."""
    incident_checkpoints: int = 0
    window_rows: int = 0
    """Scored events kept in the site's training window."""
    window_rows_dropped: int = 0
    """Scored events the window writer could not keep (it was behind, or a write failed)."""

    @property
    def events_per_s(self) -> float:
        return self.events_in / self.seconds if self.seconds > 0 else 0.0

    def count(self, events: int, scored: int, rejected: int) -> None:
        """One batch delivered (or handed to the producer, in at-least-once mode)."""
        self.batches += 1
        self.events_in += events
        self.scored += scored
        self.rejected += rejected

    def line(self) -> str:
        parts = ",".join(sorted(self.partitions)) or "none"
        text = (
            f"{self.events_in} events: {self.scored} scored, {self.rejected} dead-lettered, "
            f"{self.batches} batches, {self.commits} commits, {self.rebalances} rebalances, "
            f"partitions {parts}, {self.events_per_s:,.0f} events/s"
        )
        if self.inference_failures:
            text += f", {self.inference_failures} failed inference attempts"
        if self.checkpoints:
            text += f", {self.checkpoints} checkpoints"
        if self.learned_only or self.rescored:
            text += (
                f", replay after restart: {self.learned_only} learned only, "
                f"{self.rescored} re-scored only"
            )
        if self.incident_updates:
            text += f", {self.incident_updates} incident updates"
        if self.window_rows or self.window_rows_dropped:
            text += f", {self.window_rows} kept in the training window"
            if self.window_rows_dropped:
                text += f" ({self.window_rows_dropped} not kept: writer behind)"
        if self.left_unscored:
            text += f", {self.left_unscored} events left for the next run"
        return text
