"""Evaluation of anomaly scores: metrics, baseline detectors and the HTML report.

Re-exported here so callers can write ``from modelling.evaluation import compute_metrics``
without knowing the module layout. The re-exports are resolved on first use (PEP 562): a
process that needs one submodule (a federated site's gate imports only ``canaries``) does not
pay for scikit-learn and matplotlib, seconds of imports in every ClientApp process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelling.evaluation.baselines import (
        BaselineResult,
        half_space_trees,
        isolation_forest,
        run_baselines,
    )
    from modelling.evaluation.metrics import (
        compute_metrics,
        curves,
        validate_inputs,
        validate_labels,
    )
    from modelling.evaluation.report import write_report

_EXPORTS = {
    "BaselineResult": "baselines",
    "half_space_trees": "baselines",
    "isolation_forest": "baselines",
    "run_baselines": "baselines",
    "compute_metrics": "metrics",
    "curves": "metrics",
    "validate_inputs": "metrics",
    "validate_labels": "metrics",
    "write_report": "report",
}

__all__ = [
    "BaselineResult",
    "compute_metrics",
    "curves",
    "half_space_trees",
    "isolation_forest",
    "run_baselines",
    "validate_inputs",
    "validate_labels",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # submodules (``from modelling.evaluation import report``) load as usual
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
