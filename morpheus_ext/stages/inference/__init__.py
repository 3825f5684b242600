"""Inference engines: anything with ``infer(tensor) -> dict of ensemble outputs``."""

from morpheus_ext.stages.inference.base import InferenceEngine, ModelInfo

__all__ = ["InferenceEngine", "ModelInfo"]
