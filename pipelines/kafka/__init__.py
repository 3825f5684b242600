"""``secureai run``: the Kafka scoring loop, one job per module (read ``runner.py`` first).

``config`` (the typed YAML), ``runner`` (consume -> score -> produce -> commit; rebalances,
signals, shutdown; building it from a config), ``delivery`` (at-least-once or exactly-once),
``offsets`` (commit after delivery, in batch order), ``hold`` (inference outages), ``backlog``
(consumed values waiting) and ``summary`` (what a run did). The stages it drives live in
``morpheus_ext/stages/``; the baselines' checkpointer beside the baselines.
"""

from pipelines.kafka.runner import KafkaScoringRunner, build_pipeline, run_pipeline
from pipelines.kafka.summary import KafkaPipelineError, RunSummary

__all__ = [
    "KafkaPipelineError",
    "KafkaScoringRunner",
    "RunSummary",
    "build_pipeline",
    "run_pipeline",
]
