"""What enters training from a site's window: an organisation-wide change stays, a rare attack
campaign and analyst-confirmed incidents do not, held-out rows are never trained on."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from federated.site_window import WindowSelection, load_site_rows
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.pipeline import ScoringPipeline
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.input.sources import frame_source
from morpheus_ext.stages.output.training_window import TrainingWindowConfig, TrainingWindowWriter
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate
from synthetic.drift import adopt_new_app

from ..conftest import REPO_ROOT

SPEC = load_spec("security_events")
START = "2026-11-10T00:00:00Z"


def test_org_wide_change_is_kept_and_a_campaign_is_trimmed(tmp_path: Path) -> None:
    usual = generate(
        SyntheticConfig(n_events=12_000, seed=4, population_seed=0, anomaly_rate=0.0, start=START)
    )
    usual = adopt_new_app(usual, start=START, seed=4)
    campaign = generate(
        SyntheticConfig(
            n_events=3000,
            seed=5,
            population_seed=0,
            anomaly_rate=0.05,
            anomaly_kinds=["exfiltration"],
            start=START,
        )
    )
    campaign = campaign[campaign["label"] == 1].assign(drifted=False)
    events = pd.concat([usual, campaign]).sample(frac=1.0, random_state=0).reset_index(drop=True)
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    confirmed = events.loc[events["label"] == 1, "event_id"].iloc[:10]
    (tmp_path / "incidents.txt").write_text("# confirmed by the SOC\n" + "\n".join(confirmed))

    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "triton_model_repository", repo)
    pipeline = ScoringPipeline(Featurizer(SPEC), InProcessEngine(repo, SPEC.spec_hash, threads=1))
    writer = TrainingWindowWriter(TrainingWindowConfig(path=tmp_path / "window"), SPEC.event_id)
    for raw in frame_source(events.drop(columns=["drifted"]), 4096):
        writer.offer(pipeline.process(raw))
    writer.close()

    selection = WindowSelection(exclude_event_ids=tmp_path / "incidents.txt", min_rows=100)
    rows = load_site_rows(tmp_path / "window", SPEC, selection, datetime.now(UTC), seed=0)
    info = rows.info
    train_ids = set(rows.train["event_id"])
    holdout_ids = set(rows.holdout["event_id"])
    assert not train_ids & holdout_ids and not (train_ids | holdout_ids) & set(confirmed)
    by_id = events.set_index("event_id")
    in_train = by_id.loc[sorted(train_ids)]
    eligible = by_id.drop(index=sorted(holdout_ids | set(confirmed)))
    drifted_kept = in_train["drifted"].sum() / eligible["drifted"].sum()
    campaign_kept = (in_train["label"] == 1).sum() / (eligible["label"] == 1).sum()
    # the new app: organisation-wide, learned whole (also the logins whose top field is not
    # the app: they carry the new value); a common value (result=success) is not "new"
    assert drifted_kept >= 0.99, info
    assert set(info["org_wide_new_values"]) == {"dst_app=ai-assistant"}, info
    assert campaign_kept <= 0.1, info  # the exfiltration campaign: not learned as normal
    assert info["excluded"] == 10 and info["org_wide_kept"] > 0
    assert any(p.startswith("result=") or "dst_app" in p for p in info["org_wide_patterns"])
    # held-out rows are drawn before the trim: they carry the campaign as the site saw it
    assert (by_id.loc[sorted(holdout_ids), "label"] == 1).sum() > 0
