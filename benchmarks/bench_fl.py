"""Federated training costs: DP-SGD vs plain training samples/s, and the wall time of a round.

    python benchmarks/bench_fl.py --out docs/benchmarks.md

1. Local training throughput on 5120 rows of one site of the synthetic default (5 sites,
   normalized with the run's public normalizer): one local epoch of plain Adam
   (``fit_autoencoder``) vs DP-SGD (Opacus ghost clipping and per-sample hooks), whole call
   timed (Opacus setup included), best of ``--repeats``; samples/s.
2. Round wall time with real Flower processes: the simulation engine (5 sites, ``--rounds``
   rounds of configs/baselines.yml's federated config) and the deployment engine (3 SuperNodes
   with TLS + node auth, configs/fed_dp_small.yml). Round 1 includes the cold start (Ray actors
   or SuperNode processes, imports); later rounds are reported as their median.

Writes its own section of docs/benchmarks.md (``<!-- bench_fl:begin -->``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from report import ROOT, git_commit, machine_info, update_section

from federated.compare import CompareConfig
from federated.config import FLConfig, LocalTrainConfig, PrivacyConfig
from federated.deployment import deploy_local
from federated.dp_training import train_dp_round
from federated.privacy import SitePrivacyState, plan_noise
from federated.runs import FLRunResult
from federated.simulation import simulate
from federated.site_split import load_federated_data, public_inputs
from modelling.config import TrainConfig
from modelling.models import build_autoencoder
from modelling.training import fit_autoencoder
from morpheus_ext.config_io import load_config

SECTION = "bench_fl"
ROWS = 5120  # 10 batches of 512 from site 0: per-sample cost does not depend on n


def _best_rate(fn: Callable[[], float], repeats: int) -> float:
    """Best of ``repeats`` after a warm-up: on a machine shared with other jobs the best run is
    the one least disturbed by them (a median would measure the neighbours)."""
    fn()
    return max(fn() for _ in range(repeats))


def throughput(config: FLConfig, repeats: int, threads_list: list[int]) -> list[list[Any]]:
    data = load_federated_data(config)
    public = public_inputs(config, data.spec, None)
    x = public.normalizer.transform(data.site_train(0)[:ROWS])
    rows: list[list[Any]] = []
    for threads in threads_list:
        for batch in (256, 512):

            def plain(batch: int = batch, threads: int = threads) -> float:
                model = build_autoencoder(config.model, data.spec.tensor_width, seed=0)
                cfg = TrainConfig(epochs=1, batch_size=batch, patience=1, threads=threads)
                start = time.perf_counter()
                fit_autoencoder(model, x, x[:16], cfg)
                return len(x) / (time.perf_counter() - start)

            def dp(mode: str, batch: int = batch, threads: int = threads) -> float:
                model = build_autoencoder(config.model, data.spec.tensor_width, seed=0)
                plan = plan_noise(len(x), batch, 20, 1, 3.0, 1e-5)
                state = SitePrivacyState(plan.noise_multiplier, plan.sample_rate, 1e-5)
                local = LocalTrainConfig(epochs=1, batch_size=batch, lr=0.01, threads=threads)
                privacy = PrivacyConfig(max_grad_norm=0.05, grad_sample_mode=mode)
                start = time.perf_counter()
                stats = train_dp_round(model, x, local, privacy, state, seed=0)
                return stats.samples / (time.perf_counter() - start)

            row = [
                threads,
                batch,
                _best_rate(plain, repeats),
                _best_rate(lambda: dp("ghost"), repeats),
                _best_rate(lambda: dp("hooks"), repeats),
            ]
            rows.append(row)
            print(
                f"threads {threads} batch {batch}: plain {row[2]:,.0f}/s  DP ghost {row[3]:,.0f}/s"
                f"  DP hooks {row[4]:,.0f}/s",
                flush=True,
            )
    return rows


def round_times(result: FLRunResult) -> tuple[float, float, float]:
    seconds = [r["seconds"] for r in result.rounds]
    later = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
    return seconds[0], later, result.wall_s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", help="Markdown file to update (docs/benchmarks.md)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="simulation rounds to time")
    p.add_argument("--skip-deployment", action="store_true")
    p.add_argument(
        "--threads",
        default="1",
        help="torch threads to try, comma-separated (a simulated site uses 1; 2 threads on a "
        "2-core machine shared with other jobs measure the neighbours)",
    )
    args = p.parse_args()

    base = load_config(ROOT / "configs" / "baselines.yml", CompareConfig).federated
    site_rows = min(ROWS, len(load_federated_data(base).train_rows[0]))
    rows = throughput(base, args.repeats, [int(t) for t in args.threads.split(",")])

    tmp = Path(tempfile.mkdtemp(prefix="bench-fl-"))
    sim_cfg = base.model_copy(
        update={
            "federation": base.federation.model_copy(update={"rounds": args.rounds}),
            "runs_dir": tmp,
        }
    )
    sim = round_times(simulate(sim_cfg, tmp / "simulation"))
    print(f"simulation: round 1 {sim[0]:.1f}s, later rounds {sim[1]:.1f}s, run {sim[2]:.0f}s")
    dep = None
    if not args.skip_deployment:
        dep_cfg = load_config(ROOT / "configs" / "fed_dp_small.yml", FLConfig)
        dep_cfg = dep_cfg.model_copy(update={"runs_dir": tmp})
        dep = round_times(deploy_local(dep_cfg, tmp / "deployment", work_dir=tmp / "work"))
        print(f"deployment: round 1 {dep[0]:.1f}s, later rounds {dep[1]:.1f}s, run {dep[2]:.0f}s")

    command = "python benchmarks/bench_fl.py " + " ".join(sys.argv[1:])
    lines = [
        "## Federated training: DP-SGD cost and round wall time",
        "",
        f"- Machine: {machine_info()}",
        f"- Command: `{command}` (commit {git_commit()}, {datetime.now(UTC):%Y-%m-%d})",
        f"- Local training: one epoch over {site_rows} rows (x 256) of site 0 of the synthetic "
        f"default, MLP [128, 32], Adam; whole call timed (Opacus setup included), best of "
        f"{args.repeats} after a warm-up; samples/s. DP: max_grad_norm 0.05, Poisson sampling.",
        "",
        "| torch threads | batch | plain Adam | DP-SGD, ghost clipping | DP-SGD, per-sample hooks "
        "| DP ghost / plain |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r[0]} | {r[1]} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:,.0f} | {r[3] / r[2]:.2f} |"
            for r in rows
        ],
        "",
        "Round wall time (sampling -> local DP training -> aggregation -> federated evaluation ->"
        " server-side public loss), real Flower processes on loopback:",
        "",
        "| engine | sites | rounds | round 1 (cold start) | later rounds (median) | whole run |",
        "|---|---:|---:|---:|---:|---:|",
        f"| simulation (Ray, 1 CPU per ClientApp) | {base.sites.n_sites} | {args.rounds} "
        f"| {sim[0]:.1f} s | {sim[1]:.1f} s | {sim[2]:.0f} s |",
    ]
    if dep is not None:
        lines.append(
            f"| deployment (3 SuperNodes, TLS + node auth, a process per message) | 3 | 3 "
            f"| {dep[0]:.1f} s | {dep[1]:.1f} s | {dep[2]:.0f} s |"
        )
    lines += [
        "",
        "The machine is shared with other jobs: take wall times as indicative. In the deployment "
        "engine every message starts a fresh ClientApp process (imports of torch, Opacus, "
        "Flower) and SuperNodes poll every 3 s, which dominates a round on this data.",
    ]
    if args.out:
        update_section(Path(args.out), SECTION, lines)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
