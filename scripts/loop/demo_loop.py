"""``make demo-loop``: the living loop with real processes on 127.0.0.1, measured.

    python scripts/loop/demo_loop.py [--sites 2] [--rate 400] [--out docs/loop.md]

Starts a Kafka-protocol broker (Tansu), one coordinator (``secureai coordinator``: SuperLink with
TLS and SuperNode authentication, drift inbox, trigger) and, per site, a scoring pipeline
(``secureai run``: its own topic, its own copy of the model repository, the in-process engine
following it, a training window) and a sidecar (``secureai sidecar``: SuperNode + drift
reports). Then it streams synthetic events into every site at ``--rate`` events/s:

1. **before**: the organisation's usual traffic with 1% attacks of every kind;
2. **drift** (from ``--before-s`` on): a third of the users adopt a new SaaS app
   (``synthetic/drift.py``) and a rare exfiltration campaign starts (0.4% of events), on top of
   the usual attacks. The sites' flagged rates climb, their sidecars report drift, the
   coordinator starts a federated run (DP-SGD on each site's window, FedMedian), each site
   gates the result on its own held-out rows and publishes it; each pipeline switches;
3. **after**: the same drifted traffic for ``--after-s`` once every site serves the new version.

Every event is matched by id to its score record or dead letter (read back from the broker).
Per site it prints: false-positive rate on normal traffic before the drift, after it with the
old version and with the loop's new version; recall on the attack kinds before and after;
epsilon spent (the site's ledger); versions served; seconds from the drift to the new version
scoring; events without an output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from federated.certs import make_node_keys  # noqa: E402
from federated.launcher import free_port  # noqa: E402
from morpheus_ext.markdown_sections import update_section  # noqa: E402
from morpheus_ext.stages.input.kafka_source import ensure_topics  # noqa: E402
from scripts.kafka.broker import KafkaBroker  # noqa: E402
from synthetic import SyntheticConfig, generate  # noqa: E402
from synthetic.drift import adopt_new_app  # noqa: E402

TARGET_FPR = 0.01
CAMPAIGN_KIND = "exfiltration"


@dataclass
class Site:
    name: str
    index: int
    root: Path
    topic: str
    scores: str
    dead: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    produced: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_ids: set[str] = field(default_factory=set)
    keys: Any = None


def _stream(site: int, phase: str, n: int, seed: int) -> pd.DataFrame:
    """Synthetic events of one phase, event ids unique per site and phase."""
    start = "2026-11-10T00:00:00Z"
    usual = generate(
        SyntheticConfig(n_events=n, seed=seed, population_seed=0, anomaly_rate=0.01, start=start)
    )
    if phase == "before":
        usual["drifted"] = False
        frame = usual
    else:
        usual = adopt_new_app(usual, start=start, seed=seed)
        campaign = generate(
            SyntheticConfig(
                n_events=max(1, n // 25),
                seed=seed + 1,
                population_seed=0,
                anomaly_rate=0.1,
                anomaly_kinds=[CAMPAIGN_KIND],
                start=start,
            )
        )
        campaign = campaign[campaign["label"] == 1].assign(drifted=False)
        frame = pd.concat([usual, campaign]).sample(frac=1.0, random_state=seed)
    frame = frame.reset_index(drop=True)
    frame["event_id"] = [f"s{site}-{phase}-{i}" for i in range(len(frame))]
    return frame


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        args,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _start_triton(
    site: Site, grpc_port: int, http_port: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """The site's own Triton (CPU harness) in poll mode on the site's repository: a version
    renamed in is served ~2.5 s later (scripts/triton/README.md)."""
    proc = _spawn(
        [
            sys.executable,
            str(ROOT / "scripts" / "triton" / "serve.py"),
            "--repository", str(site.root / "model_repository"),
            "--model-control-mode", "poll",
            "--poll-secs", "1",
            "--grpc-port", str(grpc_port),
            "--http-port", str(http_port),
            "--metrics-port", str(free_port()),
            "--workdir", str(site.root / "triton"),
            "--timeout", "120",
        ],
        site.root / "triton.log",
        env,
    )  # fmt: skip
    deadline = time.monotonic() + 150
    while not _listening(http_port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"{site.name}: Triton did not start:\n"
                + (site.root / "triton.log").read_text()[-3000:]
            )
        time.sleep(0.5)
    return proc


def _reader(bootstrap: str, site: Site, stop: threading.Event) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-reader-{site.name}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([site.scores, site.dead])
    while not stop.is_set():
        for msg in consumer.consume(2000, 0.2):
            if msg.error() is not None or msg.value() is None:
                continue
            doc = orjson.loads(msg.value())
            if msg.topic() == site.scores:
                site.outputs[str(doc["event_id"])] = {
                    "version": int(doc["model"]["version"]),
                    "flagged": bool(doc["is_anomaly"]),
                    "at": time.time(),
                }
            else:
                original = doc.get("event_id") or doc.get("key")
                site.dead_ids.add(str(original))
    consumer.close()


def run_demo(
    work: Path,
    n_sites: int = 2,
    rate: float = 400.0,
    before_s: float = 40.0,
    after_s: float = 40.0,
    timeout_s: float = 540.0,
    log: Any = print,
    sustain_s: float = 40.0,
    engine: str = "inprocess",
) -> dict[str, Any]:
    """Run the whole demo in ``work``; returns the measured results per site.

    ``engine="triton"``: each site's pipeline scores on its own Triton (the CPU harness,
    ``scripts/triton/serve.py``, poll mode on the site's repository) and its sidecar confirms
    each published version with that server before the site counts it as published."""
    t_start = time.monotonic()
    outer_log = log

    def log(msg: str) -> None:  # every line says when (a slow or stuck phase shows itself)
        outer_log(f"[{time.monotonic() - t_start:6.1f}s] {msg}")

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    python = sys.executable
    broker = KafkaBroker(work / "broker").start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    readers: list[threading.Thread] = []
    sites = [
        Site(f"site-{i}", i, work / f"site-{i}", f"events-{i}", f"scores-{i}", f"dlq-{i}")
        for i in range(n_sites)
    ]
    try:
        for s in sites:
            ensure_topics(broker.bootstrap, {s.topic: 2, s.scores: 2, s.dead: 1})
            shutil.copytree(ROOT / "triton_model_repository", s.root / "model_repository")
            s.keys = make_node_keys(s.root / "keys", s.name)
        # ---- the coordinator
        coord_dir = work / "coordinator"
        reports_port, superlink_port = free_port(), free_port()
        run_config = yaml.safe_load((ROOT / "configs" / "loop_fed.yml").read_text())
        run_config["sites"]["n_sites"] = n_sites
        run_config["federation"].update(
            {"min_available_clients": n_sites, "min_train_clients": n_sites}
        )
        run_config["window"]["hours"] = 1.0
        run_config["runs_dir"] = str(coord_dir / "runs")
        _write_yaml(coord_dir / "loop_fed.yml", run_config)
        coordinator_yml = _write_yaml(
            coord_dir / "coordinator.yml",
            {
                "run_config": str(coord_dir / "loop_fed.yml"),
                "initial_repository": str(ROOT / "triton_model_repository"),
                "work_dir": str(coord_dir),
                "superlink_port": superlink_port,
                "authorized_keys": [str(s.keys.public_key) for s in sites],
                "reports_port": reports_port,
                "triggers": {
                    "schedule_interval_s": None,
                    "min_sites": 1,
                    "cooldown_s": 30,
                    "report_max_age_s": 60,
                    "drift_sustain_s": sustain_s,
                },
                "poll_s": 1.0,
                "max_runs": 1,
            },
        )
        coordinator = _spawn(
            [python, "-m", "pipelines.cli", "coordinator", "--config", str(coordinator_yml)],
            coord_dir / "coordinator.log",
            env,
        )
        procs.append(coordinator)
        deadline = time.monotonic() + 120
        while not (coord_dir / "pki" / "ca.crt").is_file() or not _listening(reports_port):
            if coordinator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the coordinator did not start:\n"
                    + (coord_dir / "coordinator.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        # ---- per site: (its Triton,) the pipeline and the sidecar
        for s in sites:
            inference: dict[str, Any] = {
                "engine": "inprocess",
                "repository": str(s.root / "model_repository"),
                "threads": 1,
                "follow_repository": True,
            }
            triton_http: str | None = None
            if engine == "triton":
                grpc_port, http_port = free_port(), free_port()
                s.procs.append(_start_triton(s, grpc_port, http_port, env))
                inference = {
                    "engine": "triton",
                    "url": f"127.0.0.1:{grpc_port}",
                    "connect_timeout_s": 120,
                }
                triton_http = f"http://127.0.0.1:{http_port}"
            pipeline_yml = _write_yaml(
                s.root / "pipeline.yml",
                {
                    "name": f"pipeline-{s.name}",
                    "kafka": {
                        "bootstrap_servers": broker.bootstrap,
                        "topics": [s.topic],
                        "group_id": f"scoring-{s.name}",
                        "scores_topic": s.scores,
                        "dead_letter_topic": s.dead,
                        "batch_size": 1024,
                        # fuller batches (~200 events, not ~20 every 50 ms): a batch costs
                        # ~6 ms whatever its size, and with a dozen processes on 2 cores the
                        # loop's CPU decides how long it takes
                        "batch_timeout_ms": 500,
                        "batch_idle_ms": 500,
                    },
                    "inference": inference,
                    "training_window": {
                        "path": str(s.root / "window"),
                        "flush_interval_s": 2.0,
                    },
                    "metrics_port": 0,
                },
            )
            s.procs.append(
                _spawn(
                    [python, "-m", "pipelines.cli", "run", "--config", str(pipeline_yml)],
                    s.root / "pipeline.log",
                    env,
                )
            )
            sidecar_yml = _write_yaml(
                s.root / "sidecar.yml",
                {
                    "site": s.name,
                    "index": s.index,
                    "window": str(s.root / "window"),
                    "repository": str(s.root / "model_repository"),
                    "ledger_dir": str(s.root / "ledger"),
                    "superlink": f"127.0.0.1:{superlink_port}",
                    "root_certificates": str(coord_dir / "pki" / "ca.crt"),
                    "auth_private_key": str(s.keys.private_key),
                    "coordinator_url": f"http://127.0.0.1:{reports_port}",
                    "report_interval_s": 5.0,
                    "drift": {"hours": 0.01, "min_rows": 400, "flagged_ratio": 3.0},
                    "work_dir": str(s.root / "sidecar"),
                    "triton_url": triton_http,
                },
            )
            s.procs.append(
                _spawn(
                    [python, "-m", "pipelines.cli", "sidecar", "--config", str(sidecar_yml)],
                    s.root / "sidecar.log",
                    env,
                )
            )
            procs.extend(s.procs)
            reader = threading.Thread(target=_reader, args=(broker.bootstrap, s, stop))
            reader.start()
            readers.append(reader)
        # ---- the stream
        n_before = int(rate * before_s)
        n_after_max = int(rate * timeout_s)
        streams = {
            s.name: {
                "before": _stream(s.index, "before", n_before, 100 + s.index),
                "drift": _stream(s.index, "drift", n_after_max, 200 + s.index),
            }
            for s in sites
        }
        # Few, full batches: on Tansu's memory storage a fetch costs more with every batch in
        # the partition (docs/kafka.md); at 20 ms the broker saturated ~8 minutes in.
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 500})
        progress = RunProgress(coord_dir, int(run_config["federation"]["rounds"]), log)
        log(f"streaming {rate:.0f} events/s per site; drift starts after {before_s:.0f} s")
        drift_at: float | None = None
        switched: dict[str, float] = {}
        sent = 0
        t0 = time.monotonic()
        phase = "before"
        cursor = 0
        after_until: float | None = None
        while True:
            now = time.monotonic()
            if phase == "before" and now - t0 >= before_s:
                phase, cursor, drift_at = "drift", 0, now
                log("drift injected: a third of the users adopt a new app; a campaign starts")
            due_n = int((now - (drift_at or t0)) * rate)
            for s in sites:
                # The events due since the last pass, as one slice (a row at a time through
                # ``iloc`` cost this loop a core's worth of pandas, taken from the sites' runs).
                frame = streams[s.name][phase]
                upto = min(due_n, len(frame))
                for row in frame.iloc[cursor:upto].to_dict("records"):
                    doc = {k: _plain(v) for k, v in row.items() if k != "drifted"}
                    producer.produce(s.topic, orjson.dumps(doc), key=row["event_id"])
                    s.produced[row["event_id"]] = {
                        "phase": phase,
                        "label": int(row["label"]),
                        "kind": row["anomaly_kind"],
                        "drifted": bool(row["drifted"]),
                        "sent": now,
                    }
                    sent += 1
            cursor = due_n
            producer.poll(0)
            progress.poll()
            for s in sites:
                if s.name not in switched and any(
                    o["version"] > 1 for o in list(s.outputs.values())[-2000:]
                ):
                    switched[s.name] = time.monotonic()
                    log(f"{s.name} now scores with a new version")
            # A site whose gate refused the run's candidate keeps its version (the gate did its
            # job: the candidate lost detection or flags too much); it is settled too.
            settled = set(switched) | (progress.refused - set(switched))
            if phase == "drift" and after_until is None and len(settled) == len(sites):
                after_until = time.monotonic() + (after_s if switched else 0.0)
                kept = sorted(progress.refused - set(switched))
                log(
                    "every site switched"
                    + (f" but {', '.join(kept)} (its gate refused the candidate)" if kept else "")
                    + f"; {after_s if switched else 0:.0f} s more of drifted traffic"
                )
            if after_until is not None and time.monotonic() >= after_until:
                break
            if phase == "drift" and cursor >= n_after_max:
                break
            if time.monotonic() - t_start > timeout_s:
                log("timeout: not every site switched")
                for line in _tails(work, sites):
                    log(line)
                break
            if coordinator.poll() is not None and len(switched) < len(sites):
                pass  # max_runs reached (or failed): keep streaming until the timeout
            time.sleep(0.05)
        producer.flush(30)
        # ---- wait for every produced event to have an output
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            missing = sum(
                1 for s in sites for e in s.produced if e not in s.outputs and e not in s.dead_ids
            )
            if missing == 0:
                break
            time.sleep(0.5)
        stop.set()
        for r in readers:
            r.join(timeout=30)
        results = {s.name: _measure(s, drift_at or t0, switched.get(s.name)) for s in sites}
        probe = _probe_events()
        for s in sites:
            results[s.name].update(_probe(s, probe))
        state = coord_dir / "coordinator.json"  # the coordinator exits after max_runs
        runs = json.loads(state.read_text()).get("runs", []) if state.is_file() else []
        run = runs[-1] if runs else {}
        keys = ("trigger", "status", "seconds", "fl_run_id", "rounds_completed", "error")
        return {
            "sites": results,
            "run": {
                **{k: run.get(k) for k in keys},
                # per site: published, or refused with the gate's numbers (why a site kept v1)
                "site_publish": {
                    name: o.get("outcome") for name, o in (run.get("site_publish") or {}).items()
                },
            },
            "wall_s": time.monotonic() - t_start,
            "sent": sent,
        }
    finally:
        stop.set()
        for proc in reversed(procs):
            _stop(proc)
        broker.stop()


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RunProgress:
    """Logs the coordinator's federated run as it goes (polled by the stream loop, at most
    once a second): its start, each round (:class:`federated.runs.RoundProgress`), and each
    site's gate outcome once it ends."""

    def __init__(self, coord_dir: Path, rounds: int, log: Any) -> None:
        self.coord_dir, self.rounds, self.log = coord_dir, rounds, log
        self.rounds_progress: Any = None
        self.ended = False
        self.refused: set[str] = set()
        """Sites whose gate refused the run's candidate (known once the run ended)."""
        self.next_at = 0.0

    def poll(self) -> None:
        from federated.runs import RoundProgress

        if self.ended or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + 1.0
        if self.rounds_progress is None:
            runs = sorted((self.coord_dir / "runs").glob("*/config.yaml"))
            if not runs:
                return
            self.log(f"federated run started: {runs[-1].parent.name}")
            self.rounds_progress = RoundProgress(runs[-1].parent, self.rounds, stream=self)
        self.rounds_progress()
        state = self.coord_dir / "coordinator.json"
        with contextlib.suppress(OSError, ValueError):
            runs_done = json.loads(state.read_text()).get("runs") if state.is_file() else None
            if runs_done:
                run = runs_done[-1]
                self.ended = True
                self.log(f"federated run {run.get('status')} in {run.get('seconds', 0):.0f} s")
                for name, outcome in (run.get("site_publish") or {}).items():
                    self.log(f"{name}: {outcome.get('outcome')}")
                    if str(outcome.get("outcome")).startswith("refused"):
                        self.refused.add(name)

    def write(self, text: str) -> None:  # RoundProgress's stream
        for line in text.splitlines():
            if line.strip():
                self.log(line.strip())

    def flush(self) -> None:
        pass


def _tails(work: Path, sites: list[Site], n: int = 3) -> list[str]:
    """The last lines of the coordinator's and each sidecar's log (no events: counts and
    outcomes only), for a run that timed out."""
    logs = [work / "coordinator" / "coordinator.log"] + [s.root / "sidecar.log" for s in sites]
    lines = []
    for path in logs:
        text = path.read_text(errors="replace").splitlines() if path.is_file() else []
        lines += [f"{path.parent.name}/{path.name}: {line}" for line in text[-n:]]
    return lines


def _measure(site: Site, drift_at: float, switched_at: float | None) -> dict[str, Any]:
    rows = []
    for event_id, meta in site.produced.items():
        out = site.outputs.get(event_id)
        rows.append(
            {
                **meta,
                "version": None if out is None else out["version"],
                "flagged": None if out is None else out["flagged"],
                "dead": event_id in site.dead_ids,
            }
        )
    df = pd.DataFrame(rows)
    scored = df[df["version"].notna()]

    def rate(mask: pd.Series) -> float | None:
        part = scored[mask.reindex(scored.index, fill_value=False)]
        return None if part.empty else float(part["flagged"].mean())

    normal, attack = scored["label"] == 0, scored["label"] == 1
    old, new = scored["version"] == 1, scored["version"] > 1
    before, drift = scored["phase"] == "before", scored["phase"] == "drift"
    usual_attack = attack & (scored["kind"] != CAMPAIGN_KIND)
    ledger = site.root / "ledger" / f"{site.name}.json"
    eps = json.loads(ledger.read_text())["spent_epsilon"] if ledger.is_file() else None
    return {
        "fpr_before": rate(normal & before & old),
        "fpr_drift_old": rate(normal & drift & old),
        "fpr_drift_new": rate(normal & drift & new),
        "recall_before": rate(usual_attack & before & old),
        "recall_after": rate(usual_attack & drift & new),
        "campaign_recall_old": rate(attack & drift & old & (scored["kind"] == CAMPAIGN_KIND)),
        "campaign_recall_new": rate(attack & drift & new & (scored["kind"] == CAMPAIGN_KIND)),
        "epsilon": eps,
        "versions": sorted(int(v) for v in scored["version"].unique()),
        "drift_to_new_s": None if switched_at is None else switched_at - drift_at,
        "produced": len(df),
        "dead_letters": int(df["dead"].sum()),
        "without_output": int((df["version"].isna() & ~df["dead"]).sum()),
        "new_version_events": int(new.sum()),
    }


def _probe_events() -> pd.DataFrame:
    """A fixed labelled set after the drift (5% attacks of every kind): recall and FPR of each
    served version measured on the same 20,000 events, free of the stream's sampling noise."""
    start = "2026-11-10T00:00:00Z"
    events = generate(
        SyntheticConfig(
            n_events=20_000, seed=999, population_seed=0, anomaly_rate=0.05, start=start
        )
    )
    return adopt_new_app(events, start=start, seed=999)


def _probe(site: Site, probe: pd.DataFrame) -> dict[str, Any]:
    import numpy as np

    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.model_repository import ModelRepository
    from morpheus_ext.stages.inference.inprocess import InProcessEngine
    from morpheus_ext.stages.preprocess.featurizer import Featurizer

    spec = load_spec("security_events")
    batch = Featurizer(spec).transform(probe)
    labels = batch.frame["label"].to_numpy()
    out: dict[str, Any] = {}
    repo = site.root / "model_repository"
    versions = ModelRepository(repo).versions("dfp_autoencoder")
    for tag, version in (("old", versions[0]), ("new", versions[-1])):
        engine = InProcessEngine(repo, spec.spec_hash, autoencoder_version=version, threads=1)
        result = engine.infer(np.asarray(batch.tensor))
        flagged = result["ANOMALY_SCORE"].reshape(-1) > result["THRESHOLD"].reshape(-1)[0]
        out[f"probe_recall_{tag}"] = float(flagged[labels == 1].mean())
        out[f"probe_fpr_{tag}"] = float(flagged[labels == 0].mean())
    return out


def table(result: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2%}"

    lines = [
        "| site | FPR before drift | FPR after drift, old version | FPR after drift, new "
        "version | recall before / after (stream) | recall old / new version (probe) | "
        "FPR old / new version (probe) | campaign recall old / new | epsilon spent | "
        "versions served | drift -> new version | events without output |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, r in result["sites"].items():
        secs = "-" if r["drift_to_new_s"] is None else f"{r['drift_to_new_s']:.0f} s"
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        lines.append(
            f"| {name} | {pct(r['fpr_before'])} | {pct(r['fpr_drift_old'])} | "
            f"{pct(r['fpr_drift_new'])} | {pct(r['recall_before'])} / {pct(r['recall_after'])} | "
            f"{pct(r.get('probe_recall_old'))} / {pct(r.get('probe_recall_new'))} | "
            f"{pct(r.get('probe_fpr_old'))} / {pct(r.get('probe_fpr_new'))} | "
            f"{pct(r['campaign_recall_old'])} / {pct(r['campaign_recall_new'])} | {eps} | "
            f"{', '.join(map(str, r['versions']))} | {secs} | {r['without_output']} of "
            f"{r['produced']:,} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s per site")
    parser.add_argument("--before-s", type=float, default=40.0)
    parser.add_argument("--after-s", type=float, default=40.0)
    parser.add_argument("--timeout-s", type=float, default=540.0)
    parser.add_argument(
        "--sustain-s", type=float, default=40.0, help="drift reported this long starts a run"
    )
    parser.add_argument(
        "--engine",
        choices=("inprocess", "triton"),
        default="inprocess",
        help="what each site's pipeline scores with (triton: one CPU Triton per site)",
    )
    parser.add_argument("--work-dir", help="keep every process's files and logs here")
    parser.add_argument("--out", help="Markdown file to update (section between markers)")
    args = parser.parse_args()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="demo-loop-"))

    def log(msg: str) -> None:
        print(msg, flush=True)

    result = run_demo(
        work,
        args.sites,
        args.rate,
        args.before_s,
        args.after_s,
        args.timeout_s,
        log,
        args.sustain_s,
        args.engine,
    )
    text = table(result)
    run = result["run"]
    print(text)
    print(
        f"run: {run.get('trigger')} -> {run.get('status')} in {run.get('seconds') or 0:.0f} s; "
        f"demo wall time {result['wall_s']:.0f} s; files in {work}"
    )
    if args.out:
        command = "python scripts/loop/demo_loop.py " + " ".join(sys.argv[1:])
        section = "\n".join(
            [
                "## Measured: `make demo-loop`",
                "",
                f"- Command: `{command}` ({datetime.now(UTC):%Y-%m-%d}); 2 cores, every "
                "process on this machine (broker, coordinator, per site a pipeline and a "
                "sidecar, the producer and readers).",
                f"- {args.rate:.0f} events/s per site; drift after {args.before_s:.0f} s; "
                f"trigger: {run.get('trigger')}; federated run {run.get('seconds') or 0:.0f} s; "
                f"demo {result['wall_s']:.0f} s. Target false-positive rate "
                f"{TARGET_FPR:.0%}.",
                "",
                text,
            ]
        )
        update_section(Path(args.out), "demo_loop", section.splitlines())
    ok = all(
        r["without_output"] == 0 and r["drift_to_new_s"] is not None
        for r in result["sites"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
