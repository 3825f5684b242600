"""``anomaly_postproc`` in Triton's python backend: the NumPy postproc, wrapped for Triton.

The version folder's ``model.py`` (written by :mod:`morpheus_ext.repository_writer`) only
re-exports :class:`TritonPythonModel` from here, so the wrapper has one home and the math it
calls (:func:`~morpheus_ext.stages.postprocess.postproc.postprocess`) is the same code the
in-process engine runs. Loadable only inside Triton (``triton_python_backend_utils``); NumPy is
the only other dependency.
"""

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from morpheus_ext.stages.postprocess.postproc import postprocess

_INPUTS = ("ANOMALY_SCORE", "FIELD_Z", "THRESHOLD")
_OUTPUTS = ("IS_ANOMALY", "MEAN_ABS_Z", "MAX_ABS_Z", "TOP_FIELDS", "TOP_Z")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.top_k = int(config["parameters"]["top_k"]["string_value"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            score, field_z, threshold = (
                pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in _INPUTS
            )
            out = postprocess(score, field_z, threshold, self.top_k)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[name])) for name in _OUTPUTS]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
