"""A site's privacy ledger: the epsilon it has spent, per run, and the budget it will not pass.

One JSON file per site, on the site's own disk, written atomically. It is kept *by site*: every
federated run instance that trains on the site's data adds its own entry, keyed by a run id that
is unique per instance (:func:`new_run_id`; re-running into the same run directory is a new
instance, never an overwrite), so the lifetime total survives restarts and re-runs. Runs
compose by basic composition (epsilons add up, deltas add up): loose, but valid for any mix of
runs and accountants.

Two checks, both before any training step: when a run first samples the site, the epsilon the
run is *planned* to reach (its noise is sized for it) must fit the budget
(:meth:`PrivacyLedger.check_run`), so a run that cannot finish is refused before it starts; and
before every round the site projects the epsilon its run will have *after* that round
(:meth:`PrivacyLedger.check`). A refusal is :class:`PrivacyBudgetExceeded`, which the server sees
as a failed reply with the message below.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "site-0.json"
>>> ledger = PrivacyLedger.open(path, site="site-0", budget_epsilon=4.0)
>>> ledger.record("run-a", epsilon=3.0, delta=1e-5, details={})
>>> try:
...     ledger.check_run("run-b", planned_epsilon=3.0)
... except PrivacyBudgetExceeded as exc:
...     print(str(exc)[:57])
site site-0 refuses run run-b before training: the run is
>>> ledger.check("run-b", projected_epsilon=0.5, round_number=1)
>>> try:
...     ledger.check("run-b", projected_epsilon=1.5, round_number=2)
... except PrivacyBudgetExceeded as exc:
...     print(str(exc)[:71])
site site-0 refuses round 2 of run run-b: its epsilon would reach 4.500
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from morpheus_ext.errors import SecureAIError


class PrivacyBudgetExceeded(SecureAIError, RuntimeError):
    """The site's lifetime privacy budget does not allow another round."""


def new_run_id(name: str) -> str:
    """A run instance's id: ``<name>.<UTC time>-<4 hex>``, unique even when a run directory is
    reused, so no instance can overwrite another's ledger entry.

    >>> new_run_id("fed_dp_small").startswith("fed_dp_small.")
    True
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}.{stamp}-{secrets.token_hex(2)}"


class LedgerNotFound(SecureAIError, FileNotFoundError):
    """No ledger where the user pointed (message names the path and what was looked for)."""


@dataclass
class PrivacyLedger:
    """One site's lifetime privacy spend; ``runs`` maps run instance id -> its entry."""

    path: Path
    site: str
    budget_epsilon: float
    runs: dict[str, dict[str, Any]]

    @classmethod
    def open(cls, path: Path, site: str, budget_epsilon: float) -> PrivacyLedger:
        """Load the site's ledger (or start an empty one). The budget stored in the file wins
        over the configured one when it is lower: a run config cannot raise a site's budget."""
        runs: dict[str, dict[str, Any]] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            runs = doc.get("runs", {})
            budget_epsilon = min(budget_epsilon, float(doc.get("budget_epsilon", budget_epsilon)))
        return cls(path, site, budget_epsilon, runs)

    def spent(self, exclude_run: str | None = None) -> tuple[float, float]:
        """(epsilon, delta) of all DP runs but ``exclude_run``, by basic composition."""
        eps = delta = 0.0
        for run_id, entry in self.runs.items():
            if run_id == exclude_run or entry.get("epsilon") is None:
                continue
            eps += float(entry["epsilon"])
            delta += float(entry["delta"])
        return eps, delta

    def check(self, run_id: str, projected_epsilon: float, round_number: int) -> None:
        """Raise unless this run may reach ``projected_epsilon``."""
        earlier, _ = self.spent(exclude_run=run_id)
        total = earlier + projected_epsilon
        if total > self.budget_epsilon + 1e-9:
            raise PrivacyBudgetExceeded(
                f"site {self.site} refuses round {round_number} of run {run_id}: its epsilon "
                f"would reach {total:.3f} (this run {projected_epsilon:.3f} + earlier runs "
                f"{earlier:.3f}), over the site's budget of {self.budget_epsilon:.3f} "
                f"(ledger {self.path}). No more training on this site's data without a new "
                "budget from its data owner."
            )

    def check_run(self, run_id: str, planned_epsilon: float) -> None:
        """Refuse a run, before its first step here, whose planned epsilon does not fit."""
        earlier, _ = self.spent(exclude_run=run_id)
        if earlier + planned_epsilon > self.budget_epsilon + 1e-9:
            raise PrivacyBudgetExceeded(
                f"site {self.site} refuses run {run_id} before training: the run is planned to "
                f"spend epsilon {planned_epsilon:.3f} and earlier runs spent {earlier:.3f}, "
                f"{earlier + planned_epsilon:.3f} in all, over the site's budget of "
                f"{self.budget_epsilon:.3f} (ledger {self.path}). Lower privacy.target_epsilon "
                f"to at most {max(0.0, self.budget_epsilon - earlier):.3f} or ask the site's "
                "data owner for a new budget."
            )

    def history(self) -> list[dict[str, Any]]:
        """The entries oldest first (by their last update), each with its ``run_id``."""
        rows = [{"run_id": run_id, **entry} for run_id, entry in self.runs.items()]
        return sorted(
            rows, key=lambda r: (str(r.get("started", r.get("updated", ""))), r["run_id"])
        )

    def record(
        self, run_id: str, epsilon: float | None, delta: float | None, details: dict[str, Any]
    ) -> None:
        """Store the run's epsilon so far (``None``: a run without DP, not counted)."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")  # orders the history
        started = self.runs.get(run_id, {}).get("started", now)
        self.runs[run_id] = {
            "epsilon": epsilon,
            "delta": delta,
            "started": started,
            "updated": now,
            **details,
        }
        self.save()

    def save(self) -> None:
        eps, delta = self.spent()
        doc = {
            "site": self.site,
            "budget_epsilon": self.budget_epsilon,
            "spent_epsilon": eps,
            "spent_delta": delta,
            "composition": "basic (sum over runs)",
            "runs": self.runs,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)


def read_ledgers(where: Path, site: str | None = None) -> list[PrivacyLedger]:
    """The ledgers in folder ``where`` (or the one file ``where``), optionally one site's.

    Read-only: the budget is the one stored in each file.
    """
    if where.is_file():
        paths = [where]
    elif where.is_dir():
        paths = sorted(p for p in where.glob("*.json") if not p.name.startswith("."))
    else:
        raise LedgerNotFound(f"no ledger at {where}: give a site's ledger file or its folder")
    ledgers = []
    for path in paths:
        doc = json.loads(path.read_text())
        if "runs" not in doc or "site" not in doc:
            continue
        ledgers.append(ledger_from_doc(path, doc))
    if site is not None:
        ledgers = [led for led in ledgers if led.site == site]
    if not ledgers:
        wanted = f"site {site!r}" if site else "any site"
        raise LedgerNotFound(f"no ledger of {wanted} in {where}")
    return ledgers


def ledger_from_doc(path: Path, doc: dict[str, Any]) -> PrivacyLedger:
    """A ledger from its JSON document, as stored."""
    return PrivacyLedger(path, str(doc["site"]), float(doc["budget_epsilon"]), dict(doc["runs"]))
