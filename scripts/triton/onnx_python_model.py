"""Triton python-backend model that serves a sibling ONNX file with onnxruntime on CPU.

Why it exists: the CPU Triton binary from the nvidia-pytriton wheel has no onnxruntime backend,
so scripts/triton/cpu_repository.py copies this file, unchanged, as ``<version>/model.py`` next
to every ``model.onnx`` of an ``onnxruntime_onnx`` model when it derives the CPU variant of the
model repository. Production (NGC Triton) serves the same ONNX file with the native backend.

Behaviour, meant to match the onnxruntime backend closely enough for tests and local runs:
- inputs and outputs are mapped BY NAME, using the names in config.pbtxt (the native backend
  also requires config names to equal the ONNX graph names); outputs are cast to the
  configured ``data_type``; ``reshape`` on inputs/outputs is honoured;
- model parameters (same keys as the onnxruntime backend): ``intra_op_thread_count``
  (default 1: Triton already runs requests in parallel, and test machines have 2 cores),
  ``inter_op_thread_count`` (default 1); plus ``onnx_model_filename`` (default model.onnx),
  set by the derivation when the canonical config had ``default_model_filename``;
- with ``max_batch_size > 0`` the requests of one dynamic batch are concatenated and run in a
  single onnxruntime call when their non-batch shapes agree, then split again.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _param(config: dict[str, Any], key: str, default: str) -> str:
    """Read a string model parameter from the JSON model config Triton passes in."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value in (None, "") else str(value)


class TritonPythonModel:
    """Runs one ONNX graph; one instance per Triton model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the onnxruntime session and check the config against the graph's signature."""
        config = json.loads(args["model_config"])
        filename = _param(config, "onnx_model_filename", "model.onnx")
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if os.path.isdir(path):  # Triton also accepts model.onnx/ holding model.onnx + data
            path = os.path.join(path, "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_param(config, "intra_op_thread_count", "1"))
        options.inter_op_num_threads = int(_param(config, "inter_op_thread_count", "1"))
        self.session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.model_name = config.get("name", "")
        self.batching = int(config.get("max_batch_size", 0)) > 0

        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        self.inputs: list[tuple[str, list[int] | None, bool, bool]] = []
        for spec in config.get("input", []):
            name = spec["name"]
            if name not in graph_inputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config input {name!r} is not an input of {path} "
                    f"(graph inputs: {sorted(graph_inputs)})"
                )
            reshape = spec.get("reshape", {}).get("shape") if "reshape" in spec else None
            is_string = spec.get("data_type") == "TYPE_STRING"
            self.inputs.append((name, reshape, bool(spec.get("optional", False)), is_string))
        missing = set(graph_inputs) - {name for name, *_ in self.inputs}
        if missing:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: graph inputs {sorted(missing)} are not in config.pbtxt"
            )
        self.outputs: list[tuple[str, Any, list[int], bool]] = []
        for spec in config.get("output", []):
            name = spec["name"]
            if name not in graph_outputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config output {name!r} is not an output of {path} "
                    f"(graph outputs: {sorted(graph_outputs)})"
                )
            dtype = pb_utils.triton_string_to_numpy(spec["data_type"])
            dims = [int(d) for d in spec.get("dims", [])]
            self.outputs.append((name, dtype, dims, "reshape" in spec))
        self.output_names = [name for name, *_ in self.outputs]

    def _feeds(self, request: Any) -> dict[str, np.ndarray]:
        """Turn one Triton request into onnxruntime feeds (names unchanged)."""
        feeds: dict[str, np.ndarray] = {}
        for name, reshape, optional, is_string in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                if optional:
                    continue
                raise ValueError(f"missing input {name!r}")
            array = tensor.as_numpy()
            if reshape is not None:
                lead = array.shape[:1] if self.batching else ()
                array = array.reshape(tuple(lead) + tuple(reshape))
            if is_string:  # Triton hands bytes; onnxruntime string tensors want str
                array = np.array(
                    [v.decode() if isinstance(v, bytes) else v for v in array.ravel()],
                    dtype=object,
                ).reshape(array.shape)
            feeds[name] = array
        return feeds

    def _response(self, values: list[np.ndarray]) -> Any:
        """Cast graph outputs to the configured types (and shapes) and wrap them."""
        tensors = []
        for (name, dtype, dims, reshaped), value in zip(self.outputs, values, strict=True):
            array = np.asarray(value)
            if dtype == np.object_:
                array = np.array(
                    [v.encode() if isinstance(v, str) else v for v in array.ravel()],
                    dtype=object,
                ).reshape(array.shape)
            else:
                array = array.astype(dtype, copy=False)
            if reshaped:
                lead = array.shape[:1] if self.batching else ()
                array = array.reshape(tuple(lead) + tuple(dims))
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(array)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(self.output_names, feeds))

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request; one failing request does not fail the others."""
        responses: list[Any] = [None] * len(requests)
        feeds_by_index: dict[int, dict[str, np.ndarray]] = {}
        for index, request in enumerate(requests):
            try:
                feeds_by_index[index] = self._feeds(request)
            except Exception as exc:
                responses[index] = _error(f"{self.model_name}: {exc}")

        if self.batching and len(feeds_by_index) > 1 and _stackable(feeds_by_index.values()):
            indices = list(feeds_by_index)
            rows = [len(next(iter(feeds_by_index[i].values()))) for i in indices]
            names = list(feeds_by_index[indices[0]])
            merged = {n: np.concatenate([feeds_by_index[i][n] for i in indices]) for n in names}
            try:
                values = self._run(merged)
                bounds = np.cumsum(rows)[:-1]
                parts = [np.split(np.asarray(v), bounds) for v in values]
                for k, index in enumerate(indices):
                    responses[index] = self._response([p[k] for p in parts])
                return responses
            except Exception:
                pass  # fall back to one call per request, which reports errors per request

        for index, feeds in feeds_by_index.items():
            try:
                responses[index] = self._response(self._run(feeds))
            except Exception as exc:
                responses[index] = _error(f"{self.model_name}: {exc}")
        return responses

    def finalize(self) -> None:
        """Drop the session so the stub exits promptly."""
        self.session = None


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def _stackable(all_feeds: Any) -> bool:
    """True when the requests have the same inputs with equal non-batch shapes and dtypes."""
    feeds_list = list(all_feeds)
    first = feeds_list[0]
    if not first:
        return False
    for feeds in feeds_list[1:]:
        if feeds.keys() != first.keys():
            return False
        for name, array in feeds.items():
            ref = first[name]
            if array.ndim == 0 or array.shape[1:] != ref.shape[1:] or array.dtype != ref.dtype:
                return False
    return all(a.ndim > 0 for a in first.values())
