"""Evaluation of anomaly scores: metrics, baseline detectors and the HTML report.

Re-exported here so callers can write ``from modelling.evaluation import compute_metrics``
without knowing the module layout.
"""

from modelling.evaluation.baselines import (
    BaselineResult,
    half_space_trees,
    isolation_forest,
    run_baselines,
)
from modelling.evaluation.metrics import compute_metrics, curves, validate_inputs, validate_labels
from modelling.evaluation.report import write_report

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
