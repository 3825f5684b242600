"""The same pipeline in NVIDIA Morpheus form (``secureai run --engine morpheus``).

Stages, in the folder order of Morpheus' own tree::

    KafkaSourceStage (morpheus)                    input/       raw JSON -> MessageMeta
      -> featurize_stage (ours, @stage)            preprocess/  Featurizer.transform -> EVENT_TENSOR
      -> TritonInferenceStage(dfp_ensemble)        inference/   Triton on the GPU
      -> scores_stage (ours, @stage)               postprocess/ build_records -> score records
      -> WriteToKafkaStage (morpheus)              output/      one JSON message per record

Our two stages are thin wrappers around the same functions the Kafka runner calls
(:class:`morpheus_ext.stages.preprocess.featurizer.Featurizer` and
:func:`morpheus_ext.stages.postprocess.records.build_records`),
so the records are identical. Morpheus only installs from conda or the NGC container; without it
:func:`run_morpheus` raises :class:`MorpheusUnavailable` with one line saying how to get it.

What the Morpheus form does **not** give (docs/kafka.md): Morpheus' ``KafkaSourceStage`` commits
offsets right after parsing (a crash loses the batch in flight) and drops a whole batch when one
message is not JSON; ``WriteToKafkaStage`` writes unkeyed messages and has no dead-letter topic
or transactions. Use ``secureai run`` (the default engines) where those guarantees matter.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from morpheus_ext.errors import SecureAIError
from pipelines.kafka.config import PipelineConfig

INSTALL_HINT = (
    "the morpheus engine needs NVIDIA Morpheus, which installs only with conda "
    "(conda install -c nvidia -c rapidsai -c conda-forge morpheus-core) or in the NGC "
    "container nvcr.io/nvidia/morpheus/morpheus; use --engine inprocess or triton here"
)


class MorpheusUnavailable(SecureAIError, RuntimeError):
    """``morpheus`` is not importable (message: one line on how to get it)."""


def morpheus_available() -> bool:
    return importlib.util.find_spec("morpheus") is not None


def build_morpheus_pipeline(config: PipelineConfig) -> Any:
    """Assemble the LinearPipeline (needs ``morpheus``; run it with ``.run()``)."""
    if not morpheus_available():
        raise MorpheusUnavailable(INSTALL_HINT)
    from morpheus.config import Config, PipelineModes
    from morpheus.pipeline import LinearPipeline
    from morpheus.stages.inference.triton_inference_stage import TritonInferenceStage
    from morpheus.stages.input.kafka_source_stage import KafkaSourceStage
    from morpheus.stages.output.write_to_kafka_stage import WriteToKafkaStage

    from morpheus_ext.feature_spec import load_spec
    from morpheus_ext.model_repository import ENSEMBLE_OUTPUTS, INPUT
    from morpheus_ext.stages.inference.base import ModelInfo
    from morpheus_ext.stages.morpheus_adapters import morpheus_stages
    from morpheus_ext.stages.preprocess.featurizer import Featurizer
    from morpheus_ext.triton_limits import MAX_BATCH

    spec = load_spec(config.spec)
    featurizer = Featurizer(spec)
    info = ModelInfo(
        name=config.inference.model, spec_hash=spec.spec_hash, max_batch_size=MAX_BATCH
    )
    k = config.kafka

    c = Config()
    c.mode = PipelineModes.OTHER
    c.pipeline_batch_size = k.batch_size
    c.model_max_batch_size = MAX_BATCH
    c.feature_length = 256

    featurize_stage, scores_stage = morpheus_stages(featurizer, info)

    pipe = LinearPipeline(c)
    pipe.set_source(
        KafkaSourceStage(
            c,
            bootstrap_servers=k.bootstrap_servers,
            input_topic=list(k.topics),
            group_id=k.group_id,
            auto_offset_reset="earliest",
        )
    )
    pipe.add_stage(featurize_stage(c))
    pipe.add_stage(
        TritonInferenceStage(
            c,
            model_name=config.inference.model,
            server_url=config.inference.url,
            force_convert_inputs=True,
            needs_logits=False,
            input_mapping={INPUT: INPUT},
            output_mapping={name: name for name in ENSEMBLE_OUTPUTS},
        )
    )
    pipe.add_stage(scores_stage(c))
    pipe.add_stage(
        WriteToKafkaStage(c, bootstrap_servers=k.bootstrap_servers, output_topic=k.scores_topic)
    )
    return pipe


def run_morpheus(config: PipelineConfig) -> None:
    """Build and run the Morpheus pipeline until it stops."""
    build_morpheus_pipeline(config).run()
