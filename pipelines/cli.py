"""``secureai``: the command line. Every error is one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.cli_base import CLIError, OneLineParser, at_least, run_cli


def package_version() -> str:
    """The installed distribution's version (``secureai --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secureai")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


# --------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    from morpheus_ext.config_io import load_config
    from pipelines.config import DemoConfig

    config = load_config(args.config, DemoConfig)  # a config mistake answers before torch loads
    from pipelines.demo import run_demo

    result = run_demo(config, progress=not args.no_progress)
    m = result.metrics
    print(f"run directory: {result.run_dir}")
    print(
        f"streamed {result.stream['events_in']} events: {result.stream['scored']} scored, "
        f"{result.stream['rejected']} rejected, {m['events_per_s']:,.0f} events/s end to end"
    )
    print(
        f"AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  best F1 {m['best_f1']:.4f}  "
        f"TPR@1%FPR {m['tpr_at_fpr']['0.01']:.4f}"
    )
    for b in m.get("baselines", []):
        print(f"  baseline {b['name']}: AUROC {b['auroc']:.4f}  AUPRC {b['auprc']:.4f}")
    print(f"report: {m['report']}")
    inc = m.get("incidents")
    if inc:
        print(
            f"incidents: {inc['incidents']} from {inc['flagged_events']} flagged events "
            f"({inc['flagged_per_incident']} per incident)"
        )
        print(result.top_incidents)
        print()
    print(result.top_alerts)
    return 0


def config_relative_inputs(doc: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """Input files a training config names (``data.train.path``, ``data.test.path``, a spec
    file) are read relative to the config file; one that is not there is read from the
    current directory, as the shipped configs (written for the repository root) expect.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "mine.csv").write_text("a")
    >>> doc = {"data": {"spec": "nsl_kdd", "train": {"path": "mine.csv"}, "test": None}}
    >>> config_relative_inputs(doc, d)["data"]["train"]["path"] == str(d / "mine.csv")
    True
    """
    data = doc.get("data") or {}

    def rebase(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        beside = config_dir / value
        return str(beside) if beside.exists() else value

    for part in ("train", "test"):
        source = data.get(part)
        if isinstance(source, dict) and source.get("path"):
            source["path"] = rebase(source["path"])
    spec = data.get("spec")
    if isinstance(spec, str) and Path(spec).suffix in (".yml", ".yaml"):
        data["spec"] = rebase(spec)
    return doc


def train_config(args: argparse.Namespace) -> Any:
    """``--config FILE`` or ``--data FILE --spec SPEC [--test FILE]``, then ``--set`` overrides;
    the resolved config is written to the run directory either way (the reproducible form)."""
    import yaml

    from modelling.config import CentralizedConfig
    from morpheus_ext.config_io import load_config, merge_overrides

    if args.config and (args.data or args.test):
        raise CLIError("give --config FILE, or --data FILE --spec SPEC, not both")
    if args.config:
        config = load_config(args.config, CentralizedConfig)
        doc = config_relative_inputs(config.model_dump(mode="json"), Path(args.config).parent)
    elif args.data and args.spec:
        data: dict[str, Any] = {"spec": args.spec, "train": {"path": args.data}}
        if args.test:
            data["test"] = {"path": args.test}
        doc = {"name": args.name or Path(args.data).stem, "data": data}
    else:
        raise CLIError("give --config FILE, or --data FILE with --spec SPEC (and --test FILE)")
    overrides: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=50")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return CentralizedConfig.model_validate(merge_overrides(doc, overrides))


def cmd_train(args: argparse.Namespace) -> int:
    config = train_config(args)  # first: a config mistake answers before torch is imported
    if config.train_source.path is not None and not Path(config.train_source.path).is_file():
        raise CLIError(f"data.train.path: no such file {config.train_source.path}")

    from modelling.centralized import load_source, train_centralized
    from modelling.evaluation.evaluate import evaluate, score_frame
    from morpheus_ext.repository_writer import write_repository

    result = train_centralized(config, version=args.version, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    print(
        f"trained {result.metrics['epochs_run']} epochs, best val loss "
        f"{result.metrics['best_val_loss']:.5f}, ONNX parity "
        f"{result.metrics['onnx_parity_max_abs_diff']:.2e}"
    )
    if config.data.test is not None:
        from morpheus_ext.stages.inference.inprocess import InProcessEngine
        from morpheus_ext.stages.preprocess.featurizer import Featurizer

        featurizer = Featurizer(result.spec)
        engine = InProcessEngine(result.repository, result.spec.spec_hash)
        from modelling.progress import Steps

        frame, _ = load_source(config.data.test, result.spec)
        with Steps("evaluate", enabled=not args.no_progress)(f"scored {len(frame):,} test rows"):
            scored = score_frame(engine, featurizer, frame)
        m = evaluate(
            scored,
            result.run_dir / "evaluation",
            f"{config.name}: test set",
            result.train_normalized,
            config.evaluation.baselines,
            config.seed,
            extra={"run_dir": str(result.run_dir)},
            progress=not args.no_progress,
        )
        _print_metrics(m)
    if args.publish:
        export = result.run_dir / "export"
        manifest = result.repository / "dfp_autoencoder" / str(args.version) / "manifest.json"
        import json

        info = {
            k: v
            for k, v in json.loads(manifest.read_text()).items()
            if k not in ("files", "model", "version")
        }
        write_repository(
            Path(args.publish),
            result.spec,
            export / "dfp_encoder.onnx",
            export / "dfp_autoencoder.onnx",
            args.version,
            info,
        )
        print(f"published version {args.version} to {args.publish}")
    return 0


def model_repository_arg(given: str | None) -> Path:
    """``--model-repository`` as given (it must exist), else the project's own repository
    (found from the installed package, so commands work from any directory)."""
    from morpheus_ext.model_repository import DEFAULT_REPOSITORY

    if given is None:
        return DEFAULT_REPOSITORY
    path = Path(given)
    if not path.is_dir():
        raise CLIError(
            f"--model-repository {given}: no such directory (a Triton model repository, e.g. "
            f"a run's <run-dir>/model_repository or {DEFAULT_REPOSITORY})"
        )
    return path


def _print_metrics(m: dict[str, object]) -> None:
    tpr = m["tpr_at_fpr"]
    assert isinstance(tpr, dict)
    print(
        f"AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  best F1 {m['best_f1']:.4f}  "
        f"TPR@1%FPR {tpr['0.01']:.4f}  TPR@0.1%FPR {tpr['0.001']:.4f}"
    )
    for b in m.get("baselines", []) or []:  # type: ignore[attr-defined]
        print(
            f"  baseline {b['name']}: AUROC {b['auroc']:.4f}  AUPRC {b['auprc']:.4f}  "
            f"{b['events_per_s']:,.0f} events/s"
        )
    print(f"report: {m['report']}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.run_dir and not Path(args.run_dir).is_dir():  # before the training imports
        raise CLIError(f"run directory not found: {args.run_dir}")
    if not args.run_dir and not (args.data and args.spec):
        raise CLIError("give --run-dir DIR, or --data PATH with --spec SPEC")
    from modelling.centralized import MODEL_REPOSITORY, baseline_training_matrix, load_source
    from modelling.config import CentralizedConfig
    from modelling.evaluation.evaluate import evaluate, score_frame
    from morpheus_ext.config_io import load_config
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.io import read_frame
    from morpheus_ext.stages.inference.inprocess import InProcessEngine
    from morpheus_ext.stages.preprocess.featurizer import Featurizer

    train_normalized = None
    seed = 0
    if args.run_dir:
        from modelling.rundir import training_run_dir

        run_dir = training_run_dir(args.run_dir)  # a demo's directory: its training run
        config = load_config(run_dir / "config.yaml", CentralizedConfig)
        spec = load_spec(args.spec or config.data.spec)
        repository = Path(args.model_repository or run_dir / MODEL_REPOSITORY)
        engine = InProcessEngine(repository, spec.spec_hash)
        featurizer = Featurizer(spec)
        if args.data:
            frame = read_frame(args.data, spec)
        elif config.data.test is not None:
            frame, _ = load_source(config.data.test, spec)
        else:
            raise CLIError(f"{run_dir} has no test data in its config; pass --data PATH")
        if not args.no_baselines:  # the very rows training fitted them on: same numbers
            train_normalized = baseline_training_matrix(config, run_dir)
        seed = config.seed
        out = Path(args.out or run_dir / "evaluation")
    else:
        if not (args.data and args.spec):
            raise CLIError("give --run-dir DIR, or --data PATH with --spec SPEC")
        spec = load_spec(args.spec)
        repository = model_repository_arg(args.model_repository)
        engine = InProcessEngine(repository, spec.spec_hash)
        featurizer = Featurizer(spec)
        frame = read_frame(args.data, spec)
        if args.train_data and not args.no_baselines:
            fitted = score_frame(engine, featurizer, read_frame(args.train_data, spec))
            train_normalized = (
                fitted.normalized
                if fitted.labels is None
                else fitted.normalized[fitted.labels == 0]
            )
        out = Path(args.out or "runs/evaluation")
    from modelling.progress import Steps

    with Steps("evaluate", enabled=not args.no_progress)(f"scored {len(frame):,} rows"):
        scored = score_frame(engine, featurizer, frame)
    m = evaluate(
        scored,
        out,
        f"Evaluation of {repository}",
        train_normalized,
        baselines=not args.no_baselines,
        seed=seed,
        extra={"model_repository": str(repository)},
        progress=not args.no_progress,
    )
    _print_metrics(m)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.pipeline import ScoringPipeline, run_batches
    from morpheus_ext.stages.input.sources import file_source
    from morpheus_ext.stages.output.files import JsonlSink
    from morpheus_ext.stages.preprocess.featurizer import Featurizer
    from pipelines.engines import InferenceConfig, build_engine

    spec = load_spec(args.spec)
    if not Path(args.events).is_file():
        raise CLIError(f"events file not found: {args.events}")
    if args.triton:
        config = InferenceConfig(
            engine="triton",
            url=args.triton,
            protocol=args.protocol,
            model=args.model,
            connect_timeout_s=args.connect_timeout,
        )
    else:
        config = InferenceConfig(repository=model_repository_arg(args.model_repository))
    engine = build_engine(config, spec)
    leakage = None
    if args.leakage:
        from morpheus_ext.stages.postprocess.leakage import LeakageConfig, LeakageDetector

        leakage = LeakageDetector(LeakageConfig(enabled=True))
    tracker = None
    if args.incidents:
        from morpheus_ext.stages.postprocess.incidents import IncidentConfig, IncidentTracker

        tracker = IncidentTracker(IncidentConfig(enabled=True, site=args.site))
    pipeline = ScoringPipeline(Featurizer(spec), engine, leakage=leakage, incidents=tracker)
    out = Path(args.out)
    rejects_path = Path(args.rejects or out.with_name(out.stem + ".rejects.jsonl"))
    incidents_path = out.with_name(out.stem + ".incidents.jsonl")
    with (
        JsonlSink(out) as scores,
        JsonlSink(rejects_path) as rejects,
        contextlib.ExitStack() as stack,
    ):
        log = stack.enter_context(JsonlSink(incidents_path)) if tracker is not None else None
        stats = run_batches(
            pipeline,
            file_source(args.events, args.batch_size),
            scores.write,
            rejects.write,
            on_result=None if log is None else (lambda result: log.write(result.incidents)),
            progress=not args.no_progress,
        )
        if tracker is not None and log is not None:
            log.write(tracker.close_all())
    print(
        f"{stats.events_in} events: {stats.scored} scored -> {out}, {stats.rejected} rejected "
        f"-> {rejects_path}, {stats.anomalies} flagged, {stats.events_per_s:,.0f} events/s"
    )
    if tracker is not None:
        print(f"{tracker.opened} incidents (every revision) -> {incidents_path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from synthetic import SyntheticConfig, generate, write_events

    config = SyntheticConfig(
        n_events=args.events,
        anomaly_rate=args.anomaly_rate,
        n_sites=args.sites,
        heterogeneity=args.heterogeneity,
        seed=args.seed,
        entity_relative=args.entity_relative,
    )
    frame = generate(config)
    path = write_events(frame, args.out)
    print(f"wrote {len(frame)} events ({int(frame['label'].sum())} anomalous) to {path}")
    return 0


def cmd_spec_draft(args: argparse.Namespace) -> int:
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.spec_draft import draft_spec, read_sample, render

    if not args.file:
        raise CLIError("spec draft needs a data file: secureai spec draft FILE [--out spec.yml]")
    source = Path(args.file)
    header = {"auto": None, "yes": True, "no": False}[args.header]
    frame = read_sample(source, header)
    doc = draft_spec(frame, args.name or source.stem, args.label, args.normal, args.exclude)
    text = render(doc, source)
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    out.write_text(text)
    spec = load_spec(out)  # what was written loads and resolves
    label = spec.label_column or "none (unsupervised)"
    print(
        f"wrote {out}: {len(spec.layout.fields)} features in {spec.layout.used_width}/"
        f"{spec.layout.width} dims, label {label}, excluded {len(spec.exclude)}; next: "
        f"secureai train --data {source} --spec {out}"
    )
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from morpheus_ext.feature_spec import load_spec

    if args.spec == "draft":
        return cmd_spec_draft(args)
    if args.file:
        raise CLIError(f"unexpected argument {args.file!r} (secureai spec SPEC shows a spec)")

    spec = load_spec(args.spec)
    print(
        f"{spec.name} v{spec.version}  hash {spec.spec_hash}  "
        f"{spec.layout.used_width}/{spec.layout.width} slots"
    )
    for f in spec.layout.fields:
        print(f"  [{f.offset:3d}:{f.stop:3d})  {f.kind:<11} {f.name}")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="secureai", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action="version", version=f"secureai {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the embedded end-to-end job (synthetic -> train -> stream)")
    d.add_argument("--config", default="configs/demo.yml")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser(
        "train", help="centralized training: a YAML config, or --data FILE --spec SPEC"
    )
    t.add_argument("--config", help="a training config (configs/centralized.yml)")
    t.add_argument("--data", help="without a config: the training file (CSV, Parquet, JSONL)")
    t.add_argument("--spec", help="with --data: a spec name or file (secureai spec draft)")
    t.add_argument("--test", help="with --data: a labelled file to evaluate on")
    t.add_argument("--name", help="with --data: the run's name (default: the file's stem)")
    t.add_argument("--no-progress", action="store_true", help="no per-epoch lines on stderr")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=50 --set model.hidden=[256,64]",
    )
    t.add_argument(
        "--publish", metavar="REPOSITORY", help="also write the version into this repository"
    )
    t.add_argument("--version", type=int, default=1, help="model version number (default 1)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics + HTML report for a run or a labelled file")
    e.add_argument("--run-dir")
    e.add_argument("--data", help="labelled CSV/Parquet/JSONL file")
    e.add_argument("--spec", help="feature spec name or path")
    e.add_argument(
        "--model-repository", help="default: the run's, else the project's triton_model_repository"
    )
    e.add_argument("--train-data", help="with --data: fit baselines on this file")
    e.add_argument("--out", help="output directory")
    e.add_argument("--no-baselines", action="store_true")
    e.add_argument("--no-progress", action="store_true", help="no per-step lines on stderr")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "score", help="score a JSONL or Parquet file of events (in-process or on Triton)"
    )
    s.add_argument("--events", required=True, help="JSON Lines, or Parquet (.parquet)")
    s.add_argument("--spec", default="security_events")
    s.add_argument(
        "--model-repository",
        help="in-process engine: the repository to load (default: the project's "
        "triton_model_repository, wherever you run from)",
    )
    s.add_argument("--triton", metavar="URL", help="score on a Triton server (host:port)")
    s.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    s.add_argument("--model", default="dfp_ensemble")
    s.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the Triton server at start",
    )
    s.add_argument("--out", default="scores.jsonl")
    s.add_argument("--rejects", help="default: <out>.rejects.jsonl")
    s.add_argument("--batch-size", type=at_least(1), default=4096)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument(
        "--leakage",
        action="store_true",
        help="find and mask secrets in event fields (docs/triage.md)",
    )
    s.add_argument(
        "--incidents",
        action="store_true",
        help="group flagged records into incidents -> <out>.incidents.jsonl (docs/triage.md)",
    )
    s.add_argument("--site", help="with --incidents: the site name incidents carry")
    s.set_defaults(func=cmd_score)

    g = sub.add_parser("generate", help="write labelled synthetic events (JSONL or Parquet)")
    g.add_argument("--out", required=True)
    g.add_argument("--events", type=at_least(1), default=100_000)
    g.add_argument("--anomaly-rate", type=at_least(0.0, float), default=0.02)
    g.add_argument("--sites", type=at_least(1), default=3)
    g.add_argument("--heterogeneity", type=at_least(0.0, float), default=0.5)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--entity-relative", action="store_true")
    g.set_defaults(func=cmd_generate)

    from pipelines import cli_correlate, cli_fl, cli_kafka, cli_loop, cli_model, cli_serve

    cli_kafka.register(sub)
    cli_correlate.register(sub)
    cli_fl.register(sub)
    cli_model.register(sub)
    cli_serve.register(sub)
    cli_loop.register(sub)

    sp = sub.add_parser(
        "spec",
        help="show a feature spec's layout and hash; `spec draft FILE` proposes one for a file",
        usage="secureai spec SPEC | secureai spec draft FILE [--label COL] [--normal V ...] "
        "[--exclude COL ...] [--out spec.yml]",
    )
    sp.add_argument("spec", help="a shipped spec name or a YAML path; or `draft`")
    sp.add_argument("file", nargs="?", help="draft: a CSV (header or not), Parquet or JSONL file")
    sp.add_argument("--label", help="draft: the label column (default: found by name)")
    sp.add_argument("--normal", nargs="+", help="draft: label values meaning normal")
    sp.add_argument("--exclude", nargs="+", default=[], help="draft: columns to leave out")
    sp.add_argument("--name", help="draft: the spec's name (default: the file's stem)")
    sp.add_argument("--header", choices=["auto", "yes", "no"], default="auto")
    sp.add_argument("--out", help="draft: write the spec here (default: print it)")
    sp.set_defaults(func=cmd_spec)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
