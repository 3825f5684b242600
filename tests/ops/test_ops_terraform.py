"""infra/ (Terraform) validated offline: ``terraform fmt`` and ``terraform validate`` with the
providers of a local filesystem mirror (``terraform init -plugin-dir``), no network.

The EKS module needs only hashicorp/aws; the release module and the example root also need
hashicorp/helm. The GKE module needs hashicorp/google (and its example root hashicorp/helm). A
module whose providers are not in the mirror is skipped with the reason (it is validated where
they are); what needs no provider (formatting, variables declared and used, module arguments,
the GPU pool matching the chart) is checked everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


def terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform is not installed here; infra/ is validated where it is")
    return found


def plugin_mirror() -> Path:
    """``$TF_PLUGIN_MIRROR``, else a ``registry.terraform.io`` folder at most 3 levels deep."""
    if os.environ.get("TF_PLUGIN_MIRROR"):
        return Path(os.environ["TF_PLUGIN_MIRROR"])
    for pattern in (
        "registry.terraform.io",
        "*/registry.terraform.io",
        "*/*/registry.terraform.io",
    ):
        for hit in Path("/").glob(pattern):
            return hit.parent
    pytest.skip("no local Terraform provider mirror (set TF_PLUGIN_MIRROR to one)")


def providers_in_mirror(mirror: Path) -> set[str]:
    root = mirror / "registry.terraform.io"
    return {f"{ns.name}/{p.name}" for ns in root.iterdir() for p in ns.iterdir()}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def validate(module: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """init (offline, from the mirror) + validate a copy of ``module`` (nothing lands in infra/)."""
    tf, mirror = terraform(), plugin_mirror()
    work = tmp_path / "infra"
    shutil.copytree(INFRA, work, ignore=shutil.ignore_patterns(".terraform*"))
    target = work / module.relative_to(INFRA)
    init = run([tf, "init", "-backend=false", "-input=false", f"-plugin-dir={mirror}"], target)
    assert init.returncode == 0, init.stdout + init.stderr
    return run([tf, "validate", "-no-color"], target)


def needs(*providers: str) -> None:
    missing = set(providers) - providers_in_mirror(plugin_mirror())
    if missing:
        pytest.skip(
            f"provider(s) {sorted(missing)} not in the local mirror {plugin_mirror()}; "
            "validate this module where they are available"
        )


def test_terraform_files_are_formatted() -> None:
    out = run([terraform(), "fmt", "-check", "-recursive", "-diff", str(INFRA)], REPO_ROOT)
    assert out.returncode == 0, out.stdout


def test_eks_gpu_module_validates(tmp_path: Path) -> None:
    needs("hashicorp/aws")
    out = validate(INFRA / "modules" / "eks-gpu", tmp_path)
    assert out.returncode == 0 and "Success" in out.stdout, out.stdout + out.stderr


def test_validate_rejects_a_broken_module(tmp_path: Path) -> None:
    """The validator really checks the provider schema (a misspelt argument fails)."""
    needs("hashicorp/aws")
    broken = tmp_path / "src"
    shutil.copytree(INFRA, broken)
    main = broken / "modules" / "eks-gpu" / "main.tf"
    main.write_text(main.read_text().replace("node_role_arn   =", "node_roles_arn  =", 1))
    tf, mirror = terraform(), plugin_mirror()
    target = broken / "modules" / "eks-gpu"
    assert run([tf, "init", "-backend=false", f"-plugin-dir={mirror}"], target).returncode == 0
    out = run([tf, "validate", "-no-color"], target)
    assert out.returncode != 0 and "node_roles_arn" in out.stdout + out.stderr


def test_gpu_node_group_matches_the_charts_gpu_profile() -> None:
    import yaml

    main = (INFRA / "modules" / "eks-gpu" / "main.tf").read_text()
    values = yaml.safe_load((REPO_ROOT / "helm" / "secureai" / "values-gpu.yaml").read_text())
    (key, value), = values["triton"]["nodeSelector"].items()  # fmt: skip
    assert f'gpu_label = {{ "{key}" = "{value}" }}' in main
    toleration = values["triton"]["tolerations"][0]
    assert toleration["key"] == "nvidia.com/gpu" and toleration["effect"] == "NoSchedule"
    assert 'key    = "nvidia.com/gpu"' in main and 'effect = "NO_SCHEDULE"' in main


@pytest.mark.parametrize("module", ["modules/secureai-release", "envs/example"])
def test_release_modules_validate_where_helm_provider_exists(module: str, tmp_path: Path) -> None:
    needs("hashicorp/aws", "hashicorp/helm")
    out = validate(INFRA / module, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def variable_blocks(module: Path) -> dict[str, str]:
    """``variable "<name>" { ... }`` bodies of a module, by name (a block ends at a ``}`` line)."""
    text = "\n".join(tf_texts(module))
    return dict(re.findall(r'^variable "(\w+)" \{\n(.*?)^\}', text, re.M | re.S))


def declared_variables(module: Path) -> set[str]:
    return set(variable_blocks(module))


def tf_texts(module: Path) -> list[str]:
    return [p.read_text() for p in sorted(module.glob("*.tf"))]


def module_arguments(root: Path, name: str) -> set[str]:
    """Argument names of ``module "<name>" { ... }`` in ``root`` (flat ``key = value`` lines)."""
    text = (root / "main.tf").read_text()
    body = re.search(rf'^module "{name}" {{\n(.*?)^}}', text, re.M | re.S)
    assert body, f"module {name} not found in {root}"
    return set(re.findall(r"^  (\w+)\s+=", body.group(1), re.M))


def test_gke_gpu_module_validates(tmp_path: Path) -> None:
    needs("hashicorp/google")
    out = validate(INFRA / "modules" / "gke-gpu", tmp_path)
    assert out.returncode == 0 and "Success" in out.stdout, out.stdout + out.stderr


def test_gke_example_validates(tmp_path: Path) -> None:
    needs("hashicorp/google", "hashicorp/helm")
    out = validate(INFRA / "envs" / "example-gke", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("module", ["eks-gpu", "gke-gpu", "secureai-release"])
def test_every_variable_is_declared_and_used(module: str) -> None:
    """What ``terraform validate`` would say about variables, checked without the provider."""
    path = INFRA / "modules" / module
    declared = declared_variables(path)
    used = set(re.findall(r"\bvar\.(\w+)", "\n".join(tf_texts(path))))
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"never used: {declared - used}"


@pytest.mark.parametrize(
    ("root", "calls"),
    [
        ("example", {"eks": "eks-gpu", "secureai": "secureai-release"}),
        ("example-gke", {"gke": "gke-gpu", "secureai": "secureai-release"}),
    ],
)
def test_example_roots_pass_only_declared_arguments(root: str, calls: dict[str, str]) -> None:
    for call, module in calls.items():
        args = module_arguments(INFRA / "envs" / root, call) - {"source"}
        variables = declared_variables(INFRA / "modules" / module)
        assert args <= variables, f"{root}: module {call} has no variable {args - variables}"
        blocks = variable_blocks(INFRA / "modules" / module)
        required = {
            v for v, body in blocks.items() if not re.search(r"^\s+default\s+=", body, re.M)
        }
        assert required <= args, f"{root}: module {call} misses {required - args}"


def test_gke_gpu_pool_matches_the_charts_gpu_profile() -> None:
    import yaml

    main = (INFRA / "modules" / "gke-gpu" / "main.tf").read_text()
    values = yaml.safe_load((REPO_ROOT / "helm" / "secureai" / "values-gpu.yaml").read_text())
    (key, value), = values["triton"]["nodeSelector"].items()  # fmt: skip
    assert f'gpu_label = {{ "{key}" = "{value}" }}' in main
    toleration = values["triton"]["tolerations"][0]
    assert toleration == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert 'key    = "nvidia.com/gpu"' in main and 'effect = "NO_SCHEDULE"' in main
    assert "labels          = local.gpu_label" in main
    # GKE installs the driver; the chart asks for the resource the device plugin advertises.
    assert "gpu_driver_installation_config" in main
    assert values["triton"]["gpu"]["resourceName"] == "nvidia.com/gpu"
