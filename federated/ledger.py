"""A site's privacy ledger: the epsilon it has spent, per run, and the budget it will not pass.

One JSON file per site, written atomically. Runs compose by basic composition (epsilons add up,
deltas add up): loose, but valid for any mix of runs and accountants. Before every round the
site projects the epsilon its run will have *after* that round; if the lifetime total would
exceed the budget, it refuses to train (:class:`PrivacyBudgetExceeded`), which the server sees
as a failed reply with the message below.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "site-0.json"
>>> ledger = PrivacyLedger.open(path, site="site-0", budget_epsilon=4.0)
>>> ledger.record("run-a", epsilon=3.0, delta=1e-5, details={})
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
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from morpheus_ext.errors import SecureAIError


class PrivacyBudgetExceeded(SecureAIError, RuntimeError):
    """The site's lifetime privacy budget does not allow another round."""


@dataclass
class PrivacyLedger:
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

    def record(
        self, run_id: str, epsilon: float | None, delta: float | None, details: dict[str, Any]
    ) -> None:
        """Store the run's epsilon so far (``None``: a run without DP, not counted)."""
        self.runs[run_id] = {
            "epsilon": epsilon,
            "delta": delta,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
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
