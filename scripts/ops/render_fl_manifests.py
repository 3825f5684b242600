"""Write the seed-level manifests of the FL coordinator from the Helm chart.

    python scripts/ops/render_fl_manifests.py          # rewrite federated/{deployment,service}.yaml
    python scripts/ops/render_fl_manifests.py --check  # exit 1 if they differ from the chart

``federated/deployment.yaml`` (the SuperLink Deployment, running the ServerApp) and
``federated/service.yaml`` (its Service) are the chart's own objects rendered with
:data:`SEED_VALUES` by a real Helm engine (``helm-python-sdk``), so the two can never drift
(tests/ops/test_ops_helm.py runs ``--check``). For everything else, install the chart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "secureai"
RELEASE, NAMESPACE = "secureai", "secureai"
SEED_VALUES: dict[str, Any] = {
    # A TLS secret you create (no generated CA in a static file), no state volume (emptyDir).
    "fl": {
        "tls": {"existingSecret": "secureai-fl-tls"},
        "superlink": {"persistence": {"enabled": False}},
    },
}
HEADER = """\
# GENERATED from helm/secureai by scripts/ops/render_fl_manifests.py: do not edit by hand.
# Seed-level manifest of the FL coordinator (Flower SuperLink + ServerApp), namespace {ns}.
# The Helm chart is the supported install; to run the coordinator alone you also need:
#   kubectl -n {ns} create secret generic secureai-fl-tls \\
#     --from-file=ca.crt --from-file=tls.crt --from-file=tls.key   (SuperLink CA, cert, key)
#   kubectl -n {ns} create configmap secureai-config --from-file=fl.yml=docker/compose/fl.yml
#   a PersistentVolumeClaim secureai-fl-runs shared with the SuperNodes (run directories)
"""
FILES = {"deployment.yaml": ("Deployment", "secureai-superlink"),
         "service.yaml": ("Service", "secureai-superlink")}  # fmt: skip


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of the chart rendered with ``values`` (a real Helm engine, offline)."""
    import helm_python

    rendered = helm_python.Chart.load(CHART).render(
        values=values, name=RELEASE, namespace=NAMESPACE
    )
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def manifests() -> dict[str, str]:
    docs = render_chart(SEED_VALUES)
    out = {}
    for filename, (kind, name) in FILES.items():
        (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
        doc["metadata"]["namespace"] = NAMESPACE
        body = yaml.safe_dump(doc, sort_keys=False, width=100)
        out[filename] = HEADER.format(ns=NAMESPACE) + body
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    stale = []
    for filename, text in manifests().items():
        path = REPO_ROOT / "federated" / filename
        if path.is_file() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(REPO_ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(
            f"fl manifests: {', '.join(stale)} differ from the chart: "
            "run python scripts/ops/render_fl_manifests.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
