"""Inference on a GPU: ONNX Runtime's CUDA provider, else torch, else ONNX Runtime on CPU.

Why three runtimes: the ``onnxruntime`` wheel on PyPI is CPU-only (``onnxruntime-gpu`` is the
CUDA one), and the GPU machines this project is lent have torch with CUDA but may have either ORT.
So :func:`select_device` picks, per machine, where the featurizer's numeric core runs (CuPy or
NumPy) and an ordered list of engines to try; :class:`DeviceEngine` loads the first that works.
The torch engine runs the *same* ONNX files (the served ``dfp_encoder`` and ``dfp_autoencoder``,
read by :mod:`morpheus_ext.onnx_proto`) with a handful of torch ops, so there is no second copy of
the model to keep in step. The outputs and post-processing are the in-process engine's.

A CuPy EVENT_TENSOR is handed over without a host copy (an ORT IO binding of its device pointer,
or DLPack for torch); only the scores (a few floats per row) come back to the host.

CuPy, torch and the CUDA provider are imported lazily: on a CPU machine this module costs nothing
and :func:`select_device` answers ``ort-cpu`` (the plain in-process path).

>>> from morpheus_ext.feature_spec import load_spec
>>> from morpheus_ext.model_repository import DEFAULT_REPOSITORY
>>> plan = select_device("cpu")
>>> plan.xp, plan.engines
('numpy', ('ort-cpu',))
>>> engine = DeviceEngine(DEFAULT_REPOSITORY, load_spec("security_events").spec_hash, plan)
>>> out = engine.infer(np.zeros((3, 256), dtype=np.float32))
>>> engine.kind, out["ANOMALY_SCORE"].shape
('ort-cpu', (3, 1))
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

from morpheus_ext.model_repository import (
    AE_OUTPUTS,
    AUTOENCODER,
    ENCODER,
    ENSEMBLE,
    INPUT,
    NORMALIZED,
    POSTPROC,
    ModelRepository,
    ModelRepositoryError,
    check_spec_hash,
    served_version,
)
from morpheus_ext.onnx_proto import Model, read_model
from morpheus_ext.stages.inference.base import ModelInfo
from morpheus_ext.stages.postprocess.postproc import DEFAULT_TOP_K, postprocess
from morpheus_ext.triton_limits import MAX_BATCH

log = logging.getLogger(__name__)

DeviceRequest = Literal["auto", "cuda", "cpu"]
EngineKind = Literal["ort-cuda", "torch-cuda", "ort-cpu", "torch-cpu"]
"""``torch-cpu`` is never chosen by :func:`select_device`; it exists so the torch engine's
graph runner is tested on machines without a GPU."""
ArrayModule = Literal["cupy", "numpy"]
CUDA_PROVIDER = "CUDAExecutionProvider"


class DeviceUnavailable(RuntimeError):
    """``--device cuda`` on a machine where nothing can run on a GPU."""


class DeviceProbe(Protocol):
    """What :func:`select_device` asks of a machine (a fake one in the tests)."""

    def ort_providers(self) -> Sequence[str]:
        """``onnxruntime.get_available_providers()``."""
        ...

    def torch_cuda(self) -> bool:
        """torch imports and sees a CUDA device."""
        ...

    def cupy_cuda(self) -> bool:
        """CuPy imports and sees a CUDA device."""
        ...


class SystemProbe:
    """The real machine: each answer imports its library only when asked."""

    def ort_providers(self) -> Sequence[str]:
        return list(ort.get_available_providers())

    def torch_cuda(self) -> bool:
        try:
            torch = importlib.import_module("torch")
            return bool(torch.cuda.is_available())
        except Exception:
            return False

    def cupy_cuda(self) -> bool:
        try:
            cupy = importlib.import_module("cupy")
            return int(cupy.cuda.runtime.getDeviceCount()) > 0
        except Exception:
            return False


@dataclass(frozen=True)
class DevicePlan:
    """Where each half runs: ``xp`` for the featurizer's numeric core, ``engines`` to try in
    order (the first that loads scores), and ``why`` in words for the benchmark's report."""

    xp: ArrayModule
    engines: tuple[EngineKind, ...]
    why: str

    def array_module(self) -> ModuleType:
        """NumPy or CuPy (imported here, on first use)."""
        return np if self.xp == "numpy" else importlib.import_module("cupy")


def select_device(
    requested: DeviceRequest = "auto", probe: DeviceProbe | None = None
) -> DevicePlan:
    """Pick the array module and engine order for ``requested`` on this machine.

    ``cpu``: NumPy + ORT on CPU, whatever the machine has. ``auto``: each half on the GPU where
    it can be, else on CPU. ``cuda``: like ``auto`` but refuses (:class:`DeviceUnavailable`) when
    neither half can use a GPU, so a benchmark never reports CPU numbers as GPU ones.
    ORT's CUDA provider comes before torch (the served graph as is, fused by ORT); torch is the
    fallback where the ORT wheel is the CPU-only one; CPU ORT stays last for ``auto`` in case
    the CUDA provider is listed but cannot load (missing cuDNN), which ORT only says at load.
    """
    if requested == "cpu":
        return DevicePlan("numpy", ("ort-cpu",), "requested --device cpu")
    probe = probe or SystemProbe()
    engines: list[EngineKind] = []
    notes = []
    if CUDA_PROVIDER in probe.ort_providers():
        engines.append("ort-cuda")
    else:
        notes.append("onnxruntime has no CUDAExecutionProvider")
    if probe.torch_cuda():
        engines.append("torch-cuda")
    else:
        notes.append("torch sees no CUDA device")
    xp: ArrayModule = "cupy" if probe.cupy_cuda() else "numpy"
    if xp == "numpy":
        notes.append("CuPy sees no CUDA device")
    if requested == "cuda" and not engines and xp == "numpy":
        raise DeviceUnavailable(
            "--device cuda: nothing here can use a GPU (" + "; ".join(notes) + ")"
        )
    if requested == "auto" or not engines:
        engines.append("ort-cpu")
    return DevicePlan(xp, tuple(engines), "; ".join(notes) or "all on the GPU")


# ---------------------------------------------------------------------------- torch runner
def _torch() -> Any:
    return importlib.import_module("torch")


class TorchGraph:
    """Runs an ONNX graph of the ops our exports use (an MLP autoencoder with its scoring head,
    the normalizer) as torch calls on ``device``; any other op refuses at load, not mid-batch.

    Float32 matmuls are kept exact (no TF32), so GPU scores match the CPU's to ~1e-6.
    """

    def __init__(self, model: Model, device: str) -> None:
        torch = _torch()
        self.torch, self.model, self.device = torch, model, device
        self.ops = self._ops()
        unknown = sorted({n.op_type for n in model.nodes} - {"Constant", *self.ops})
        if unknown:
            raise ModelRepositoryError(f"the torch engine cannot run ONNX op(s) {unknown}")
        constants = dict(model.initializers)
        for node in model.nodes:  # Constant nodes: made once here, not per batch
            if node.op_type == "Constant":
                constants[node.outputs[0]] = np.asarray(node.attributes["value"])
        self.nodes = [node for node in model.nodes if node.op_type != "Constant"]
        self.constants = {
            name: torch.as_tensor(np.ascontiguousarray(value), device=device)
            for name, value in constants.items()
        }
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False

    def _ops(self) -> dict[str, Callable[..., Any]]:
        torch = _torch()
        dtypes = {
            1: torch.float32,
            6: torch.int32,
            7: torch.int64,
            9: torch.bool,
            11: torch.float64,
        }

        def gemm(a: Any, b: Any, c: Any = None, **at: Any) -> Any:
            a = a.T if at.get("transA", 0) else a
            b = b.T if at.get("transB", 0) else b
            y = at.get("alpha", 1.0) * (a @ b)
            return y if c is None else y + at.get("beta", 1.0) * c

        def reduce_mean(x: Any, axes_input: Any = None, **at: Any) -> Any:
            # opset < 18: axes is an attribute; from 18 an optional input
            given = at.get("axes") if axes_input is None else axes_input.tolist()
            dims = [int(a) for a in given or []]
            keep = bool(at.get("keepdims", 1))
            return x.mean(dim=tuple(dims), keepdim=keep) if dims else x.mean()

        def constant_of_shape(shape: Any, **at: Any) -> Any:
            value = torch.from_numpy(np.asarray(at.get("value", np.zeros(1, np.float32))))
            dims = tuple(int(s) for s in shape.tolist())
            return torch.full(dims, value.item(), dtype=value.dtype, device=shape.device)

        def clip(x: Any, lo: Any = None, hi: Any = None, **_: Any) -> Any:
            return torch.clamp(x, lo, hi)

        return {
            "Gemm": gemm,
            "MatMul": lambda a, b, **_: a @ b,
            "Add": lambda a, b, **_: a + b,
            "Sub": lambda a, b, **_: a - b,
            "Mul": lambda a, b, **_: a * b,
            "Div": lambda a, b, **_: a / b,
            "Pow": lambda a, b, **_: torch.pow(a, b),
            "Erf": lambda x, **_: torch.erf(x),
            "Relu": lambda x, **_: torch.relu(x),
            "Sigmoid": lambda x, **_: torch.sigmoid(x),
            "Tanh": lambda x, **_: torch.tanh(x),
            "ReduceMean": reduce_mean,
            "Shape": lambda x, **_: torch.tensor(list(x.shape), dtype=torch.int64, device=x.device),
            "ConstantOfShape": constant_of_shape,
            "Cast": lambda x, **at: x.to(dtypes[at["to"]]),
            "IsNaN": lambda x, **_: torch.isnan(x),
            "Where": lambda c, a, b, **_: torch.where(c, a, b),
            "Clip": clip,
            "Identity": lambda x, **_: x,
        }

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Graph inputs (torch tensors on ``device``) -> graph outputs, by name."""
        values: dict[str, Any] = {**self.constants, **feeds}
        with self.torch.inference_mode():
            for node in self.nodes:
                args = [values[name] if name else None for name in node.inputs]
                values[node.outputs[0]] = self.ops[node.op_type](*args, **node.attributes)
        return {name: values[name] for name in self.model.outputs}


# ---------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class _Loaded:
    kind: EngineKind
    run: Callable[[Any], list[np.ndarray]]


class DeviceEngine:
    """The ``dfp_ensemble`` steps (encoder -> autoencoder -> postproc) on the first engine of
    ``plan`` that loads; ``infer`` takes a NumPy or CuPy EVENT_TENSOR and returns NumPy outputs,
    the same dict as :class:`~morpheus_ext.stages.inference.inprocess.InProcessEngine`."""

    def __init__(
        self,
        repository: Path | str,
        spec_hash: str,
        plan: DevicePlan | None = None,
        autoencoder_version: int | None = None,
        engines: Sequence[EngineKind] | None = None,
    ) -> None:
        """``engines`` overrides the plan's order (e.g. ``["torch-cpu"]`` in a test)."""
        self.repo = ModelRepository(repository)
        self.spec_hash = spec_hash
        self.version = (
            served_version(self.repo.root) if autoencoder_version is None else autoencoder_version
        )
        candidates = tuple(engines or (plan or select_device("auto")).engines)
        failures = []
        for kind in candidates:
            try:
                self._loaded = self._load(kind)
                break
            except Exception as exc:  # next engine; say why in the error if none loads
                log.warning("device engine: %s did not load: %s", kind, exc)
                failures.append(f"{kind}: {exc}")
        else:
            raise ModelRepositoryError("no engine could load: " + "; ".join(failures))
        self.kind: EngineKind = self._loaded.kind
        params = (
            self.repo.config_parameters(POSTPROC) if (self.repo.root / POSTPROC).is_dir() else {}
        )
        self.top_k = int(params.get("top_k", DEFAULT_TOP_K))
        self.info = ModelInfo(name=ENSEMBLE, spec_hash=spec_hash, max_batch_size=MAX_BATCH)

    def _path(self, model: str, version: int | None) -> Path:
        path = self.repo.version_dir(model, version) / "model.onnx"
        if not path.is_file():
            raise ModelRepositoryError(f"missing {path}")
        return path

    def _load(self, kind: EngineKind) -> _Loaded:
        paths = (self._path(ENCODER, None), self._path(AUTOENCODER, self.version))
        if kind.startswith("torch"):
            return self._load_torch(kind, paths)
        return self._load_ort(kind, paths)

    def _load_ort(self, kind: EngineKind, paths: tuple[Path, Path]) -> _Loaded:
        cuda = kind == "ort-cuda"
        if cuda and CUDA_PROVIDER not in ort.get_available_providers():
            raise RuntimeError(f"this onnxruntime has no {CUDA_PROVIDER}")
        providers: list[Any] = [(CUDA_PROVIDER, {"device_id": 0})] if cuda else []
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = []
        for model, path in zip((ENCODER, AUTOENCODER), paths, strict=True):
            session = ort.InferenceSession(str(path), options, providers=providers)
            if cuda and session.get_providers()[0] != CUDA_PROVIDER:
                raise RuntimeError(f"{CUDA_PROVIDER} is listed but did not load")
            meta = session.get_modelmeta().custom_metadata_map
            check_spec_hash(self.spec_hash, meta.get("feature_spec_hash"), f"{model} ({path})")
            sessions.append(session)
        encoder, autoencoder = sessions
        device = "cuda" if cuda else "cpu"

        def run(tensor: Any) -> list[np.ndarray]:
            # IO binding: a CuPy tensor is read where it lies and NORMALIZED stays on the device
            # between the two sessions; only the autoencoder's small outputs are copied back.
            first = encoder.io_binding()
            if hasattr(tensor, "__cuda_array_interface__"):
                x = tensor.astype("float32", copy=False)
                if not x.flags.c_contiguous:
                    x = x.copy()
                _synchronize_cupy()
                first.bind_input(INPUT, "cuda", 0, np.float32, list(x.shape), x.data.ptr)
            else:
                first.bind_cpu_input(INPUT, np.ascontiguousarray(tensor, dtype=np.float32))
            first.bind_output(NORMALIZED, device)
            encoder.run_with_iobinding(first)
            second = autoencoder.io_binding()
            second.bind_ortvalue_input(NORMALIZED, first.get_outputs()[0])
            for name in AE_OUTPUTS:
                second.bind_output(name, "cpu")
            autoencoder.run_with_iobinding(second)
            return list(second.copy_outputs_to_cpu())

        return _Loaded(kind, run)

    def _load_torch(self, kind: EngineKind, paths: tuple[Path, Path]) -> _Loaded:
        torch = _torch()
        device = "cuda" if kind == "torch-cuda" else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        graphs = []
        for model, path in zip((ENCODER, AUTOENCODER), paths, strict=True):
            onnx_model = read_model(path)
            found = onnx_model.metadata.get("feature_spec_hash")
            check_spec_hash(self.spec_hash, found, f"{model} ({path})")
            graphs.append(TorchGraph(onnx_model, device))
        encoder, autoencoder = graphs

        def run(tensor: Any) -> list[np.ndarray]:
            if hasattr(tensor, "__cuda_array_interface__"):
                _synchronize_cupy()
                x = torch.from_dlpack(tensor.astype("float32", copy=False))
                x = x.to(device)
            else:
                x = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32)).to(device)
            normalized = encoder.run({INPUT: x})[NORMALIZED]
            out = autoencoder.run({NORMALIZED: normalized})
            return [out[name].cpu().numpy() for name in AE_OUTPUTS]

        return _Loaded(kind, run)

    def infer(self, tensor: Any) -> dict[str, np.ndarray]:
        """EVENT_TENSOR [N, 256] (NumPy or CuPy) -> the ensemble outputs (NumPy)."""
        score, field_z, threshold, version = self._loaded.run(tensor)
        out: dict[str, np.ndarray] = {
            "ANOMALY_SCORE": score,
            "FIELD_Z": field_z,
            "THRESHOLD": threshold,
            "MODEL_VERSION": version,
        }
        out.update(postprocess(score, field_z, threshold, self.top_k))
        return out

    def submit(self, tensor: Any) -> Future[dict[str, np.ndarray]]:
        """Runs now, on the calling thread (the GPU call itself is the asynchronous part)."""
        fut: Future[dict[str, np.ndarray]] = Future()
        try:
            fut.set_result(self.infer(tensor))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        """Nothing to release: sessions and tensors are freed with the engine."""


def _synchronize_cupy() -> None:
    """CuPy's kernels run on its current stream; ORT and torch read on theirs: wait first."""
    importlib.import_module("cupy").cuda.get_current_stream().synchronize()
