"""docker-compose.yml, validated without a Docker engine.

* Debian's ``docker-compose`` (1.29) resolves and validates the file (``config -q``), with and
  without the GPU override, and refuses to start without the required secrets;
* everything the file names exists and is read by our code: mounted files (configs are loaded
  by the same loaders the services use), Dockerfiles and what they COPY, environment
  variables, command-line flags (our parser, Flower's own binaries), Prometheus targets,
  Grafana provisioning;
* published ports are loopback-only; the smoke script passes ShellCheck;
* the lean serving image holds what the serving code imports, pinned like pyproject.toml.

(The stack itself runs only where Docker exists: scripts/compose_smoke.sh.)
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GPU_FILE = REPO_ROOT / "docker" / "compose.gpu.yml"
SECRETS = {"SECUREAI_API_TOKEN": "compose-test-token-0123", "GRAFANA_ADMIN_PASSWORD": "pw-0123"}
OUR_IMAGES = ("secureai/pipeline:", "secureai/fl:", "secureai/triton:")
NGC_TRITON = "nvcr.io/nvidia/tritonserver:24.10-py3"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run scripts/ops/install_prometheus.sh")
    return found


def compose(*args: str, files: tuple[Path, ...] = (COMPOSE_FILE,), env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [tool("docker-compose")]
    for f in files:
        cmd += ["-f", str(f)]
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [*cmd, *args],
        cwd=REPO_ROOT,
        env={**base, **(SECRETS if env is None else env)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@cache
def resolved(gpu: bool = False) -> dict[str, Any]:
    files = (COMPOSE_FILE, GPU_FILE) if gpu else (COMPOSE_FILE,)
    out = compose("--profile", "fl", "config", files=files)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = yaml.safe_load(out.stdout)
    return doc


def services() -> dict[str, dict[str, Any]]:
    return dict(resolved()["services"])


def our_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if str(s.get("image", "")).startswith(OUR_IMAGES)}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    out = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2] if isinstance(v, str) else (v["source"], v["target"])
        if source.startswith(("/", ".")):
            out.append((Path(source), target))
    return out


def host_file_for(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file a container path comes from, via the service's bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target:
            return source
        if container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target.rstrip("/")) + 1 :]
    return None


def published_port(port: str | dict[str, Any]) -> int:
    """``127.0.0.1:8000:8000/tcp`` (docker-compose 1.x) or the long form (compose v2)."""
    if isinstance(port, dict):
        return int(port["published"])
    return int(port.split(":")[-2])


def command_args(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return list(cmd) if isinstance(cmd, list) else cmd.split()


# --------------------------------------------------------------------------- the file itself
def test_compose_file_validates_with_and_without_gpu() -> None:
    for files in ((COMPOSE_FILE,), (COMPOSE_FILE, GPU_FILE)):
        out = compose("config", "-q", files=files)
        assert out.returncode == 0, out.stderr
    out = compose("--profile", "fl", "config", "--services")
    assert set(out.stdout.split()) == {
        "redpanda", "topics", "triton", "pipeline", "api", "fl-certs", "superlink",
        "supernode-0", "supernode-1", "fl-run", "prometheus", "grafana",
    }  # fmt: skip
    gpu = resolved(gpu=True)["services"]
    devices = gpu["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services()["triton"]  # CPU by default
    assert services()["triton"]["image"] == "secureai/triton:0.1.0"  # NGC + morpheus_ext


def test_a_broken_file_is_refused(tmp_path: Path) -> None:
    """The validator really validates (unknown key, undefined dependency)."""
    text = COMPOSE_FILE.read_text()
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(text.replace("    shm_size: 1g", "    shm_sise: 1g"))
    assert compose("config", "-q", files=(bad,)).returncode != 0
    bad.write_text(
        text.replace(
            "triton: {condition: service_healthy}", "tritn: {condition: service_healthy}", 1
        )
    )
    assert compose("config", "-q", files=(bad,)).returncode != 0


def test_required_secrets_are_enforced_and_documented() -> None:
    for name in SECRETS:
        out = compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != name})
        assert out.returncode != 0 and name in out.stderr, out.stderr
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert interpolated == set(SECRETS)
    docs = (REPO_ROOT / "docs" / "operations.md").read_text()
    for name in interpolated:
        assert name in docs, f"{name} is not documented in docs/operations.md"


def test_published_ports_are_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", (name, image)


# --------------------------------------------------------------------------- what it names exists
def test_every_bind_mount_exists_in_the_repository() -> None:
    for name, service in services().items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert REPO_ROOT in source.resolve().parents or source.resolve() == REPO_ROOT


def test_mounted_configs_are_read_by_our_loaders() -> None:
    from federated.config import FLConfig
    from morpheus_ext.config_io import load_config
    from pipelines.kafka.config import load_pipeline_config
    from pipelines.rest.config import load_api_config

    svc = services()
    loaded: dict[str, Any] = {}
    for name, service in our_services().items():
        args = command_args(service)
        for i, arg in enumerate(args):
            value = arg.split("=", 1)[1] if arg.startswith("--config=") else None
            if arg == "--config" and i + 1 < len(args):
                value = args[i + 1]
            if value is None:
                continue
            host = host_file_for(service, value)
            assert host is not None and host.is_file(), f"{name}: {value} is not mounted"
            loaded[name] = host
    pipeline = load_pipeline_config(loaded["pipeline"])
    api = load_api_config(loaded["api"])
    fl = load_config(loaded["fl-run"], FLConfig)
    # The names inside the configs are compose's services and the ports it uses.
    assert pipeline.kafka.bootstrap_servers == "redpanda:9092"
    assert pipeline.inference.url.split(":")[0] == "triton" and pipeline.metrics_port == 9108
    assert pipeline.metrics_host == "0.0.0.0"  # reachable by Prometheus on the compose network
    assert api.host == "0.0.0.0" and api.port == 8080 and api.inference.url.startswith("triton:")
    assert api.models_repository is not None
    assert (
        host_file_for(svc["api"], str(api.models_repository))
        == REPO_ROOT / "triton_model_repository"
    )
    assert fl.monitoring.metrics_host == "0.0.0.0" and fl.monitoring.metrics_port == 9400
    assert fl.sites.n_sites == 2 == len([n for n in svc if n.startswith("supernode-")])
    # The env var the API's config names is the one compose sets.
    assert api.auth.token_env in svc["api"]["environment"]


def test_environment_variables_are_read_by_their_program() -> None:
    flwr_src = Path(md.distribution("flwr").locate_file("flwr"))
    flower_text = "\n".join(p.read_text(errors="ignore") for p in flwr_src.rglob("*.py"))
    ours = "\n".join(
        p.read_text()
        for d in ("pipelines", "morpheus_ext", "federated")
        for p in (REPO_ROOT / d).rglob("*.py")
    )
    for name, service in our_services().items():
        for var in service.get("environment", {}):
            if var.startswith("FLWR_"):
                assert f'"{var}"' in flower_text or f"'{var}'" in flower_text, (name, var)
            else:
                api = yaml.safe_load((REPO_ROOT / "docker/compose/api.yml").read_text())
                assert var == api["auth"]["token_env"] or var in ours, (name, var)


def test_dockerfiles_exist_and_copy_only_what_exists() -> None:
    seen = set()
    for name, service in our_services().items():
        build = service["build"]
        dockerfile = Path(build["context"]) / build["dockerfile"]
        assert dockerfile.is_file(), (name, dockerfile)
        seen.add(dockerfile)
    assert {p.name for p in seen} == {"Dockerfile.pipeline", "Dockerfile.fl", "Dockerfile.triton"}
    for dockerfile in seen:
        text = dockerfile.read_text()
        ignore = dockerfile.parent / f"{dockerfile.name}.dockerignore"
        assert ignore.is_file()
        for src in copied(dockerfile):
            assert (REPO_ROOT / src).exists(), f"{dockerfile.name}: COPY {src}"
            assert not dockerignored(ignore, src), f"{ignore.name} drops {src}, which is COPYed"
        if dockerfile.name == "Dockerfile.triton":
            assert re.search(rf"^FROM {re.escape(NGC_TRITON)}$", text, re.M)
            continue
        assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.M)
        assert "USER 10001" in text
    fl = (REPO_ROOT / "docker" / "Dockerfile.fl").read_text()
    assert "download.pytorch.org/whl/cpu" in fl and '"torch==2.13.0"' in fl


def copied(dockerfile: Path) -> list[str]:
    """The build-context sources of a Dockerfile's COPY lines (not ``--from`` stages)."""
    out = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            out += parts[:-1]
    return out


def dockerignored(ignore_file: Path, src: str) -> bool:
    """Whether a .dockerignore (last matching pattern wins, ``!`` re-includes) drops ``src``
    or the folder it lies in."""
    import fnmatch

    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    parts = Path(src).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    dropped = False
    for prefix in prefixes:
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").strip("/")
            if fnmatch.fnmatchcase(prefix, pat) or (
                pat.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pat[3:])
            ):
                dropped = not negate
        if dropped:
            return True
    return dropped


def test_triton_image_provides_what_the_python_backend_models_import() -> None:
    """NGC Triton has NumPy and ``triton_python_backend_utils``; anything else a python-backend
    model imports must be COPYed into our Triton image (docker/Dockerfile.triton), and be
    importable with NumPy alone."""
    dockerfile = REPO_ROOT / "docker" / "Dockerfile.triton"
    shipped = {Path(src).parts[0] for src in copied(dockerfile)}
    provided = {"numpy", "triton_python_backend_utils"} | set(sys.stdlib_module_names)
    models = [
        config.parent
        for config in (REPO_ROOT / "triton_model_repository").glob("*/config.pbtxt")
        if re.search(r'^backend:\s*"python"', config.read_text(), re.M)
    ]
    assert models, "no python-backend model found"
    needed: set[str] = set()
    for model in models:
        for path in model.glob("*/model.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    needed |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    needed.add(node.module)
    ours = {m for m in needed if m.split(".")[0] not in provided}
    assert ours and {m.split(".")[0] for m in ours} <= shipped, (ours, shipped)
    # -I ignores PYTHONPATH and leaves the cwd off sys.path, as the python backend's stub
    # does; the repository root goes on sys.path the way the image's .pth puts /opt/secureai.
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pandas', 'pyarrow', 'torch', 'onnxruntime', 'yaml',"
        " 'pydantic', 'orjson'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        # Triton's stub provides this module; a stand-in lets the import chain run here.
        "import types; sys.modules['triton_python_backend_utils'] = types.ModuleType('pb')\n"
        + "".join(f"import {m}\n" for m in sorted(ours))
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_installed_package_carries_the_files_the_code_reads(tmp_path: Path) -> None:
    """The images ``pip install .`` (not editable): every non-Python file the code opens next
    to itself must be in the wheel (e.g. the Flower app's pyproject.toml `flwr run` packages)."""
    import zipfile

    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "morpheus_ext", "pipelines", "federated"):
        assert name in {*copied(REPO_ROOT / "docker" / "Dockerfile.fl")} | {"README.md"}
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    from federated.launcher import APP_DIR
    from morpheus_ext.feature_spec import SPECS_DIR
    from morpheus_ext.stages.postprocess.records import SCHEMA_PATH

    postproc = REPO_ROOT / "morpheus_ext" / "stages" / "postprocess" / "triton_postproc.py"
    needed = [APP_DIR / "pyproject.toml", postproc, SCHEMA_PATH]
    needed += sorted(SPECS_DIR.glob("*.yml"))
    for path in needed:
        rel = path.resolve().relative_to(REPO_ROOT).as_posix()
        assert rel in names, f"{rel} is not in the wheel the images install"


def test_flower_flags_exist_in_flowers_own_binaries() -> None:
    helps: dict[str, str] = {}
    for name, service in our_services().items():
        args = command_args(service)
        if not args or not args[0].startswith("flower-"):
            continue
        binary = args[0]
        if binary not in helps:
            out = subprocess.run(
                [str(VENV_BIN / binary), "--help"], capture_output=True, text=True, timeout=60
            )
            helps[binary] = out.stdout + out.stderr
        for arg in args[1:]:
            flag = arg.split("=", 1)[0]
            assert flag.startswith("--") and re.search(rf"\s{re.escape(flag)}\b", helps[binary]), (
                name,
                flag,
            )
    assert set(helps) == {"flower-superlink", "flower-supernode"}
    superlink = command_args(services()["superlink"])
    assert (
        "--insecure" not in superlink and "--disable-runtime-dependency-installation" in superlink
    )


def test_submit_script_and_cert_command_run(tmp_path: Path) -> None:
    svc = services()
    run = command_args(svc["fl-run"])
    assert run[:2] == ["python", "docker/fl/submit_run.py"]
    out = subprocess.run(
        [sys.executable, *run[1:], "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for arg in run[2:]:
        assert arg.split("=", 1)[0] in out.stdout, arg
    # The one-shot certificate command, pointed at a temporary folder instead of /certs.
    code = command_args(svc["fl-certs"])[2].replace("'/certs'", repr(str(tmp_path)))
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ca.crt", "server.key", "server.pem"]
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "superlink" in san.get_values_for_type(x509.DNSName)
    # The SuperLink serves exactly these files and SuperNodes/submitter trust that CA.
    superlink = command_args(svc["superlink"])
    for flag, name in (("--ssl-ca-certfile", "ca.crt"), ("--ssl-certfile", "server.pem"),
                       ("--ssl-keyfile", "server.key")):  # fmt: skip
        assert f"{flag}=/certs/{name}" in superlink
    for node in ("supernode-0", "supernode-1"):
        assert "--root-certificates=/certs/ca.crt" in command_args(svc[node])


def test_secureai_commands_parse() -> None:
    from pipelines.cli import build_parser

    parser = build_parser()
    sub = next(
        a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)
    )
    for name in ("pipeline", "api"):
        args = command_args(services()[name])
        if args[0] not in sub.choices:
            pytest.skip(f"`secureai {args[0]}` is not wired into pipelines/cli.py yet")
        parser.parse_args(args)


# --------------------------------------------------------------------------- observability
def test_prometheus_config_and_targets_match_the_services() -> None:
    prom_dir = REPO_ROOT / "docker" / "prometheus"
    out = subprocess.run(
        [tool("promtool"), "check", "config", str(prom_dir / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert host_file_for(services()["prometheus"], "/etc/prometheus/prometheus.yml") == (
        prom_dir / "prometheus.yml"
    )
    config = yaml.safe_load((prom_dir / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: t
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    assert targets == {
        "pipeline": "pipeline:9108",
        "api": "api:8080",
        "triton": "triton:8002",
        "federated": "superlink:9400",
        "prometheus": "localhost:9090",
    }
    for job, target in targets.items():
        if job != "prometheus":
            assert target.split(":")[0] in services(), target


def test_grafana_provisioning_matches_the_mounts_and_dashboards() -> None:
    import json

    grafana = services()["grafana"]
    provider = yaml.safe_load(
        (REPO_ROOT / "dashboards/provisioning/dashboards/secureai.yml").read_text()
    )["providers"][0]
    assert host_file_for(grafana, provider["options"]["path"]) == REPO_ROOT / "dashboards"
    datasource = yaml.safe_load(
        (REPO_ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in services()
    for path in (REPO_ROOT / "dashboards").glob("*.json"):
        doc = json.loads(path.read_text())
        var = doc["templating"]["list"][0]
        assert var["type"] == "datasource" and var["current"]["value"] == datasource["uid"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_file_for(grafana, home) == REPO_ROOT / "dashboards" / "inference-latency.json"


def test_smoke_script_passes_shellcheck_and_uses_the_published_ports() -> None:
    script = REPO_ROOT / "scripts" / "compose_smoke.sh"
    out = subprocess.run(
        [tool("shellcheck"), str(script), str(REPO_ROOT / "scripts/ops/install_prometheus.sh")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert os.access(script, os.X_OK)
    published = {published_port(p) for s in services().values() for p in s.get("ports", [])}
    used = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", script.read_text())}
    assert used and used <= published, used - published


# --------------------------------------------------------------------------- the lean image
SERVING_MODULES = ["pipelines.rest.app", "pipelines.cli_serve", "pipelines.kafka"]


@pytest.mark.parametrize("module", SERVING_MODULES)
def test_serving_entry_points_import_no_torch(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in ('torch', 'flwr', 'opacus') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _requirements() -> dict[str, str]:
    reqs = {}
    for line in (REPO_ROOT / "docker" / "requirements-serving.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            reqs[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return reqs


def test_serving_requirements_are_pinned_like_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = {}
    for dep in pyproject["project"]["dependencies"]:
        name, _, version = dep.partition("==")
        pins[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    for name, version in _requirements().items():
        installed = md.version(name)
        assert version == installed, f"{name}: docker pins {version}, the venv has {installed}"
        if name in pins:
            assert version == pins[name], f"{name}: docker pins {version}, pyproject {pins[name]}"


OPTIONAL_IMPORTS = {"cudf", "cupy", "morpheus", "mrc", "river", "triton_python_backend_utils"}
"""GPU / Morpheus / optional extras: imported lazily, not part of the lean image (the last one
is Triton's python backend's, for morpheus_ext/stages/postprocess/triton_postproc.py)."""


def test_serving_code_imports_only_what_the_image_installs() -> None:
    files = [
        *(REPO_ROOT / "morpheus_ext").rglob("*.py"),
        *(REPO_ROOT / "synthetic").rglob("*.py"),
        *(REPO_ROOT / "pipelines" / "rest").rglob("*.py"),
        *(REPO_ROOT / "pipelines" / "kafka").rglob("*.py"),
        *(REPO_ROOT / "pipelines" / f"{m}.py" for m in (
            "cli", "cli_base", "cli_serve", "cli_kafka", "engines"
        )),
    ]  # fmt: skip
    top = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names)
    ours = {"morpheus_ext", "synthetic", "modelling", "pipelines", "federated", "scripts"}
    third_party = top - stdlib - ours - OPTIONAL_IMPORTS
    dists = md.packages_distributions()
    reqs = _requirements()
    missing = set()
    for module in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & set(reqs):
            missing.add(module)
    assert missing == set(), f"imported by serving code but not in the image: {missing}"
