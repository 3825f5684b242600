"""helm/secureai rendered by a real Helm engine (helm-python-sdk, offline) and every object
validated against the Kubernetes schemas in strict mode (kubernetes-validate), for the small
and GPU profiles and a set of option combinations. The configs the pods read are validated by
the loaders the services use; references between objects (selectors, ports, volumes, secrets)
resolve; the FL seed manifests (federated/*.yaml) are the chart's own objects.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from morpheus_ext.prometheus_metrics import PipelineMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "secureai"
KUBE_VERSIONS = ("1.27.0", "1.33.0")  # the chart's minimum and a current release
PROFILES = ("values-small.yaml", "values-gpu.yaml")

OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "small": yaml.safe_load((CHART / "values-small.yaml").read_text()),
    "gpu": yaml.safe_load((CHART / "values-gpu.yaml").read_text()),
    # every TLS option at once, the API scoring in-process, no persistence, an FL run Job
    "tls-everywhere": {
        "kafka": {
            "bootstrapServers": "kafka.example:9093",
            "securityProtocol": "SSL",
            "tls": {"existingSecret": "kafka-mtls"},
        },
        "redpanda": {"enabled": False},
        "triton": {"grpcTls": {"existingSecret": "triton-grpc-tls"}},
        "fl": {"tls": {"existingSecret": "fl-tls"}, "run": {"enabled": True}},
        "api": {"engine": "inprocess", "auth": {"existingSecret": "api-token"}},
        "modelRepository": {"persistence": {"enabled": False}},
    },
    "serving-only": {"fl": {"enabled": False}, "monitoring": {"dashboards": {"enabled": False}}},
    # cross-site correlation: the pipeline hashes indicators under the org key, a correlator runs
    "correlated": {
        "pipeline": {"incidents": {"site": "eu-west"}, "correlation": {"enabled": True}},
        "correlator": {"enabled": True, "keySecret": {"existingSecret": "correlation-key"}},
    },
}
EXISTING_SECRETS = {
    "kafka-sasl",
    "kafka-ca",
    "kafka-mtls",
    "triton-grpc-tls",
    "fl-tls",
    "api-token",
    "correlation-key",
}
"""Secrets the values name (``existingSecret``): created by the operator, not the chart."""


@cache
def render(option: str) -> tuple[dict[str, Any], ...]:
    values = copy.deepcopy(OPTIONS[option])
    rendered = helm_python.Chart.load(CHART).render(
        values=values, name="secureai", namespace="secureai"
    )
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return tuple(docs)


def by_kind(option: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(option) if d["kind"] == kind}


def pod_specs(option: str) -> dict[str, dict[str, Any]]:
    out = {}
    for d in render(option):
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out[d["metadata"]["name"]] = d["spec"]["template"]
    return out


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def config_file(option: str, key: str) -> str:
    return str(by_kind(option, "ConfigMap")["secureai-config"]["data"][key])


# --------------------------------------------------------------------------- real tools
def test_lint_is_clean() -> None:
    for profile in (None, *PROFILES):
        values = yaml.safe_load((CHART / profile).read_text()) if profile else None
        report = helm_python.lint(CHART, values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, (profile, report)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_object_passes_strict_schema_validation(option: str) -> None:
    docs = render(option)
    assert len(docs) >= 10
    for version in KUBE_VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{option} {doc['kind']}/{doc['metadata']['name']} @ {version}: {exc}")


def test_strict_validation_catches_a_misspelt_field() -> None:
    doc = copy.deepcopy(by_kind("small", "Deployment")["secureai-pipeline"])
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_bad_values_fail_the_render_with_a_clear_message() -> None:
    chart = helm_python.Chart.load(CHART)
    cases = [
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "needs kafka.sasl.username"),
        ({"fl": {"sites": 3}}, "must equal fl.sites"),
        ({"redpanda": {"enabled": False}}, "kafka.bootstrapServers is empty"),
        (
            {"pipeline": {"correlation": {"enabled": True}}},
            "pipeline.correlation.enabled needs pipeline.incidents.enabled, correlator.enabled",
        ),
    ]
    for values, message in cases:
        with pytest.raises(helm_python.HelmError, match=re.escape(message)):
            chart.render(values=values, name="secureai", namespace="secureai")


# --------------------------------------------------------------------------- configs the pods read
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_rendered_configs_load_with_the_services_loaders(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.kafka.config import load_pipeline_config
    from pipelines.rest.config import load_api_config

    monkeypatch.setenv("KAFKA_PASSWORD", "from-the-secret")
    monkeypatch.setenv("POD_NAME", "secureai-pipeline-7d9f-x2k4q")  # the Downward API's value
    for key in ("pipeline.yml", "api.yml"):
        (tmp_path / key).write_text(config_file(option, key))
    pipeline = load_pipeline_config(tmp_path / "pipeline.yml")
    api = load_api_config(tmp_path / "api.yml")
    assert pipeline.metrics_port == 9108 and api.host == "0.0.0.0"
    assert pipeline.metrics_host == "0.0.0.0"  # scraped by pod IP
    incidents = pipeline.incidents
    assert incidents.enabled and pipeline.leakage.enabled  # triage on by default
    assert incidents.instance_id == "secureai-pipeline-7d9f-x2k4q"  # one checkpoint per pod
    assert incidents.site == ("eu-west" if option == "correlated" else "secureai")
    assert pipeline.correlation.enabled == (option == "correlated")
    if option == "correlated":
        from pipelines.correlate import load_correlator_config

        (tmp_path / "correlator.yml").write_text(config_file(option, "correlator.yml"))
        correlator = load_correlator_config(tmp_path / "correlator.yml")
        assert correlator.kafka.correlation_topic == pipeline.kafka.correlation_topic
        assert correlator.kafka.campaigns_topic == pipeline.kafka.campaigns_topic
        env = {e["name"] for c in containers(pod_specs(option)["secureai-pipeline"])
               for e in c.get("env", [])}  # fmt: skip
        assert "SECUREAI_CORRELATION_KEY" in env
    if option == "gpu":
        common = pipeline.kafka.common
        assert common["security.protocol"] == "SASL_SSL"
        assert common["sasl.password"] == "from-the-secret"  # ${KAFKA_PASSWORD} expanded
        assert common["ssl.ca.location"] == "/etc/secureai/kafka-tls/ca.crt"
    if OPTIONS[option].get("fl", {}).get("enabled", True):
        from federated.config import FLConfig
        from morpheus_ext.config_io import load_config

        (tmp_path / "fl.yml").write_text(config_file(option, "fl.yml"))
        fl = load_config(tmp_path / "fl.yml", FLConfig)
        assert fl.monitoring.metrics_host == "0.0.0.0" and str(fl.runs_dir) == "/runs"


def test_config_paths_are_mounted_where_the_configs_say() -> None:
    for option in OPTIONS:
        pods = pod_specs(option)
        for name, pod in pods.items():
            mounts = {m["mountPath"] for c in containers(pod) for m in c.get("volumeMounts", [])}
            args = " ".join(a for c in containers(pod) for a in c.get("args", []))
            for path in re.findall(r"(/etc/secureai/[\w./-]+|/certs/[\w.]+|/models|/runs)", args):
                assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), (
                    option,
                    name,
                    path,
                )
        # paths named inside the rendered configs
        pipeline = yaml.safe_load(config_file(option, "pipeline.yml"))
        api = yaml.safe_load(config_file(option, "api.yml"))
        for deploy, paths in (
            ("secureai-pipeline", _paths(pipeline)),
            ("secureai-api", _paths(api)),
        ):
            pod = pods[deploy]
            mounts = {m["mountPath"] for c in containers(pod) for m in c.get("volumeMounts", [])}
            for path in paths:
                if path.startswith("/opt/secureai/"):
                    continue  # inside the image
                assert any(path.startswith(m.rstrip("/") + "/") or path == m for m in mounts), (
                    option,
                    deploy,
                    path,
                )


def _paths(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [p for v in doc.values() for p in _paths(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in _paths(v)]
    return [doc] if isinstance(doc, str) and doc.startswith("/") else []


# --------------------------------------------------------------------------- references resolve
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_references_between_objects_resolve(option: str) -> None:
    docs = render(option)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    pods = pod_specs(option)
    for name, pod in pods.items():
        claims = {
            t["metadata"]["name"]
            for d in docs
            if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name
            for t in d["spec"].get("volumeClaimTemplates", [])
        }
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for c in containers(pod):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in claims, (option, name, m["name"])
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in EXISTING_SECRETS | {n for k, n in names if k == "Secret"}
        for v in volumes.values():
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names, (option, name, v)
            if "secret" in v:
                secret = v["secret"]["secretName"]
                assert ("Secret", secret) in names or secret in EXISTING_SECRETS, (option, secret)
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, (option, name, claim)
    # Services select pods that exist and target ports those pods declare.
    for svc in by_kind(option, "Service").values():
        selector = svc["spec"]["selector"]
        matching = [p for p in pods.values() if selector.items() <= p["metadata"]["labels"].items()]
        assert matching, f"{option}: service {svc['metadata']['name']} selects nothing"
        declared = {
            port.get("name") for p in matching for c in containers(p) for port in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in declared, (option, svc["metadata"]["name"], port)


def test_images_are_pinned_and_scrape_annotations_match_ports() -> None:
    for option in OPTIONS:
        for name, pod in pod_specs(option).items():
            for c in containers(pod):
                assert re.search(r":[\w.-]+$", c["image"]) and not c["image"].endswith(":latest")
            ann = pod["metadata"].get("annotations") or {}
            if ann.get("prometheus.io/scrape") == "true":
                ports = {
                    str(p["containerPort"]) for c in pod["spec"]["containers"] for p in c["ports"]
                }
                assert ann["prometheus.io/port"] in ports, (option, name, ann)


# --------------------------------------------------------------------------- profiles
def test_gpu_profile_puts_triton_on_gpu_nodes_and_small_does_not() -> None:
    gpu = pod_specs("gpu")["secureai-triton"]["spec"]
    triton = gpu["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] == {"secureai.io/node-pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu[
        "tolerations"
    ]
    assert "--allow-gpu-metrics=false" not in triton["args"]
    small = pod_specs("small")["secureai-triton"]["spec"]
    assert "nvidia.com/gpu" not in small["containers"][0]["resources"].get("limits", {})
    assert "nodeSelector" not in small and "tolerations" not in small
    # GPU profile: external Kafka over SASL_SSL, password from the secret, CA mounted.
    pipeline = pod_specs("gpu")["secureai-pipeline"]["spec"]["containers"][0]
    env = {e["name"]: e["valueFrom"] for e in pipeline["env"]}
    assert env["KAFKA_PASSWORD"]["secretKeyRef"] == {"name": "kafka-sasl", "key": "password"}
    assert {"name": "kafka-tls", "mountPath": "/etc/secureai/kafka-tls", "readOnly": True} in (
        pipeline["volumeMounts"]
    )
    assert "secureai-redpanda" not in by_kind("gpu", "StatefulSet")
    assert "secureai-redpanda" in by_kind("small", "StatefulSet")
    repo = by_kind("gpu", "PersistentVolumeClaim")["secureai-model-repository"]["spec"]
    assert repo["accessModes"] == ["ReadWriteMany"]


def test_persistence_for_model_repositories_and_ledgers() -> None:
    for option in ("small", "gpu"):
        assert "secureai-model-repository" in by_kind(option, "PersistentVolumeClaim")
        supernodes = by_kind(option, "StatefulSet")["secureai-supernode"]
        claims = {t["metadata"]["name"] for t in supernodes["spec"]["volumeClaimTemplates"]}
        assert claims == {"model-repository", "ledger"}
        assert supernodes["spec"]["replicas"] == 2
        triton = pod_specs(option)["secureai-triton"]["spec"]
        assert triton["initContainers"][0]["name"] == "seed-model-repository"


def test_tls_options_reach_the_processes() -> None:
    pods = pod_specs("tls-everywhere")
    triton = pods["secureai-triton"]["spec"]["containers"][0]["args"]
    assert "--grpc-use-ssl=true" in triton
    api = yaml.safe_load(config_file("tls-everywhere", "api.yml"))
    assert api["inference"]["engine"] == "inprocess"
    pipeline = yaml.safe_load(config_file("tls-everywhere", "pipeline.yml"))
    assert pipeline["inference"]["tls"] == {"root_certificates": "/etc/secureai/triton-tls/ca.crt"}
    assert pipeline["kafka"]["common"] == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/etc/secureai/kafka-tls/ca.crt",
    }
    superlink = pods["secureai-superlink"]["spec"]["containers"][0]["args"]
    assert "--ssl-certfile=/certs/tls.crt" in superlink and "--insecure" not in superlink
    run = pods["secureai-fl-run"]["spec"]["containers"][0]["args"]
    assert "--root-certificates=/certs/ca.crt" in run
    # The generated FL certificate (default values) names the SuperLink's service.
    secret = by_kind("defaults", "Secret")["secureai-fl-tls"]
    import base64

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "secureai-superlink" in san.get_values_for_type(x509.DNSName)


def test_supernode_command_gives_each_pod_its_site(tmp_path: Path) -> None:
    """Run the StatefulSet's shell command with the Flower binary replaced by printf."""
    pod = pod_specs("small")["secureai-supernode"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    script = container["args"][0].replace("exec flower-supernode", "printf '%s\\n'")
    for index in (0, 1):
        out = subprocess.run(
            ["sh", "-c", script],
            env={**os.environ, "HOSTNAME": f"secureai-supernode-{index}"},
            capture_output=True,
            text=True,
            check=True,
        )
        args = out.stdout.splitlines()
        assert (
            f'--node-config=partition-id={index} num-partitions=2 ledger-dir="/site/ledger"' in args
        )
        assert "--superlink=secureai-superlink:9093" in args
    helps = subprocess.run(
        [str(Path(sys.executable).parent / "flower-supernode"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for arg in args:
        assert arg.split("=", 1)[0] in helps, arg


# --------------------------------------------------------------------------- monitoring, seeds
def test_monitoring_configmaps_carry_the_dashboards_and_rules() -> None:
    cms = by_kind("small", "ConfigMap")
    dashboards = cms["secureai-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    for name, text in dashboards["data"].items():
        assert (REPO_ROOT / "dashboards" / name).read_text() == text
    assert set(dashboards["data"]) == {"inference-latency.json", "fedmetrics.json"}
    rules = cms["secureai-alert-rules"]["data"]["alerts.yml"]
    assert rules == (REPO_ROOT / "docker" / "prometheus" / "alerts.yml").read_text()
    assert "secureai_events_total" in rules and PipelineMetrics is not None


def test_fl_seed_manifests_are_the_charts_own() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/ops/render_fl_manifests.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name, kind in (("deployment.yaml", "Deployment"), ("service.yaml", "Service")):
        doc = yaml.safe_load((REPO_ROOT / "federated" / name).read_text())
        assert doc["kind"] == kind and doc["metadata"]["name"] == "secureai-superlink"
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    deployment = yaml.safe_load((REPO_ROOT / "federated" / "deployment.yaml").read_text())
    service = yaml.safe_load((REPO_ROOT / "federated" / "service.yaml").read_text())
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
