"""The GPU path (issue #20): device selection, the engines it falls back to, the ONNX reader the
torch engine uses, and scripts/gpu/bench_featurize_infer.py end to end on CPU.

Everything outside the ``gpu`` mark runs on any machine (``make test``): the selection logic
against :class:`FakeProviders`, the torch engine on CPU, the script with ``--device cpu``. The
``gpu`` tests run the CuPy core and the CUDA engines where a GPU is lent (``pytest -m gpu``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from morpheus_ext.feature_spec import load_spec
from morpheus_ext.model_repository import DEFAULT_REPOSITORY, ModelRepositoryError
from morpheus_ext.onnx_proto import OnnxFormatError, parse_model, read_model
from morpheus_ext.stages.inference.device import (
    DeviceEngine,
    DeviceUnavailable,
    EngineKind,
    SystemProbe,
    select_device,
)
from morpheus_ext.stages.inference.inprocess import InProcessEngine
from morpheus_ext.stages.preprocess.featurizer import Featurizer, TensorColumns, event_tensor
from synthetic import SyntheticConfig, generate

from ..conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu" / "bench_featurize_infer.py"
SPEC = load_spec("security_events")
NEEDS_GPU = "needs a CUDA GPU with CuPy"


@dataclass
class FakeProviders:
    """A machine as :func:`select_device` sees it, without importing CuPy, torch or CUDA."""

    providers: Sequence[str] = ("CPUExecutionProvider",)
    torch: bool = False
    cupy: bool = False

    def ort_providers(self) -> Sequence[str]:
        return self.providers

    def torch_cuda(self) -> bool:
        return self.torch

    def cupy_cuda(self) -> bool:
        return self.cupy


ORT_GPU = ("CUDAExecutionProvider", "CPUExecutionProvider")


def events(n: int, seed: int = 3) -> pd.DataFrame:
    return generate(SyntheticConfig(n_events=n, seed=seed))


# ------------------------------------------------------------------ device selection
def test_cpu_is_cpu_whatever_the_machine_has() -> None:
    plan = select_device("cpu", FakeProviders(ORT_GPU, torch=True, cupy=True))
    assert (plan.xp, plan.engines) == ("numpy", ("ort-cpu",))


def test_auto_prefers_ort_cuda_then_torch_and_keeps_cpu_last() -> None:
    plan = select_device("auto", FakeProviders(ORT_GPU, torch=True, cupy=True))
    assert (plan.xp, plan.engines) == ("cupy", ("ort-cuda", "torch-cuda", "ort-cpu"))
    assert plan.why == "all on the GPU"


def test_auto_falls_back_to_torch_where_ort_is_the_cpu_wheel() -> None:
    plan = select_device("auto", FakeProviders(torch=True, cupy=True))
    assert (plan.xp, plan.engines) == ("cupy", ("torch-cuda", "ort-cpu"))
    assert "no CUDAExecutionProvider" in plan.why


def test_auto_on_a_cpu_machine_is_the_cpu_path_and_says_why() -> None:
    plan = select_device("auto", FakeProviders())
    assert (plan.xp, plan.engines) == ("numpy", ("ort-cpu",))
    assert "torch sees no CUDA device" in plan.why and "CuPy sees no CUDA device" in plan.why


def test_cuda_refuses_rather_than_report_cpu_numbers_as_gpu_ones() -> None:
    with pytest.raises(DeviceUnavailable, match="nothing here can use a GPU"):
        select_device("cuda", FakeProviders())
    plan = select_device("cuda", FakeProviders(torch=True, cupy=True))
    assert plan.engines == ("torch-cuda",)  # no silent CPU engine behind it
    plan = select_device("cuda", FakeProviders(cupy=True))  # core on the GPU, ORT on CPU
    assert (plan.xp, plan.engines) == ("cupy", ("ort-cpu",))


# ------------------------------------------------------------------ engines on CPU
def test_a_listed_provider_that_does_not_load_falls_through_to_the_next() -> None:
    engine = DeviceEngine(DEFAULT_REPOSITORY, SPEC.spec_hash, engines=["ort-cuda", "ort-cpu"])
    if engine.kind == "ort-cuda":  # pragma: no cover - only where ORT-GPU really loads
        pytest.skip("this machine's ORT has a working CUDA provider")
    assert engine.kind == "ort-cpu"


def test_device_engines_score_like_the_in_process_engine() -> None:
    tensor = np.asarray(Featurizer(SPEC).transform(events(1500)).tensor)
    want = InProcessEngine(DEFAULT_REPOSITORY, SPEC.spec_hash).infer(tensor)
    ort_cpu = DeviceEngine(DEFAULT_REPOSITORY, SPEC.spec_hash, select_device("cpu"))
    got = ort_cpu.infer(tensor)
    assert set(got) == set(want)
    for name in want:  # the same session through an IO binding: bit for bit
        np.testing.assert_array_equal(got[name], want[name])
    torch_cpu = DeviceEngine(DEFAULT_REPOSITORY, SPEC.spec_hash, engines=["torch-cpu"])
    got = torch_cpu.infer(tensor)
    assert torch_cpu.kind == "torch-cpu"
    np.testing.assert_allclose(got["ANOMALY_SCORE"], want["ANOMALY_SCORE"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got["MODEL_VERSION"], want["MODEL_VERSION"])
    assert got["ANOMALY_SCORE"].dtype == np.float32 and got["FIELD_Z"].shape == (1500, 16)


def test_no_engine_loading_is_one_error_naming_each_failure() -> None:
    with pytest.raises(ModelRepositoryError, match=r"no engine could load: torch-cpu: .*ort-cpu: "):
        DeviceEngine(
            DEFAULT_REPOSITORY, "0" * 16, autoencoder_version=1, engines=["torch-cpu", "ort-cpu"]
        )


# ------------------------------------------------------------------ ONNX reader
@pytest.mark.parametrize("model", ["dfp_encoder", "dfp_autoencoder"])
def test_onnx_reader_agrees_with_the_onnx_package(model: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    path = DEFAULT_REPOSITORY / model / "1" / "model.onnx"
    want, got = onnx.load(str(path)), read_model(path)
    assert [n.op_type for n in want.graph.node] == [n.op_type for n in got.nodes]
    for a, b in zip(want.graph.node, got.nodes, strict=True):
        assert (list(a.input), list(a.output)) == (b.inputs, b.outputs)
        for attr in a.attribute:
            value = helper.get_attribute_value(attr)
            if hasattr(value, "dims"):
                value = numpy_helper.to_array(value)
                assert value.dtype == b.attributes[attr.name].dtype
            np.testing.assert_array_equal(np.asarray(value), np.asarray(b.attributes[attr.name]))
    for init in want.graph.initializer:
        array = numpy_helper.to_array(init)
        assert array.dtype == got.initializers[init.name].dtype
        np.testing.assert_array_equal(array, got.initializers[init.name])
    assert {p.key: p.value for p in want.metadata_props} == got.metadata


def test_onnx_reader_refuses_what_it_does_not_read() -> None:
    with pytest.raises(OnnxFormatError, match="no graph"):
        parse_model(b"\x08\x08")  # ir_version only
    with pytest.raises(OnnxFormatError, match="wire type"):
        parse_model(b"\x0b")


# ------------------------------------------------------------------ the featurizer's core
def test_core_on_numpy_is_what_transform_returns() -> None:
    fz = Featurizer(SPEC)
    frame = events(500)
    default = np.asarray(fz.transform(frame).tensor)
    np.testing.assert_array_equal(np.asarray(fz.transform(frame, xp=np).tensor), default)
    empty = event_tensor(np, fz.layout, TensorColumns(0, {}, {}, {}).to(np))
    assert empty.shape == (0, 256) and empty.dtype == np.float32


class _DeviceArray(np.ndarray):
    """An array of :class:`FakeCupy`: like CuPy's, it refuses to mix with a host (NumPy) array,
    so a NumPy array leaking into the core fails here as it would on a GPU."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        for x in (*inputs, *kwargs.get("out", ())):
            if isinstance(x, np.ndarray) and not isinstance(x, _DeviceArray):
                raise TypeError(f"{ufunc.__name__}: a host array mixed with a device array")
        plain = [x.view(np.ndarray) if isinstance(x, _DeviceArray) else x for x in inputs]
        return _device(getattr(ufunc, method)(*plain, **kwargs))

    def __setitem__(self, key: Any, value: Any) -> None:
        parts = key if isinstance(key, tuple) else (key,)
        for x in (*parts, value):
            if isinstance(x, np.ndarray) and not isinstance(x, _DeviceArray):
                raise TypeError("setitem: a host array mixed with a device array")
        super().__setitem__(key, value)


def _device(value: Any) -> Any:
    return value.view(_DeviceArray) if isinstance(value, np.ndarray) else value


class FakeCupy:
    """The part of CuPy's surface :func:`event_tensor` and :meth:`TensorColumns.to` use, on the
    host: checks the ``xp=cupy`` path keeps to one array module without a GPU."""

    float32 = np.float32

    def __getattr__(self, name: str) -> Any:
        fn = getattr(np, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            for x in args:  # asarray is the one host -> device copy
                if isinstance(x, np.ndarray) and not isinstance(x, _DeviceArray | np.generic):
                    if name == "asarray":
                        continue
                    raise TypeError(f"xp.{name}: a host array passed to the device module")
            return _device(
                fn(
                    *[a.view(np.ndarray) if isinstance(a, _DeviceArray) else a for a in args],
                    **kwargs,
                )
            )

        return call


def test_the_core_on_another_array_module_never_mixes_it_with_numpy() -> None:
    fz = Featurizer(SPEC)
    frame = events(800)
    frame.loc[3, "timestamp"] = "yesterday"
    want = fz.transform(frame)
    got = fz.transform(frame, xp=FakeCupy())  # type: ignore[arg-type]
    assert isinstance(got.tensor, _DeviceArray)
    np.testing.assert_array_equal(got.tensor.view(np.ndarray), want.tensor)
    assert got.rejects == want.rejects and len(got) == len(want) == 799
    host = TensorColumns(1, {"bytes_in": np.array([1.0])}, {}, {})  # not moved: the fake bites
    with pytest.raises(TypeError, match="host array"):
        event_tensor(FakeCupy(), fz.layout, host)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the script, CPU fallback
def run_script(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # the script finds the repo from its own path
    )
    return proc, (json.loads(out.read_text()) if out.exists() else {})


def test_bench_script_cpu_fallback_end_to_end(tmp_path: Path) -> None:
    md = tmp_path / "benchmarks.md"
    proc, report = run_script(
        tmp_path,
        *("--device", "cpu", "--events", "1500", "--batch-sizes", "500,1500"),
        *("--repeats", "1", "--markdown", str(md)),
    )
    assert proc.returncode == 0, proc.stderr
    assert report["plan"] == {
        "requested": "cpu",
        "xp": "numpy",
        "engine": "ort-cpu",
        "candidates": ["ort-cpu"],
        "why": "requested --device cpu",
    }
    parity = report["parity"]
    assert parity["ok"] and 0 < parity["rows"] <= report["events"] == 1500
    assert parity["tensor_max_abs_diff"] <= 1e-6 and parity["score_max_abs_diff"] <= 1e-5
    assert parity["tensor_nan_mismatches"] == 0 and parity["is_anomaly_mismatches"] == 0
    assert {"gpu", "cupy", "torch", "onnxruntime", "onnxruntime_providers", "cpu"} <= set(
        report["machine"]
    )
    assert [r["batch"] for r in report["rows"]] == [500, 1500]
    for row in report["rows"]:
        for path in ("device", "cpu"):
            assert set(row[path]) == {"featurize", "infer", "featurize_infer"}
            assert all(v > 0 for v in row[path].values())
    text = md.read_text()
    assert "## GPU featurize + infer" in text and "| 1500 | device |" in text


def test_bench_script_cuda_without_a_gpu_says_so(tmp_path: Path) -> None:
    if SystemProbe().cupy_cuda() or SystemProbe().torch_cuda():  # pragma: no cover
        pytest.skip("this machine has a GPU")
    proc, report = run_script(tmp_path, "--device", "cuda", "--events", "10")
    assert proc.returncode == 2 and report == {}
    assert "nothing here can use a GPU" in proc.stderr


# ------------------------------------------------------------------ on a GPU
def gpu() -> bool:
    return SystemProbe().cupy_cuda()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu(), reason=NEEDS_GPU)
def test_cupy_core_matches_the_cpu_tensor() -> None:  # pragma: no cover - GPU only
    import cupy

    fz = Featurizer(SPEC)
    frame = events(5000)
    frame.loc[3, "timestamp"] = "yesterday"  # a reject: the same rows must survive
    cpu = fz.transform(frame)
    dev = fz.transform(frame, xp=cupy)
    assert isinstance(dev.tensor, cupy.ndarray)
    got = dev.tensor.get()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(cpu.tensor))
    np.testing.assert_allclose(got, cpu.tensor, rtol=0, atol=1e-6)
    assert dev.rejects == cpu.rejects


@pytest.mark.gpu
@pytest.mark.skipif(not gpu(), reason=NEEDS_GPU)
@pytest.mark.parametrize("kind", ["ort-cuda", "torch-cuda"])
def test_cuda_engines_score_a_cupy_tensor_like_the_cpu(
    kind: EngineKind,
) -> None:  # pragma: no cover
    import cupy

    plan = select_device("auto")
    if kind not in plan.engines:
        pytest.skip(f"{kind} is not available here ({plan.why})")
    fz = Featurizer(SPEC)
    frame = events(5000)
    want = InProcessEngine(DEFAULT_REPOSITORY, SPEC.spec_hash).infer(fz.transform(frame).tensor)
    engine = DeviceEngine(DEFAULT_REPOSITORY, SPEC.spec_hash, engines=[kind])
    assert engine.kind == kind
    got = engine.infer(fz.transform(frame, xp=cupy).tensor)
    np.testing.assert_allclose(got["ANOMALY_SCORE"], want["ANOMALY_SCORE"], rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu(), reason=NEEDS_GPU)
def test_bench_script_on_the_gpu(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    proc, report = run_script(
        tmp_path, "--device", "cuda", "--events", "4096", "--batch-sizes", "4096", "--repeats", "1"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["plan"]["xp"] == "cupy" and report["plan"]["engine"].endswith("cuda")
    assert report["parity"]["ok"]
