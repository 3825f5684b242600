"""Prometheus metrics of a federated run: one catalogue, in its own registry.

Same conventions as the pipeline's catalogue (``morpheus_ext.prometheus_metrics``): ``secureai_``
prefix,
``_total`` counters, ``_seconds`` units. The ServerApp is a per-run process, so an HTTP
endpoint only lives while the run does: the server therefore also rewrites a node-exporter
style textfile (``metrics.prom`` in the run directory) after every round, which outlives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.exposition import write_to_textfile

CLIENT_STATES = ("sampled", "returned", "failed", "timed_out")


class FLMetrics:
    """All metrics of one run, in a private registry (several runs may share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Gauge(
            "secureai_fl_run_info",
            "Constant 1, labelled with the run's identity and settings.",
            ["fl_run_id", "strategy", "dp"],
            registry=r,
        )
        self.round = Gauge("secureai_fl_round", "Last completed round.", registry=r)
        self.rounds_planned = Gauge(
            "secureai_fl_rounds_planned", "Rounds the run will do.", registry=r
        )
        self.clients = Gauge(
            "secureai_fl_round_clients",
            "Sites in the last round, by state (sampled | returned | failed | timed_out).",
            ["state"],
            registry=r,
        )
        self.clients_total = Counter(
            "secureai_fl_clients_total",
            "Site-rounds since the run started, by state.",
            ["state"],
            registry=r,
        )
        self.train_loss = Gauge(
            "secureai_fl_train_loss",
            "Mean local training loss of the last round (weighted by rows).",
            registry=r,
        )
        self.validation_loss = Gauge(
            "secureai_fl_validation_loss",
            "Validation loss of the global model on the sites' validation rows (weighted).",
            registry=r,
        )
        self.public_loss = Gauge(
            "secureai_fl_public_loss",
            "Loss of the global model on the run's public sample (server side).",
            registry=r,
        )
        self.epsilon = Gauge(
            "secureai_fl_epsilon",
            "Privacy spent by a site in this run so far (RDP accountant, at the run's delta).",
            ["site"],
            registry=r,
        )
        self.epsilon_max = Gauge(
            "secureai_fl_epsilon_max", "Largest epsilon spent by any site so far.", registry=r
        )
        self.round_seconds = Gauge(
            "secureai_fl_round_duration_seconds",
            "Wall time of the last round (sampling to evaluation).",
            registry=r,
        )
        self.update_norm = Gauge(
            "secureai_fl_update_norm",
            "L2 norm of a site's last update (local - global), seen by the server.",
            ["site"],
            registry=r,
        )
        # What the sites (ClientApps) report in their train replies, relayed per site: the
        # client side runs one short process per message, so it has no endpoint to scrape
        # (each site also rewrites its own textfile, see ClientMetrics).
        self.local_steps = Counter(
            "secureai_fl_local_steps_total",
            "Local optimizer steps a site reports having taken, summed over the run's rounds.",
            ["site"],
            registry=r,
        )
        self.budget_left = Gauge(
            "secureai_fl_budget_left_epsilon",
            "Lifetime privacy budget a site has left (its ledger, after its last round).",
            ["site"],
            registry=r,
        )

        self.site_versions = Counter(
            "secureai_fl_site_versions_total",
            "Final models the sites gated at the end of the run, by outcome "
            "(published | refused | error).",
            ["site", "outcome"],
            registry=r,
        )
        self.site_served_version = Gauge(
            "secureai_fl_site_served_version",
            "The dfp_autoencoder version a site serves after the run's publish step.",
            ["site"],
            registry=r,
        )

    def write_textfile(self, path: Path) -> None:
        """Atomic rewrite (temp file + rename), safe for a node-exporter textfile collector."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Start the HTTP endpoint; returns the server (``.shutdown()`` it at the end)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


class ClientMetrics:
    """A site's own view (the ClientApp side), rewritten as a textfile after each local round.

    Flower runs the ClientApp once per message, in a fresh process in the deployment engine,
    so nothing on the client side lives long enough to be scraped: the site rewrites
    ``<ledger>.prom`` next to its privacy ledger (its own disk), for a node-exporter textfile
    collector on the site's host. The same numbers reach the coordinator in the train reply
    (``local-steps``, ``epsilon``, ``budget-left-epsilon``) and are exported there per site
    by :class:`FLMetrics`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.round = Gauge(
            "secureai_fl_client_round", "Last round this site trained.", ["site"], registry=r
        )
        self.local_steps = Gauge(
            "secureai_fl_client_local_steps",
            "Local optimizer steps of the site's last round.",
            ["site"],
            registry=r,
        )
        self.run_local_steps = Gauge(
            "secureai_fl_client_run_local_steps",
            "Local optimizer steps of the site in the current run so far (DP accountant).",
            ["site"],
            registry=r,
        )
        self.epsilon = Gauge(
            "secureai_fl_client_epsilon",
            "Privacy spent by the site in the current run so far (0 without DP).",
            ["site"],
            registry=r,
        )
        self.budget = Gauge(
            "secureai_fl_client_budget_epsilon",
            "The site's lifetime privacy budget (its ledger).",
            ["site"],
            registry=r,
        )
        self.budget_left = Gauge(
            "secureai_fl_client_budget_left_epsilon",
            "Lifetime privacy budget the site has left after its last round.",
            ["site"],
            registry=r,
        )

    def record_round(
        self,
        site: str,
        server_round: int,
        local_steps: int,
        run_steps: int,
        epsilon: float,
        budget: float,
        budget_left: float,
    ) -> None:
        self.round.labels(site).set(server_round)
        self.local_steps.labels(site).set(local_steps)
        self.run_local_steps.labels(site).set(run_steps)
        self.epsilon.labels(site).set(epsilon)
        self.budget.labels(site).set(budget)
        self.budget_left.labels(site).set(budget_left)

    def write_textfile(self, path: Path) -> None:
        """Atomic rewrite (temp file + rename), safe for a node-exporter textfile collector."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
