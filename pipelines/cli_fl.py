"""``secureai fl ...``: federated retraining under DP — simulate, deploy on loopback, compare,
audit.

Wired into ``pipelines/cli.py`` with ``cli_fl.register(sub)``. Errors a user can fix
(config, a run that did not finish, a refused privacy budget) surface as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.cli_base import CLIError, at_least


def _print_run(result: Any) -> None:
    print(f"run directory: {result.run_dir}")
    for r in result.rounds:
        val = "-" if r["validation_loss"] is None else f"{r['validation_loss']:.5f}"
        print(
            f"  round {r['round']:>3}: {r['returned']}/{r['sampled']} sites returned "
            f"({r['failed']} failed, {r['timed_out']} timed out), val loss {val}, "
            f"epsilon max {r['epsilon_max']:.3f}, {r['seconds']:.1f}s"
        )
    dp = result.result.get("dp")
    if dp:
        spent = ", ".join(f"site {s}: {e:.3f}" for s, e in dp["epsilon_spent"].items())
        print(f"privacy (RDP, delta={dp['delta']:g}): {spent}")
    else:
        print("privacy: DP off (no guarantee)")
    m = result.test_metrics
    if m:
        print(
            f"test: AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  best F1 {m['best_f1']:.4f}  "
            f"TPR@1%FPR {m['tpr_at_fpr']['0.01']:.4f}"
        )
    print(f"model repository: {result.result['model_repository']}")


def _config_exists(path: str) -> None:
    """A missing config answers before the Flower and torch imports (seconds)."""
    if not Path(path).is_file():
        raise CLIError(f"config file not found: {path}")


def cmd_simulate(args: argparse.Namespace) -> int:
    _config_exists(args.config)
    from federated.config import FLConfig
    from federated.simulation import simulate
    from morpheus_ext.config_io import load_config

    config = load_config(args.config, FLConfig)
    run_dir = Path(args.run_dir) if args.run_dir else None
    _print_run(simulate(config, run_dir, progress=not args.no_progress))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    _config_exists(args.config)
    from federated.config import FLConfig
    from federated.deployment import deploy_local
    from morpheus_ext.config_io import load_config

    config = load_config(args.config, FLConfig)
    result = deploy_local(
        config,
        Path(args.run_dir) if args.run_dir else None,
        tls=not args.insecure,
        supernode_auth=not args.no_auth,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        progress=not args.no_progress,
    )
    _print_run(result)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    _config_exists(args.config)
    from federated.compare import CompareConfig, compare
    from morpheus_ext.config_io import load_config

    config = load_config(args.config, CompareConfig)
    if args.no_docs:
        config.report.results_md = None
    result = compare(config, Path(args.run_dir) if args.run_dir else None)
    print(f"run directory: {result.run_dir}")
    print((result.run_dir / "results.md").read_text())
    print(f"figure: {result.figure}")
    return 0 if all(c["passed"] for c in result.checks) else 1


def cmd_ledger(args: argparse.Namespace) -> int:
    import json

    from federated.ledger import read_ledgers

    ledgers = read_ledgers(Path(args.ledger), args.site)
    if args.json:
        docs = []
        for led in ledgers:
            eps, delta = led.spent()
            docs.append(
                {
                    "site": led.site,
                    "path": str(led.path),
                    "budget_epsilon": led.budget_epsilon,
                    "spent_epsilon": eps,
                    "spent_delta": delta,
                    "left_epsilon": led.budget_epsilon - eps,
                    "runs": led.history(),
                }
            )
        print(json.dumps(docs, indent=2))
        return 0
    for led in ledgers:
        eps, delta = led.spent()
        print(
            f"site {led.site}: epsilon spent {eps:.3f} of {led.budget_epsilon:.3f} "
            f"(left {led.budget_epsilon - eps:.3f}), delta {delta:.1e}, "
            f"{len(led.runs)} run(s), basic composition  [{led.path}]"
        )
        print(f"  {'run':<44} {'started':<26} {'epsilon':>8} {'sigma':>7} {'rounds':>7}")
        for row in led.history():
            e = "DP off" if row.get("epsilon") is None else f"{row['epsilon']:.3f}"
            sigma = row.get("noise_multiplier")
            print(
                f"  {row['run_id']:<44} {row.get('started', row.get('updated', '-'))!s:<26} "
                f"{e:>8} {'-' if sigma is None else f'{sigma:.3f}':>7} "
                f"{len(row.get('rounds', [])) or '-':>7}"
            )
    return 0


def _run_dir_ready(path: str) -> Path:
    """A run directory the audit can read, checked before the torch imports (seconds)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise CLIError(f"run directory not found: {path}")
    for name in ("config.yaml", "fl_result.json", "model/checkpoint.json"):
        if not (run_dir / name).is_file():
            raise CLIError(
                f"{path} is not a finished federated run (no {name}): audit the directory "
                "`secureai fl simulate --run-dir` wrote"
            )
    return run_dir


def cmd_audit(args: argparse.Namespace) -> int:
    run_dir = _run_dir_ready(args.run_dir)
    from federated.audit import AUDIT_FILE, AuditConfig, audit_run

    config = AuditConfig(
        reference_models=args.reference_models,
        lira=args.lira,
        confidence=args.confidence,
        max_rows=args.max_rows,
        seed=args.seed,
        threads=args.threads,
    )
    doc = audit_run(run_dir, config)
    acc = doc["accountant"]
    eps = "none (DP off)" if acc["epsilon"] is None else f"{acc['epsilon']:.3f}"
    rows = doc["rows"]
    print(
        f"membership-inference audit of {run_dir}: {rows['members']} members vs "
        f"{rows['non_members']} held-out non-members"
    )
    header = f"{'attack':<8} {'AUC':>6} {'TPR@0.1%FPR':>12} {'TPR@1%FPR':>10}"
    print(f"  {header} {'eps lower bound':>16}")
    for name, a in doc["attacks"].items():
        print(
            f"  {name:<8} {a['auc']:>6.3f} {a['tpr_at_fpr']['0.001']:>12.3f} "
            f"{a['tpr_at_fpr']['0.01']:>10.3f} {a['epsilon_lower_bound']['epsilon']:>16.3f}"
        )
    print(
        f"empirical epsilon >= {doc['empirical_epsilon']:.3f} at {doc['confidence']:.0%} "
        f"confidence (delta={doc['delta']:g}); accountant epsilon: {eps}"
    )
    if doc["within_accountant"] is False:
        print("WARNING: the attack proves more than the accountant allows: check the DP wiring")
    print(f"record: {run_dir / AUDIT_FILE}")
    return 1 if doc["within_accountant"] is False else 0


def register(sub: Any) -> None:
    fl = sub.add_parser(
        "fl", help="federated retraining under DP: simulate, deploy, compare, audit, ledger"
    )
    fsub = fl.add_subparsers(dest="fl_command", required=True)

    p = fsub.add_parser("simulate", help="a federated run with Flower's simulation engine")
    p.add_argument("--config", default="configs/fed_dp_small.yml")
    p.add_argument("--run-dir", help="default: runs/<name>-<time>")
    p.add_argument("--no-progress", action="store_true", help="no line per round on stderr")
    p.set_defaults(func=cmd_simulate)

    p = fsub.add_parser(
        "deploy", help="SuperLink + one SuperNode per site on 127.0.0.1 (TLS + node auth)"
    )
    p.add_argument("--config", default="configs/fed_dp_small.yml")
    p.add_argument("--run-dir")
    p.add_argument("--work-dir", help="keep certificates, keys and process logs here")
    p.add_argument("--insecure", action="store_true", help="no TLS (testing only)")
    p.add_argument("--no-auth", action="store_true", help="no SuperNode authentication")
    p.add_argument("--no-progress", action="store_true", help="no line per round on stderr")
    p.set_defaults(func=cmd_deploy)

    p = fsub.add_parser(
        "compare", help="centralized vs FL vs FL+DP (or strategies under attack): table + plot"
    )
    p.add_argument("--config", default="configs/baselines.yml")
    p.add_argument("--run-dir")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/results.md")
    p.set_defaults(func=cmd_compare)

    p = fsub.add_parser(
        "audit", help="membership-inference audit of a run's model: AUC, TPR@low FPR, eps bound"
    )
    p.add_argument("--run-dir", required=True, help="a finished `fl simulate`/`fl deploy` run")
    p.add_argument(
        "--reference-models",
        type=at_least(0),
        default=4,
        help="LiRA reference models, each trained like a site (0: loss attack only)",
    )
    p.add_argument("--lira", choices=["offline", "online"], default="offline")
    p.add_argument(
        "--confidence", type=float, default=0.95, help="of the empirical epsilon lower bound"
    )
    p.add_argument("--max-rows", type=at_least(10), default=2000, help="members and non-members")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=at_least(1), default=1)
    p.set_defaults(func=cmd_audit)

    p = fsub.add_parser("ledger", help="a site's lifetime privacy spend, run by run")
    p.add_argument("ledger", help="a site's ledger file or the folder of ledgers")
    p.add_argument("--site", help="only this site (default: every ledger in the folder)")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_ledger)
