"""Layers point one way (docs/architecture.md):
core <- synthetic <- modelling <- federated <- pipelines.

* ``morpheus_ext``: the torch-free core (stages, featurizer, spec, normalizer, postproc,
  records, engines, model repository, config loading); imports none of the others.
* ``synthetic``: the labelled synthetic data generator; imports only the core (config base).
* ``modelling``: torch models, training, calibration, export, run directories, evaluation;
  imports only the core.
* ``federated``: Flower, DP-SGD, ledger, sidecar, publishing; imports the core and modelling.
* ``pipelines``: assembly and the CLI; may import everything.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

ALLOWED: dict[str, set[str]] = {
    "morpheus_ext": set(),
    "synthetic": {"morpheus_ext"},
    "modelling": {"morpheus_ext", "synthetic"},
    "federated": {"morpheus_ext", "synthetic", "modelling"},
    "pipelines": {"morpheus_ext", "synthetic", "modelling", "federated"},
}


def _imports(path: Path) -> set[str]:
    """Top-level modules of ours imported anywhere in ``path`` (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in ALLOWED}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for module in sorted(_imports(path)):
            top = module.split(".")[0]
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_core_and_config_loading_do_not_load_torch() -> None:
    """Serving, Triton's postproc and the REST service use the core without torch."""
    code = (
        "import sys, morpheus_ext.stages.input.kafka_source, "
        "morpheus_ext.stages.postprocess.records, morpheus_ext.config_io, "
        "morpheus_ext.repository_writer, modelling.config, pipelines.config; "
        "print(sorted(m for m in ('torch', 'opacus', 'flwr') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _module_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (lazy and type-only imports included)."""
    modules: dict[str, Path] = {}
    for package in ALLOWED:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_module_import_cycles() -> None:
    """Files too, not only packages: a cycle means two rooms that cannot be read apart."""
    graph = _module_graph()
    assert len(graph) > 100
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
