"""Run directories of federated runs: before (resolved config) and after (checks, test metrics).

Shared by the simulation and deployment launchers, so both leave the same files behind:

* ``config.yaml``: the resolved config the ServerApp and every ClientApp read (with a warm
  start, ``initial_model`` pinned to a version number);
* ``fl_result.json`` (written by the ServerApp), ``rounds.jsonl``, ``metrics.prom``;
* ``model_repository/``: the exported global model with its manifest;
* ``evaluation/``: test-set metrics and report, when the config names test data;
* ``run.json``: kind, seeds, versions, data, the initial model (warm start), DP parameters and
  epsilon, metrics, timings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federated.config import FLConfig
from federated.launcher import FLRunFailed
from federated.monitor import ROUNDS_FILE
from federated.server import RESULT_FILE
from federated.site_split import load_federated_data
from federated.warm_start import load_initial_model, resolve_version
from modelling.centralized import MODEL_REPOSITORY
from modelling.config import DataConfig, DataSource
from modelling.rundir import environment, new_run_dir, write_json
from morpheus_ext.config_io import dump_config
from morpheus_ext.feature_spec import load_spec


@dataclass
class FLRunResult:
    run_dir: Path
    result: dict[str, Any]
    rounds: list[dict[str, Any]]
    flower_status: str
    wall_s: float
    test_metrics: dict[str, Any] | None


def _absolute(source: DataSource | None, base: Path) -> DataSource | None:
    if source is None or source.path is None or source.path.is_absolute():
        return source
    return source.model_copy(update={"path": (base / source.path).resolve()})


def prepare_run_dir(config: FLConfig, run_dir: Path | None = None) -> tuple[FLConfig, Path]:
    """Create the run directory and write the resolved config with absolute paths (the Flower
    processes may run in another working directory) and ``initial_model.version`` pinned to a
    number (a publish during the run cannot change what the run starts from)."""
    base = Path.cwd()
    data = config.data.model_copy(
        update={
            "train": _absolute(config.data.train, base),
            "test": _absolute(config.data.test, base),
        }
    )
    encoder = config.public.encoder
    public = config.public.model_copy(
        update={
            "source": _absolute(config.public.source, base),
            "encoder": None if encoder is None else (base / encoder).resolve(),
        }
    )
    privacy = config.privacy
    if privacy.ledger_dir is not None and not privacy.ledger_dir.is_absolute():
        privacy = privacy.model_copy(update={"ledger_dir": (base / privacy.ledger_dir).resolve()})
    initial = config.initial_model
    if initial is not None:
        # Pin "served"/"latest" to a number, and check + load it now: a version that cannot
        # start this run fails here, in one line, before any Flower process starts.
        initial = initial.model_copy(update={"repository": (base / initial.repository).resolve()})
        initial = initial.model_copy(update={"version": resolve_version(initial)})
        load_initial_model(initial, config.model, load_spec(config.data.spec), public.encoder)
    resolved = config.model_copy(
        update={"data": data, "public": public, "privacy": privacy, "initial_model": initial}
    )
    if run_dir is None:
        run_dir = new_run_dir(config.runs_dir, config.name)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(resolved, run_dir / "config.yaml")
    return resolved, run_dir


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / ROUNDS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_finished(run_dir: Path, flower_status: str, log_tail: str) -> dict[str, Any]:
    """The run finished only if Flower says ``finished:completed`` *and* the ServerApp wrote
    ``status: completed`` (``flwr run`` itself exits 0 on failures)."""
    path = run_dir / RESULT_FILE
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if flower_status != "finished:completed" or result.get("status") != "completed":
        detail = result.get("error") or log_tail[-2000:]
        raise FLRunFailed(
            f"federated run in {run_dir} did not finish (Flower status {flower_status!r}, "
            f"server status {result.get('status')!r}): {detail}"
        )
    return result


def evaluate_on_test(
    data: DataConfig, run_dir: Path, title: str, seed: int = 0
) -> dict[str, Any] | None:
    """Score the test data with the run's exported repository (the serving path, ONNX)."""
    if data.test is None:
        return None
    from modelling.centralized import load_source
    from modelling.evaluation.evaluate import evaluate, score_frame
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.stages.inference.inprocess import InProcessEngine
    from morpheus_ext.stages.preprocess.featurizer import Featurizer

    spec = load_spec(data.spec)
    engine = InProcessEngine(run_dir / MODEL_REPOSITORY, spec.spec_hash)
    frame, _ = load_source(data.test, spec)
    scored = score_frame(engine, Featurizer(spec), frame)
    return evaluate(
        scored,
        run_dir / "evaluation",
        title,
        None,
        baselines=False,
        seed=seed,
        extra={"run_dir": str(run_dir)},
    )


def finish_run(
    config: FLConfig,
    run_dir: Path,
    kind: str,
    flower_status: str,
    log_tail: str,
    wall_s: float,
    extra: dict[str, Any] | None = None,
) -> FLRunResult:
    result = check_finished(run_dir, flower_status, log_tail)
    rounds = read_rounds(run_dir)
    test = evaluate_on_test(
        config.data, run_dir, f"{config.name}: federated model on the test set", config.seed
    )
    data_info = (
        {"sites": "their own training windows", "window": config.window.model_dump(mode="json")}
        if config.sites.method == "window"
        else load_federated_data(config).info
    )
    write_json(
        run_dir / "run.json",
        {
            "kind": kind,
            "run_id": run_dir.name,
            "fl_run_id": result.get("fl_run_id"),
            "flower_run_id": result.get("flower_run_id"),
            "flower_status": flower_status,
            "seeds": {
                "global": config.seed,
                "model_init": result.get("seeds", {}).get("model_init"),
            },
            "initial_model": result.get("initial_model"),
            "environment": environment(),
            "data": data_info,
            "site_publish": result.get("site_publish"),
            "public": result.get("public"),
            "strategy": config.strategy.name,
            "dp": result.get("dp"),
            "rounds": rounds,
            "summary": result.get("summary"),
            "metrics": test,
            "wall_s": wall_s,
            **(extra or {}),
        },
    )
    return FLRunResult(run_dir, result, rounds, flower_status, wall_s, test)
