"""The ServerApp: one federated run, from the fixed public inputs to a servable model version.

1. Read the run's resolved config (run config ``config-path``) and seed everything; Flower
   samples sites with :mod:`random` over :class:`federated.sampling.SiteOrderedGrid`'s site
   order, so a seed picks the same sites in every run (partial participation is repeatable).
2. Fit the normalizer on the public sample (never on a site's rows) and build the initial
   model from the run seed: every site starts from the same weights in the same feature space.
   With ``initial_model`` (warm start, :mod:`federated.warm_start`) both come from a served
   version instead: its ``dfp_autoencoder`` weights and the served ``dfp_encoder``.
3. Run the configured robust strategy (:mod:`federated.strategy`) wrapped by the round monitor
   (:mod:`federated.monitor`): ``rounds.jsonl``, ``metrics.prom`` after every round, and an
   HTTP ``/metrics`` endpoint while the run lasts when a port is configured. Each round waits
   at most ``round_timeout_s`` for replies, so stragglers cannot stall it.
4. Ask every site for its privacy report (with ``publish.enabled`` it comes with the site's
   publish reply: one round trip, not two), export the final global model through the existing
   export path (:mod:`federated.final_model`) and write ``fl_result.json`` with
   ``status: completed``, the proof a run *finished* (``flwr run`` exits 0 even when it failed).
"""

from __future__ import annotations

import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.superlink.grid import HttpGrid

from federated.config import FLConfig
from federated.final_model import export_global_model
from federated.ledger import new_run_id
from federated.monitor import MonitoredStrategy, RoundMonitor, public_evaluation, summarize
from federated.pretrain import INITIAL_WEIGHTS_FILE, pretrain_on_public
from federated.privacy import ACCOUNTANT
from federated.prometheus_metrics import FLMetrics
from federated.protocol import (
    ARRAYS,
    CONFIG,
    FL_RUN_ID,
    METRICS,
    PRIVACY,
    PUBLISH_ACTION,
    RUN_CONFIG_PATH,
    RUN_DIR,
    WINDOW_END,
    load_run_config,
    normalizer_to_record,
)
from federated.sampling import PromptGrid, SiteOrderedGrid
from federated.site_split import public_inputs
from federated.strategy import build_strategy
from federated.warm_start import InitialModel, load_initial_model
from modelling.models import build_autoencoder
from modelling.rundir import environment, write_json
from modelling.training import evaluate_loss, seed_everything
from morpheus_ext.feature_spec import load_spec

RESULT_FILE = "fl_result.json"

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_dir = Path(str(context.run_config[RUN_DIR]))
    config = load_run_config(str(context.run_config[RUN_CONFIG_PATH]))
    try:
        run_federated(grid, config, run_dir, flower_run_id=int(context.run_id))
    except Exception as exc:
        write_json(
            run_dir / RESULT_FILE,
            {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            },
        )
        raise


def _sorted_reports(reports: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return dict(sorted(reports.items(), key=lambda kv: int(kv[0])))


def _report(metrics: Any) -> tuple[str, dict[str, float]]:
    """A privacy report record as ``(site id, {key: value})``."""
    return str(int(metrics["site-id"])), {k: float(v) for k, v in metrics.items()}


def collect_privacy_reports(
    grid: Grid, fl_run_id: str, timeout: float, nodes: list[int] | None = None
) -> dict[str, dict[str, float]]:
    """One ``query`` message per connected site (or per node of ``nodes``); each answers from
    its own accountant."""
    messages = [
        Message(
            RecordDict({CONFIG: ConfigRecord({FL_RUN_ID: fl_run_id})}),
            dst_node_id=node,
            message_type=MessageType.QUERY,
        )
        for node in (grid.get_node_ids() if nodes is None else nodes)
    ]
    if not messages:
        return {}
    reports: dict[str, dict[str, float]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue
        site, report = _report(next(iter(reply.content.metric_records.values())))
        reports[site] = report
    return _sorted_reports(reports)


def publish_at_sites(
    grid: Grid, arrays: ArrayRecord, message_config: ConfigRecord, timeout: float
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]], list[int]]:
    """``query.publish`` to every connected site with the final weights: their outcomes, the
    privacy reports their replies carried, and the nodes whose reply carried none (an error
    reply, or a site that did not answer): ask those with :func:`collect_privacy_reports`."""
    nodes = list(grid.get_node_ids())
    messages = [
        Message(
            RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(dict(message_config))}),
            dst_node_id=node,
            message_type=f"{MessageType.QUERY}.{PUBLISH_ACTION}",
        )
        for node in nodes
    ]
    outcomes: dict[str, dict[str, Any]] = {}
    reports: dict[str, dict[str, float]] = {}
    reported: set[int] = set()
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            outcomes[f"node-{reply.metadata.src_node_id}"] = {
                "outcome": f"error: {reply.error.reason}",
                "published": 0,
                "refused": 0,
            }
            continue
        metrics = dict(reply.content.metric_records[METRICS])
        info = dict(reply.content.config_records[CONFIG])
        outcomes[str(info["site-name"])] = {**metrics, "outcome": str(info["outcome"])}
        if PRIVACY in reply.content.metric_records:
            site, report = _report(reply.content.metric_records[PRIVACY])
            reports[site] = report
            reported.add(reply.metadata.src_node_id)
    missing = [n for n in nodes if n not in reported]
    return dict(sorted(outcomes.items())), _sorted_reports(reports), missing


def dp_section(config: FLConfig, reports: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """The manifest's ``dp`` block (``None`` when the run had DP switched off)."""
    p = config.privacy
    if not p.enabled:
        return None
    sites = {
        site: {
            "noise_multiplier": r["noise-multiplier"],
            "sample_rate": r["sample-rate"],
            "steps": int(r["steps"]),
            "rounds_trained": int(r["rounds-trained"]),
            "epsilon": r["epsilon"],
        }
        for site, r in reports.items()
    }
    spent = {site: s["epsilon"] for site, s in sites.items()}
    return {
        "accountant": ACCOUNTANT,
        "mechanism": "DP-SGD per site (Opacus: Poisson sampling, per-sample clipping, "
        "Gaussian noise)",
        "privacy_unit": "one event (row) of a site's data",
        "noise_multiplier": {site: s["noise_multiplier"] for site, s in sites.items()},
        "max_grad_norm": p.max_grad_norm,
        "delta": p.delta,
        "target_epsilon": p.target_epsilon,
        "epsilon_spent": spent,
        "epsilon_max": max(spent.values(), default=0.0),
        "sites": sites,
    }


def initial_weights(
    config: FLConfig, width: int, public_normalized: np.ndarray, warm: InitialModel | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Round 1's global weights and the ``public_pretrain`` record of ``fl_result.json``.

    A warm start's served weights; else the seeded random model, pretrained on the public
    sample when ``public.pretrain`` is set (no privacy cost: the DP rounds then fine-tune)."""
    if warm is not None:
        skipped = {"skipped": "warm start: the initial model is already trained"}
        return warm.state_dict, None if config.public.pretrain is None else skipped
    if config.public.pretrain is None:
        return build_autoencoder(config.model, width, config.seed).state_dict(), None
    if public_normalized.shape[1] != width:
        raise ValueError(f"public rows have width {public_normalized.shape[1]}, model {width}")
    return pretrain_on_public(
        config.model, public_normalized, config.public.pretrain, config.seed, config.local.threads
    )


def run_federated(
    grid: Grid, config: FLConfig, run_dir: Path, flower_run_id: int | None = None
) -> dict[str, Any]:
    started = time.time()
    fl_run_id = new_run_id(run_dir.name)  # unique per instance: the ledgers' key
    write_json(run_dir / RESULT_FILE, {"status": "running", "fl_run_id": fl_run_id})
    seed_everything(config.seed, config.local.threads)
    random.seed(config.seed)

    spec = load_spec(config.data.spec)
    warm = (
        None
        if config.initial_model is None
        else load_initial_model(config.initial_model, config.model, spec, config.public.encoder)
    )
    # Warm start: the served version's weights *and* its encoder (one feature space with it).
    encoder = config.public.encoder if warm is None else warm.encoder_path
    public = public_inputs(config, spec, encoder)
    np.savez(
        run_dir / "normalizer.npz",
        center=public.normalizer.center,
        scale=public.normalizer.scale,
        clip=public.normalizer.clip,
    )
    initial_state, pretrain = initial_weights(config, spec.tensor_width, public.normalized, warm)
    if pretrain is not None and warm is None:
        torch.save(initial_state, run_dir / INITIAL_WEIGHTS_FILE)  # the audit starts there too
    initial_arrays = ArrayRecord(initial_state)
    initial_info = None if warm is None else warm.info

    metrics = FLMetrics()
    metrics.info.labels(
        fl_run_id, config.strategy.name, "on" if config.privacy.enabled else "off"
    ).set(1)
    metrics.rounds_planned.set(config.federation.rounds)
    http = None
    if config.monitoring.metrics_port is not None:
        http = metrics.serve(config.monitoring.metrics_port, config.monitoring.metrics_host)
    try:
        monitor = RoundMonitor(run_dir, metrics)
        strategy = MonitoredStrategy(build_strategy(config.strategy, config.federation), monitor)

        def public_loss(arrays: ArrayRecord) -> float:
            model = build_autoencoder(config.model, spec.tensor_width)
            model.load_state_dict(arrays.to_torch_state_dict())
            return evaluate_loss(model, public.normalized)

        # Every message carries the run id, the normalizer and the run's start: window sites
        # read their windows as of then (a fixed dataset for the whole run).
        message_config = normalizer_to_record(
            public.normalizer,
            ConfigRecord({FL_RUN_ID: fl_run_id, WINDOW_END: int(started * 1000)}),
        )
        fed = config.federation
        if isinstance(grid, HttpGrid):  # deployment: replies within 0.25 s, not after 3 s
            grid = PromptGrid(grid)  # (simulation's InMemoryGrid already pulls every 0.1 s)
        partial = fed.fraction_train < 1 or 0 < fed.fraction_evaluate < 1
        # Site order only matters when a subset is sampled; it costs one query per node.
        ordered = SiteOrderedGrid(grid, fl_run_id, fed.round_timeout_s) if partial else grid
        result = strategy.start(
            grid=ordered,
            initial_arrays=initial_arrays,
            num_rounds=fed.rounds,
            timeout=fed.round_timeout_s,
            train_config=message_config,
            evaluate_config=ConfigRecord(dict(message_config)),
            evaluate_fn=public_evaluation(monitor, public_loss),
        )
        # No round aggregated anything (every site failed): the initial weights stand.
        final_arrays = result.arrays if len(result.arrays) else initial_arrays
        site_publish = None
        if config.publish.enabled:
            # The publish replies carry the privacy reports; only the sites whose reply did not
            # are asked separately.
            site_publish, reports, missing = publish_at_sites(
                grid, final_arrays, message_config, fed.round_timeout_s * 2
            )
            reports = _sorted_reports(
                {
                    **reports,
                    **collect_privacy_reports(grid, fl_run_id, fed.round_timeout_s, missing),
                }
            )
        else:
            reports = collect_privacy_reports(ordered, fl_run_id, fed.round_timeout_s)
        monitor.privacy_reports(reports)
        summary = summarize(monitor.records)
        dp = dp_section(config, reports)
        fl_info = {
            "fl_run_id": fl_run_id,
            "flower_run_id": flower_run_id,
            "rounds": config.federation.rounds,
            "rounds_completed": summary["rounds_completed"],
            "strategy": config.strategy.name,
            "initial_model": initial_info,
            "sites": len(reports),
            "metrics": {
                "final_validation_loss": summary["final_validation_loss"],
                "final_public_loss": summary["final_public_loss"],
            },
            "dp": dp,
        }
        if site_publish is not None:
            fl_info["site_publish"] = site_publish
            monitor.site_publish(site_publish)
        final_state = final_arrays.to_torch_state_dict()
        torch.save(final_state, run_dir / "global_model.pt")
        repository, calib, parity = export_global_model(
            run_dir, config, spec, public, final_state, fl_info
        )
    finally:
        if http is not None:
            http.shutdown()
            http.server_close()
    doc = {
        "status": "completed",
        "fl_run_id": fl_run_id,
        "flower_run_id": flower_run_id,
        "seconds": time.time() - started,
        "seeds": {"global": config.seed, "model_init": None if warm else config.seed},
        "environment": environment(),
        "public": public.info,
        "initial_model": initial_info,
        "public_pretrain": pretrain,
        "initial_public_loss": monitor.initial_public_loss,
        "summary": summary,
        "privacy_reports": reports,
        "dp": dp,
        "site_publish": site_publish,
        "calibration": calib.summary(),
        "onnx_parity_max_abs_diff": parity,
        "model_repository": str(repository),
    }
    write_json(run_dir / RESULT_FILE, doc)
    return doc
