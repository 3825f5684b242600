"""The ClientApp: the sidecar of a site. It trains the shared autoencoder on the site's data.

Flower calls it once per message, each time in a fresh invocation (a fresh process in the
deployment engine), so nothing may live in module globals between rounds: the DP accountant's
history goes in ``context.state`` (Flower keeps it per node for the whole run) and, durably, in
the site's privacy ledger. The site's index comes from the SuperNode's node config
(``partition-id``); the run's config file from the run config (``config-path``).

Three message types:

* ``train``: simulated faults, then :meth:`federated.site_round.Site.train` (DP-SGD unless the run
  switches DP off); a refused budget or a crash becomes an error reply the server counts.
* ``evaluate``: validation loss of the global model on the site's validation rows.
* ``query``: the site's privacy report for the run (epsilon, sigma, q, steps), asked once at
  the end so the manifest carries what every site really spent, late rounds included.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated.config import FLConfig
from federated.privacy import STATE_KEY, SitePrivacyState
from federated.protocol import (
    ARRAYS,
    CONFIG,
    FL_RUN_ID,
    METRICS,
    NODE_LEDGER_DIR,
    NODE_SITE,
    RUN_CONFIG_PATH,
    RUN_DIR,
    load_run_config,
    normalizer_from_record,
)
from federated.site_round import Site, privacy_report
from federated.stragglers import apply_faults

app = ClientApp()


def _config(context: Context) -> FLConfig:
    return load_run_config(str(context.run_config[RUN_CONFIG_PATH]))


def _site_index(context: Context) -> int:
    return int(context.node_config[NODE_SITE])


def ledger_dir(context: Context, config: FLConfig) -> Path:
    """Where this site's ledger lives: the node's own setting wins (a real site keeps its
    ledger on its own disk), then the run config, then the run directory."""
    if NODE_LEDGER_DIR in context.node_config:
        return Path(str(context.node_config[NODE_LEDGER_DIR]))
    if config.privacy.ledger_dir is not None:
        return config.privacy.ledger_dir
    return Path(str(context.run_config[RUN_DIR])) / "ledger"


def _site(msg: Message, context: Context, config: FLConfig) -> Site:
    normalizer = normalizer_from_record(msg.content[CONFIG])  # type: ignore[arg-type]
    return Site(config, _site_index(context), normalizer, ledger_dir(context, config))


def _dp_state(context: Context) -> SitePrivacyState | None:
    if STATE_KEY in context.state.config_records:
        return SitePrivacyState.from_record(context.state.config_records[STATE_KEY])
    return None


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = _config(context)
    cfg: ConfigRecord = msg.content[CONFIG]  # type: ignore[assignment]
    server_round = int(cfg["server-round"])  # type: ignore[arg-type]
    apply_faults(config.stragglers, _site_index(context), server_round, config.seed)
    site = _site(msg, context, config)
    arrays: ArrayRecord = msg.content[ARRAYS]  # type: ignore[assignment]
    update, dp = site.train(
        arrays.to_torch_state_dict(), server_round, str(cfg[FL_RUN_ID]), _dp_state(context)
    )
    if dp is not None:
        context.state[STATE_KEY] = dp.to_record()
    content = RecordDict(
        {ARRAYS: ArrayRecord(update.state_dict), METRICS: MetricRecord(dict(update.metrics))}
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config = _config(context)
    site = _site(msg, context, config)
    arrays: ArrayRecord = msg.content[ARRAYS]  # type: ignore[assignment]
    metrics = site.evaluate(arrays.to_torch_state_dict())
    return Message(RecordDict({METRICS: MetricRecord(dict(metrics))}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    report = privacy_report(_site_index(context), _dp_state(context))
    return Message(RecordDict({METRICS: MetricRecord(dict(report))}), reply_to=msg)
