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
* ``query.publish`` (``publish.enabled``): the final global model; the site gates it on its own
  held-out window rows and publishes it into its own repository
  (:func:`federated.site_publish.publish_at_site`). The reply carries the site's privacy report
  too (``privacy``), so a publishing run asks no separate ``query`` at the end.

A site whose node config has ``window-dir`` trains on its own training window, read as of the
run's start (``window-end-ms`` in every message), and is named by ``site-name``.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    NODE_REPOSITORY,
    NODE_SITE,
    NODE_SITE_NAME,
    NODE_TRITON_URL,
    NODE_WINDOW_DIR,
    PRIVACY,
    PUBLISH_ACTION,
    RUN_CONFIG_PATH,
    RUN_DIR,
    WINDOW_END,
    load_run_config,
    normalizer_from_record,
)
from federated.site_round import Site, WindowSource, privacy_report
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


def window_source(context: Context, cfg: ConfigRecord) -> WindowSource | None:
    """The site's window as of the run's start, when its node config names one."""
    if NODE_WINDOW_DIR not in context.node_config:
        return None
    index = _site_index(context)
    name = str(context.node_config.get(NODE_SITE_NAME, f"site-{index}"))
    end_ms = int(cfg[WINDOW_END]) if WINDOW_END in cfg else None  # type: ignore[arg-type]
    until = datetime.now(UTC) if end_ms is None else datetime.fromtimestamp(end_ms / 1000, UTC)
    return WindowSource(Path(str(context.node_config[NODE_WINDOW_DIR])), name, until)


def _site(msg: Message, context: Context, config: FLConfig) -> Site:
    cfg: ConfigRecord = msg.content[CONFIG]  # type: ignore[assignment]
    normalizer = normalizer_from_record(cfg)
    window = window_source(context, cfg)
    if config.sites.method == "window" and window is None:
        raise ValueError(
            f"this run trains on the sites' windows, but node {_site_index(context)} has no "
            f"{NODE_WINDOW_DIR} in its node config"
        )
    return Site(config, _site_index(context), normalizer, ledger_dir(context, config), window)


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


@app.query(PUBLISH_ACTION)
def publish(msg: Message, context: Context) -> Message:
    from federated.site_publish import publish_at_site

    config = _config(context)
    site = _site(msg, context, config)
    cfg: ConfigRecord = msg.content[CONFIG]  # type: ignore[assignment]
    arrays: ArrayRecord = msg.content[ARRAYS]  # type: ignore[assignment]
    dp = _dp_state(context)
    provenance = {
        "kind": "federated",
        "fl_run_id": str(cfg[FL_RUN_ID]),
        "rounds": config.federation.rounds,
        "strategy": config.strategy.name,
        "site": site.name,
        "window": site.window_info,
        "dp": None
        if dp is None
        else {"epsilon_spent": dp.epsilon(), "delta": dp.delta, "accountant": "rdp"},
    }
    if NODE_REPOSITORY not in context.node_config:
        raise ValueError(f"node {site.index} has no {NODE_REPOSITORY} in its node config")
    triton = context.node_config.get(NODE_TRITON_URL)
    metrics, outcome = publish_at_site(
        site,
        config,
        arrays.to_torch_state_dict(),
        Path(str(context.node_config[NODE_REPOSITORY])),
        provenance,
        str(triton) if triton else None,
    )
    content = RecordDict(
        {
            METRICS: MetricRecord(dict(metrics)),
            CONFIG: ConfigRecord({"outcome": outcome, "site-name": site.name}),
            PRIVACY: MetricRecord(dict(privacy_report(site.index, dp))),
        }
    )
    return Message(content, reply_to=msg)
