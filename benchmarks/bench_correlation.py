"""Cross-site campaign detection on a multi-site synthetic stream, against the generator's truth.

    python benchmarks/bench_correlation.py --out docs/results.md

Per seed: a multi-site stream (``--sites`` sites, the default anomaly kinds plus the opt-in
``campaign`` kind: the same attacker IPs, user agent and country at 2-3 sites within hours),
each site's events scored in-process by its own ``ScoringPipeline`` (the committed model
repository) and grouped by its own ``IncidentTracker`` (site name set); every incident
revision becomes an indicator message (keyed hashes only), fed to one :class:`Correlator` in
event-time order. Measured per indicator-spec choice (``--specs``):

* a **detected campaign** is a campaign id the correlator assigned (its incidents span >= 2
  sites); it is a **true positive** when most of its incidents' flagged events belong to one
  ground-truth campaign *and* the incidents holding that campaign's events are at >= 2 sites;
* **precision** = true positives / detected campaigns;
* **precision (incidents)**: the same with "most of its *incidents* hold an event of one
  ground-truth campaign, at >= 2 sites" (an incident that also absorbed a user's unrelated
  flagged events still counts for the campaign);
* **recall** = ground-truth campaigns seen at >= 2 sites that some true-positive detection
  has as its majority campaign / all ground-truth campaigns at >= 2 sites;
* **covered**: ground-truth campaigns at >= 2 sites whose events are in incidents at >= 2
  sites of one detected campaign, majority or not (lenient recall: counts a campaign merged
  into another one);
* **split**: true positives beyond one per ground-truth campaign (one campaign under two ids,
  e.g. one per attacker IP when no site's incident holds both);
* **detectable**: ground-truth campaigns whose events the model flagged at >= 2 sites (the
  ceiling correlation can reach given the per-site detector);
* **incident precision**: incidents marked as part of a campaign that hold a campaign event.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from morpheus_ext.feature_spec import load_spec  # noqa: E402
from morpheus_ext.pipeline import ScoringPipeline  # noqa: E402
from morpheus_ext.stages.inference.inprocess import InProcessEngine  # noqa: E402
from morpheus_ext.stages.input.sources import jsonl_file_source  # noqa: E402
from morpheus_ext.stages.postprocess.correlation import (  # noqa: E402
    CorrelationConfig,
    Correlator,
    indicator_message,
)
from morpheus_ext.stages.postprocess.incidents import IncidentConfig, IncidentTracker  # noqa: E402
from morpheus_ext.stages.preprocess.featurizer import Featurizer  # noqa: E402
from synthetic import ANOMALY_KINDS, SyntheticConfig, generate, write_events  # noqa: E402

KEY = b"bench-correlation-key-0123456789"
DEFAULT_SPECS = (
    "src_ip",
    "src_ip,user_agent+country",
    "src_ip,user_agent",
    "src_ip,user_agent,device,country",
)


def site_incidents(
    events: Any, site: str, engine: InProcessEngine, spec: Any, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every incident revision of one site (in emission order) and event id -> incident id."""
    path = write_events(events, workdir / f"{site}.jsonl")
    tracker = IncidentTracker(
        IncidentConfig(enabled=True, site=site, checkpoint_path=None, event_ids_in_record=100_000)
    )
    pipeline = ScoringPipeline(Featurizer(spec), engine, incidents=tracker)
    revisions: list[dict[str, Any]] = []
    for raw in jsonl_file_source(path, 4096):
        revisions += pipeline.process(raw).incidents
    revisions += tracker.close_all()
    owner = {eid: r["incident_id"] for r in revisions for eid in r["event_ids"]}
    return revisions, owner


def score(
    revisions: list[dict[str, Any]],
    truth: dict[str, str | None],
    multi_site: set[str],
    fields: list[str],
) -> dict[str, Any]:
    """Correlate all revisions with ``fields`` and score against the ground truth."""
    corr = Correlator(CorrelationConfig(enabled=True, fields=fields))
    ordered = sorted(revisions, key=lambda r: (r["last_seen"], r["site"], r["revision"]))
    member: dict[tuple[str, str], str] = {}
    for r in ordered:
        for n in corr.observe(indicator_message(r, KEY, fields)):
            member[(n["site"], n["incident_id"])] = n["campaign"]["campaign_id"]
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in revisions:
        latest[(r["site"], r["incident_id"])] = r
    campaigns: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for k, cid in member.items():
        campaigns[cid].append(k)
    tp, found, covered = 0, set(), set()
    tp_inc = 0
    marked_ok = 0
    for incs in campaigns.values():
        labels: Counter[str | None] = Counter()
        sites_of: dict[str | None, set[str]] = defaultdict(set)
        for k in incs:
            inc_labels = [truth.get(e) for e in latest[k]["event_ids"]]
            labels.update(inc_labels)
            marked_ok += any(x is not None for x in inc_labels)
            for x in set(inc_labels):
                sites_of[x].add(k[0])
        covered |= {x for x, where in sites_of.items() if x is not None and len(where) >= 2}
        holders = Counter(
            x for k in incs for x in {truth.get(e) for e in latest[k]["event_ids"]} if x
        )
        if holders:
            c, n = holders.most_common(1)[0]
            tp_inc += n * 2 > len(incs) and len(sites_of[c]) >= 2
        top, _ = labels.most_common(1)[0]
        if top is not None and len(sites_of[top]) >= 2:
            tp += 1
            found.add(top)
    return {
        "detected": len(campaigns),
        "tp": tp,
        "tp_inc": tp_inc,
        "found": len(found & multi_site),
        "covered": len(covered & multi_site),
        "marked": len(member),
        "marked_ok": marked_ok,
        "indicators": len(corr.index),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000, help="events per seed")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--specs", nargs="+", default=list(DEFAULT_SPECS))
    parser.add_argument("--repository", default=str(ROOT / "triton_model_repository"))
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    spec = load_spec("security_events")
    engine = InProcessEngine(Path(args.repository), spec.spec_hash)
    totals: dict[str, Counter[str]] = {s: Counter() for s in args.specs}
    gt_total = detectable_total = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-corr-") as tmp:
        for seed in range(1, args.seeds + 1):
            df = generate(
                SyntheticConfig(
                    n_events=args.events,
                    anomaly_rate=0.02,
                    n_sites=args.sites,
                    seed=seed,
                    population_seed=0,
                    days=args.days,
                    start="2026-11-08T00:00:00Z",
                    anomaly_kinds=[*ANOMALY_KINDS, "campaign"],
                )
            )
            truth = dict(zip(df["event_id"], df["campaign_id"], strict=True))
            per_camp = df[df["campaign_id"].notna()].groupby("campaign_id")["site"].nunique()
            multi = {f"{seed}:{c}" for c in per_camp[per_camp >= 2].index}
            truth = {e: (None if c is None else f"{seed}:{c}") for e, c in truth.items()}
            revisions: list[dict[str, Any]] = []
            flagged_sites: dict[str, set[str]] = defaultdict(set)
            for site, events in df.groupby("site", sort=True):
                revs, owner = site_incidents(events, str(site), engine, spec, Path(tmp))
                revisions += revs
                for eid in owner:
                    if truth.get(eid) is not None:
                        flagged_sites[str(truth[eid])].add(str(site))
            gt_total += len(multi)
            detectable_total += sum(len(flagged_sites[c]) >= 2 for c in multi)
            for s in args.specs:
                totals[s].update(score(revisions, truth, multi, s.split(",")))
    engine.close()
    seconds = time.perf_counter() - started
    lines = [
        f"`python benchmarks/bench_correlation.py --seeds {args.seeds} --events {args.events} "
        f"--sites {args.sites} --days {args.days}` ({seconds:.0f} s): {args.seeds} streams of "
        f"{args.events:,} events at {args.sites} sites, the default anomaly kinds plus "
        f"`campaign`; {gt_total} ground-truth campaigns at >= 2 sites, of which "
        f"{detectable_total} had events flagged at >= 2 sites (the ceiling for correlation).",
        "",
        "| indicator specs | detected campaigns | true positives | precision "
        "| precision (incidents) | recall "
        "| recall of detectable | covered | split (extra ids for one campaign) "
        "| incidents marked | ... holding campaign events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in args.specs:
        t = totals[s]
        prec = t["tp"] / t["detected"] if t["detected"] else float("nan")
        rec = t["found"] / gt_total if gt_total else float("nan")
        rec_d = t["found"] / detectable_total if detectable_total else float("nan")
        inc_prec = t["marked_ok"] / t["marked"] if t["marked"] else float("nan")
        cov = t["covered"] / gt_total if gt_total else float("nan")
        prec_i = t["tp_inc"] / t["detected"] if t["detected"] else float("nan")
        lines.append(
            f"| `{s}` | {t['detected']} | {t['tp']} | {prec:.3f} | {prec_i:.3f} | {rec:.3f} "
            f"| {rec_d:.3f} "
            f"| {cov:.3f} | {t['tp'] - t['found']} | {t['marked']} "
            f"| {t['marked_ok']} ({inc_prec:.3f}) |"
        )
    print("\n".join(lines))
    if args.out:
        from report import update_section

        update_section(Path(args.out), "bench_correlation", lines)
    return 0 if np.isfinite(gt_total) else 1


if __name__ == "__main__":
    raise SystemExit(main())
