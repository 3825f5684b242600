"""``secureai model ...``: list, show, publish, roll back and verify served model versions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.cli_base import CLIError

DEFAULT_REPOSITORY = "triton_model_repository"


def _triton(args: argparse.Namespace) -> Any:
    if not args.triton:
        return None
    from federated.publish import TritonControl

    return TritonControl(args.triton, mode=args.control_mode)


def cmd_list(args: argparse.Namespace) -> int:
    from morpheus_ext.model_repository import list_versions

    rows = list_versions(Path(args.repository))
    head = f"{'ver':>4} {'served':6} {'created':25} {'parent':>6} {'epsilon':>8} {'threshold':>10}"
    print(f"{head}  run")
    for r in rows:
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        thr = "-" if r["threshold"] is None else f"{r['threshold']:.3g}"
        print(
            f"{r['version']:>4} {'*' if r['served'] else '':6} {r['created_at'] or '-':25} "
            f"{r['parent'] if r['parent'] is not None else '-':>6} {eps:>8} {thr:>10}  "
            f"{r['run_id'] or '-'}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from morpheus_ext.model_repository import AUTOENCODER, ModelRepository

    manifest = ModelRepository(args.repository).manifest(AUTOENCODER, args.version)
    if not manifest:
        raise FileNotFoundError(f"{AUTOENCODER} version {args.version} has no manifest")
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


def _repository_exists(repository: str | Path) -> None:
    """A repository that is not there answers before the training stack is imported."""
    if not (Path(repository) / "dfp_autoencoder" / "config.pbtxt").is_file():
        raise CLIError(
            f"--repository {repository}: not a model repository (no dfp_autoencoder/config.pbtxt)"
        )


def cmd_publish(args: argparse.Namespace) -> int:
    from modelling.rundir import training_run_dir

    run_dir = training_run_dir(args.run_dir)  # a demo's directory: its training run
    _repository_exists(args.repository)
    from federated.publish import PublishConfig, publish
    from modelling.checkpoint import CHECKPOINT_DIR, load_checkpoint
    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.io import read_frame

    checkpoint = load_checkpoint(run_dir / CHECKPOINT_DIR)
    spec = load_spec(args.spec or checkpoint.spec)
    validation = read_frame(args.validation, spec)
    holdout = read_frame(args.holdout, spec) if args.holdout else None
    config = PublishConfig(
        gate=args.gate,
        tolerance=args.tolerance,
        canary_tolerance=args.canary_tolerance,
        keep_last=args.keep_last,
    )
    result = publish(
        checkpoint, Path(args.repository), spec, validation, holdout, config, triton=_triton(args)
    )
    gate = result.gate
    if gate["gate"] == "unlabelled":
        fpr = gate["false_positive_rate"]
        detail = (
            f" (unlabelled gate: canary recall candidate {gate['candidate']:.3f} vs served "
            f"{gate['served']:.3f}, false-positive rate {fpr['candidate']:.4f} vs "
            f"{fpr['served']:.4f} on {gate['rows']['gate']} held-out rows)"
        )
    elif "candidate" in gate:
        detail = (
            f" ({gate['gate']}: candidate {gate['candidate']:.4f} vs served {gate['served']:.4f})"
        )
    else:
        detail = ""
    print(f"published dfp_autoencoder version {result.version} -> {result.path}{detail}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _repository_exists(args.repository)
    from federated.publish import rollback

    version = rollback(Path(args.repository), args.version, triton=_triton(args))
    print(f"serving dfp_autoencoder version {version}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    _repository_exists(args.repository)
    from federated.publish import verify

    problems = verify(Path(args.repository))
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"secureai: error: {len(problems)} problem(s) in {args.repository}", file=sys.stderr)
        return 1
    print(f"ok: every file of {args.repository} matches its manifest")
    return 0


def register(sub: Any) -> None:
    model = sub.add_parser(
        "model", help="served model versions: list, show, publish, rollback, verify"
    )
    msub = model.add_subparsers(dest="model_command", required=True)

    def common(p: argparse.ArgumentParser, triton: bool = False) -> None:
        p.add_argument("--repository", default=DEFAULT_REPOSITORY)
        if triton:
            p.add_argument(
                "--triton",
                metavar="HTTP_URL",
                help="make this Triton serve the change and confirm it (host:port)",
            )
            p.add_argument(
                "--control-mode",
                choices=["auto", "explicit", "poll"],
                default="auto",
                help="how Triton picks up changes (auto: load, or wait for its poll)",
            )

    p = msub.add_parser("list", help="versions with their manifests side by side")
    common(p)
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("show", help="one version's manifest")
    p.add_argument("version", type=int)
    common(p)
    p.set_defaults(func=cmd_show)
    p = msub.add_parser("publish", help="validate, gate and publish a run's model as version n+1")
    p.add_argument("run_dir")
    p.add_argument(
        "--validation",
        required=True,
        help="this site's data: calibrates the candidate (split with the gate without --holdout)",
    )
    p.add_argument("--holdout", help="rows for the promotion gate only (labelled: AUROC)")
    p.add_argument("--spec")
    p.add_argument(
        "--gate",
        choices=["auto", "holdout", "unlabelled"],
        default="auto",
        help="auto: AUROC with both labels, else false-positive rate + canary recall",
    )
    p.add_argument("--tolerance", type=float, default=0.01, help="AUROC loss / FPR increase")
    p.add_argument("--canary-tolerance", type=float, default=0.05, help="canary recall loss")
    p.add_argument("--keep-last", type=int, default=5)
    common(p, triton=True)
    p.set_defaults(func=cmd_publish)
    p = msub.add_parser("rollback", help="serve an earlier version (default: the previous one)")
    p.add_argument("version", type=int, nargs="?")
    common(p, triton=True)
    p.set_defaults(func=cmd_rollback)
    p = msub.add_parser("verify", help="check every file against its manifest")
    common(p)
    p.set_defaults(func=cmd_verify)
