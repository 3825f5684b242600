"""Monitoring files checked by real tools: promtool for the alert rules (syntax and unit tests),
the dashboard generator for the committed dashboards and their copies in the Helm chart.

(Whether every dashboard query returns data is tests/ops/test_ops_dashboards.py, against a real
Prometheus.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = REPO_ROOT / "docker" / "prometheus"
CHART = REPO_ROOT / "helm" / "secureai"


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed: run scripts/ops/install_prometheus.sh")
    return found


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "SUCCESS: 13 rules found" in check.stdout, check.stdout
    unit = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule that no longer fires on its failure makes the unit tests fail."""
    shutil.copy(PROM_DIR / "alerts_test.yml", tmp_path)
    rules = (PROM_DIR / "alerts.yml").read_text()
    broken = rules.replace(
        "min by (engine) (secureai_inference_up) == 0",
        "min by (engine) (secureai_inference_up) < 0",
    )
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    unit = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode != 0 and "SecureAIInferenceBackendDown" in unit.stdout + unit.stderr


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    import re

    import yaml

    docs = (REPO_ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            link = rule["annotations"]["runbook"]
            assert link.startswith("docs/operations.md#"), rule["alert"]
            assert link.split("#", 1)[1] in anchors, f"{rule['alert']}: {link}"


def test_dashboards_are_generated_and_copied_into_the_chart() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/ops/build_dashboards.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for path in (REPO_ROOT / "dashboards").glob("*.json"):
        assert (CHART / "dashboards" / path.name).read_text() == path.read_text()
    assert (CHART / "files" / "alerts.yml").read_text() == (PROM_DIR / "alerts.yml").read_text()


def test_dashboard_json_is_well_formed_for_grafana() -> None:
    uids = set()
    for path in sorted((REPO_ROOT / "dashboards").glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["uid"] not in uids and len(doc["uid"]) <= 40
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in doc["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (path.name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), (path.name, panel["title"])
    assert uids == {"secureai-inference", "secureai-fedmetrics"}
