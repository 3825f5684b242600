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
from morpheus_ext.errors import SecureAIError
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


class RunDirInUse(SecureAIError, FileExistsError):
    """A run directory that already holds a run: a new run never overwrites it."""


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
    elif (run_dir / RESULT_FILE).exists():
        status = json.loads((run_dir / RESULT_FILE).read_text()).get("status", "?")
        raise RunDirInUse(
            f"run directory {run_dir} already holds a federated run ({RESULT_FILE}, status "
            f"{status}): pass another --run-dir, or none for a new runs/{config.name}-<time>"
        )
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(resolved, run_dir / "config.yaml")
    return resolved, run_dir


class RoundProgress:
    """Prints each round the ServerApp finished (``rounds.jsonl``) while a run is waited on:
    losses, the largest epsilon so far, seconds per round and the most time left. Called by
    ``SuperLink.wait(on_poll=...)``; stderr, one line per round.

    >>> import io, json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> out = io.StringIO()
    >>> progress = RoundProgress(d, rounds=3, stream=out)
    >>> row = {"round": 1, "seconds": 12.0, "returned": 2, "sampled": 2, "train_loss": 0.0021,
    ...        "public_loss": 0.0023, "epsilon_max": 1.37}
    >>> _ = (d / "rounds.jsonl").write_text(json.dumps(row))
    >>> progress()
    >>> progress()  # nothing new: nothing printed
    >>> print(out.getvalue().strip()[:56])
    fl: round 1/3  sites 2/2  train loss 0.00210  public los
    >>> print(out.getvalue().strip()[56:])
    s 0.00230  epsilon 1.37  (12 s/round, <= 24 s left)
    """

    def __init__(self, run_dir: Path, rounds: int, stream: Any = None) -> None:
        import sys

        self.run_dir, self.rounds = run_dir, rounds
        self.stream = stream or sys.stderr
        self.shown = 0

    def __call__(self) -> None:
        rows = read_rounds(self.run_dir)
        for row in rows[self.shown :]:
            done = [float(r.get("seconds") or 0.0) for r in rows[: int(row["round"])]]
            per_round = sum(done) / max(1, len(done))
            left = per_round * (self.rounds - int(row["round"]))

            def num(key: str, row: dict[str, Any] = row) -> str:
                value = row.get(key)
                return "-" if value is None else f"{float(value):.5f}"

            eps = f"  epsilon {row['epsilon_max']:.2f}" if row.get("epsilon_max") else ""
            self.stream.write(
                f"fl: round {row['round']}/{self.rounds}  sites {row.get('returned', 0)}/"
                f"{row.get('sampled', 0)}  train loss {num('train_loss')}  public loss "
                f"{num('public_loss')}{eps}  ({per_round:.0f} s/round, <= {left:.0f} s left)\n"
            )
        self.shown = len(rows)
        self.stream.flush()


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
