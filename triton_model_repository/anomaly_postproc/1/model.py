"""Triton entry point of anomaly_postproc (from the repository writer).

The model is morpheus_ext/stages/postprocess/triton_postproc.py (one home, shared code).
"""

from morpheus_ext.stages.postprocess.triton_postproc import TritonPythonModel

__all__ = ["TritonPythonModel"]
