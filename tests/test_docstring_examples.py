"""The runnable examples in docstrings run (as River runs every estimator's example).

Every stage, engine and the stage chain carries one (``morpheus_ext/stages/**``,
``morpheus_ext/pipeline.py``), as do the Kafka runner's rooms; a module there without an
example fails here unless :data:`NO_EXAMPLE` says why it has none.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from .conftest import REPO_ROOT

MUST_HAVE_EXAMPLES = ("morpheus_ext/stages", "morpheus_ext/pipeline.py", "pipelines/kafka")
NO_EXAMPLE = {
    "morpheus_ext.stages.postprocess.triton_postproc": "runs only inside Triton's python backend",
    "morpheus_ext.stages.morpheus_adapters": "needs NVIDIA Morpheus (conda or the NGC image only)",
    "morpheus_ext.stages.inference.cuda_shm": "needs a CUDA GPU (test_triton_cuda_shm.py)",
    "pipelines.kafka.runner": "needs a broker (tests/pipelines/test_kafka_pipeline.py)",
    "pipelines.kafka.delivery": "needs a broker (tests/pipelines/test_kafka_pipeline.py)",
    "pipelines.kafka.campaigns": "needs a broker (tests/pipelines/test_correlation_kafka.py)",
    "pipelines.kafka.config": "a typed config (configs/pipeline.yml is its example)",
    "morpheus_ext.stages.postprocess.fingerprint.batch": "fingerprint internals: see baselines",
    "morpheus_ext.stages.postprocess.fingerprint.config": "fingerprint internals: see baselines",
    "morpheus_ext.stages.postprocess.fingerprint.index": "fingerprint internals: see baselines",
    "morpheus_ext.stages.postprocess.fingerprint.reason_fragments": "internals: see records",
    "morpheus_ext.stages.postprocess.record_reasons": "internals of records: see records",
    "morpheus_ext.stages.postprocess.fingerprint.reasons": "fingerprint internals: see records",
    "morpheus_ext.stages.postprocess.fingerprint.scoring": "fingerprint internals: see baselines",
    "morpheus_ext.stages.postprocess.fingerprint.state": "fingerprint internals: see baselines",
    "morpheus_ext.stages.postprocess.fingerprint.valueset": "fingerprint internals: see baselines",
}
"""Modules under :data:`MUST_HAVE_EXAMPLES` without an example, and why."""

ALSO = [
    "federated.audit",
    "federated.audit_sweep",
    "federated.drift",
    "federated.launcher",
    "federated.ledger",
    "federated.mia",
    "federated.site_window",
    "federated.supernode",
    "federated.triggers",
    "modelling.evaluation.analyst",
    "modelling.evaluation.canaries",
    "modelling.numerics",
    "modelling.progress",
    "modelling.evaluation.equivalence",
    "morpheus_ext.errors",
    "morpheus_ext.model_repository",
    "morpheus_ext.onnx_proto",
    "pipelines.cli_base",
    "synthetic",
    "synthetic.attacks_campaign",
    "synthetic.attacks_leakage",
]


def _must_have() -> list[str]:
    names = []
    for root in MUST_HAVE_EXAMPLES:
        path = REPO_ROOT / root
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        for f in files:
            parts = f.relative_to(REPO_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                continue
            names.append(".".join(parts))
    return names


MODULES = sorted({*(m for m in _must_have() if m not in NO_EXAMPLE), *ALSO})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example (add one, or say why in NO_EXAMPLE)"
    assert result.failed == 0


def test_no_example_lists_only_real_modules() -> None:
    assert set(NO_EXAMPLE) <= set(_must_have())
