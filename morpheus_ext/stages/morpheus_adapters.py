"""The same stages as Morpheus ``LinearPipeline`` stages (needs NVIDIA Morpheus, imported lazily).

``featurize_stage`` runs :class:`~morpheus_ext.stages.preprocess.featurizer.Featurizer` on a
``MessageMeta`` and hands the ``EVENT_TENSOR`` on in a ``ControlMessage`` (to Morpheus'
``TritonInferenceStage``); ``scores_stage`` turns the ensemble outputs into the same score
records as every other runner (:func:`~morpheus_ext.stages.postprocess.records.build_records`).
``pipelines/morpheus_pipeline.py`` assembles them with Morpheus' Kafka source and sink.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from morpheus_ext.model_repository import ENSEMBLE_OUTPUTS, INPUT
from morpheus_ext.stages.inference.base import ModelInfo
from morpheus_ext.stages.postprocess.records import build_records
from morpheus_ext.stages.preprocess.featurizer import FeaturizedBatch, Featurizer


def morpheus_stages(featurizer: Featurizer, info: ModelInfo) -> tuple[Any, Any]:
    """(featurize_stage, scores_stage): Morpheus stage factories (call each with a ``Config``)."""
    from morpheus.messages import ControlMessage, MessageMeta, TensorMemory
    from morpheus.pipeline.stage_decorator import stage

    @stage
    def featurize_stage(message: MessageMeta) -> ControlMessage:
        """Featurizer.transform on the batch's rows (rejected rows are logged by Morpheus)."""
        with message.mutable_dataframe() as df:
            frame = df.to_pandas() if hasattr(df, "to_pandas") else pd.DataFrame(df)
        batch = featurizer.transform(frame)
        out = ControlMessage()
        out.payload(MessageMeta(batch.frame))
        out.tensors(TensorMemory(count=len(batch), tensors={INPUT: batch.tensor}))
        return out

    @stage
    def scores_stage(message: ControlMessage) -> MessageMeta:
        """build_records on the Triton outputs: the same score records as the Kafka runner."""
        with message.payload().mutable_dataframe() as df:
            frame = df.to_pandas() if hasattr(df, "to_pandas") else pd.DataFrame(df)
        tensors = message.tensors()
        outputs = {
            name: np.asarray(tensors.get_tensor(name).get())
            if hasattr(tensors.get_tensor(name), "get")
            else np.asarray(tensors.get_tensor(name))
            for name in ENSEMBLE_OUTPUTS
        }
        batch = FeaturizedBatch(tensor=None, positions=np.arange(len(frame)), frame=frame)
        records = build_records(batch, outputs, featurizer, info)
        return MessageMeta(pd.DataFrame.from_records(records))

    return featurize_stage, scores_stage
