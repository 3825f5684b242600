"""Integration test of the CPU Triton harness (scripts/triton/) against a real tritonserver.

Why: every Triton-backed test relies on this harness deriving a servable CPU variant of a
production-shaped repository (``onnxruntime_onnx`` -> python backend), starting the real server,
and leaving nothing behind (processes, /dev/shm regions). This builds a tiny canonical
repository (an ONNX model made with ``onnx.helper``, a python model, an ensemble of both),
serves it, talks plain KServe v2 JSON over ``urllib`` (tritonclient is not in the main venv),
and checks the numbers, the metrics and the clean shutdown.

The Triton venv comes from scripts/triton/install.sh (``make test`` runs it first). When it is
missing these tests FAIL, not skip: a silently skipped serving test would hide a broken setup.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS_DIR = REPO_ROOT / "scripts" / "triton"
if str(HARNESS_DIR) not in sys.path:
    sys.path.insert(0, str(HARNESS_DIR))

import triton_harness as th  # noqa: E402  (lives in scripts/triton, not an installed package)

pytestmark = pytest.mark.integration

ONNX_CONFIG = """
name: "double"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0 ] } ]
optimization { execution_accelerators {
  gpu_execution_accelerator: [ { name: "tensorrt" } ] } }
"""

OFFSET_CONFIG = """
name: "offset"
backend: "python"
max_batch_size: 64
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_GPU } ]
"""

OFFSET_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = pb_utils.Tensor("OUT", (x + 1.0).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

ENSEMBLE_CONFIG = """
name: "double_plus_one"
platform: "ensemble"
max_batch_size: 64
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Z" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "double" model_version: -1
    input_map { key: "X" value: "X" } output_map { key: "Y" value: "doubled" } },
  { model_name: "offset" model_version: -1
    input_map { key: "IN" value: "doubled" } output_map { key: "OUT" value: "Z" } }
] }
"""

# Reports what the model environment looks like from inside a stub: the numpy<2 pitfall and
# the project package (python-backend models such as anomaly_postproc import morpheus_ext).
PROBE_CONFIG = """
name: "env_probe"
backend: "python"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

PROBE_MODEL = """
import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        try:
            import morpheus_ext
            project = morpheus_ext.__name__
        except Exception as exc:
            project = f"import failed: {exc!r}"
        info = {"numpy": np.__version__, "prefix": sys.prefix, "project": project}
        out = np.array([json.dumps(info).encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for _ in requests]
"""


def _write_onnx_double(path: Path) -> None:
    """y = x * 2 over [batch, 4] float32, written with the onnx helper API."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    node = helper.make_node("Mul", ["X", "two"], ["Y"])
    graph = helper.make_graph([node], "double", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime >= 1.10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def build_canonical_repository(root: Path) -> Path:
    """A production-shaped repository: GPU instance groups, TensorRT hint, ensemble."""
    files = {
        "double/config.pbtxt": ONNX_CONFIG,
        "offset/config.pbtxt": OFFSET_CONFIG,
        "offset/1/model.py": OFFSET_MODEL,
        "double_plus_one/config.pbtxt": ENSEMBLE_CONFIG,
        "env_probe/config.pbtxt": PROBE_CONFIG,
        "env_probe/1/model.py": PROBE_MODEL,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.lstrip())
    (root / "double_plus_one" / "1").mkdir(parents=True)
    _write_onnx_double(root / "double" / "1" / "model.onnx")
    return root


def require_triton_venv() -> dict[str, Any]:
    """Fail (never skip) with the install command when the Triton venv is missing."""
    try:
        return th.load_layout()
    except th.TritonNotInstalled as exc:
        message = str(exc)  # fail outside the except block: no chained traceback noise
    pytest.fail(message, pytrace=False)


def infer(server_url: str, model: str, name: str, rows: np.ndarray) -> dict[str, Any]:
    """One KServe v2 JSON inference; asserts HTTP 200 and returns the decoded body."""
    payload = {
        "inputs": [
            {
                "name": name,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ]
    }
    status, body = th.http_post(f"{server_url}/v2/models/{model}/infer", payload)
    assert status == 200, body.decode(errors="replace")
    return dict(json.loads(body))


def output_array(response: dict[str, Any], name: str) -> np.ndarray:
    (output,) = [o for o in response["outputs"] if o["name"] == name]
    assert output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


@pytest.fixture(scope="module")
def canonical_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_canonical_repository(tmp_path_factory.mktemp("canonical") / "models")


@pytest.fixture(scope="module")
def server(
    canonical_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[th.TritonServer]:
    """One server for the module; teardown asserts the stop leaves nothing behind."""
    require_triton_venv()
    server = th.TritonServer(canonical_repository, tmp_path_factory.mktemp("triton"))
    server.start(timeout=90)
    pid = server.pid
    assert pid is not None
    assert th.shm_files(server.shm_prefix), "python backend regions expected while serving"
    yield server

    began = time.monotonic()
    code = server.stop()
    print(
        f"triton started in {server.startup_secs:.1f} s, stopped in "
        f"{time.monotonic() - began:.1f} s"
    )
    assert code == 0, f"unclean exit {code}:\n{server.log_tail()}"
    assert not server.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert th.processes_mentioning(server.shm_prefix) == [], "stub processes left over"
    assert th.shm_files(server.shm_prefix) == [], "/dev/shm regions left over"


def test_missing_triton_venv_names_the_install_script(tmp_path: Path) -> None:
    with pytest.raises(th.TritonNotInstalled, match=r"scripts/triton/install\.sh"):
        th.load_layout(tmp_path / "no-such-venv")


def test_cpu_variant_is_a_mechanical_derivation(
    server: th.TritonServer, canonical_repository: Path
) -> None:
    derived = server.model_repository
    assert derived != canonical_repository
    onnx_config = (derived / "double" / "config.pbtxt").read_text()
    assert 'backend: "python"' in onnx_config
    assert "platform" not in onnx_config.split("\n", 2)[2]  # past the GENERATED header
    assert "optimization" not in onnx_config and "KIND_GPU" not in onnx_config
    assert "kind: KIND_CPU" in onnx_config and "max_queue_delay_microseconds: 2000" in onnx_config
    template = (HARNESS_DIR / "onnx_python_model.py").read_bytes()
    assert (derived / "double" / "1" / "model.py").read_bytes() == template
    assert (derived / "double" / "1" / "model.onnx").read_bytes() == (
        canonical_repository / "double" / "1" / "model.onnx"
    ).read_bytes()
    assert "kind: KIND_CPU" in (derived / "offset" / "config.pbtxt").read_text()
    ensemble = "double_plus_one/config.pbtxt"
    assert (derived / ensemble).read_text() == (canonical_repository / ensemble).read_text()
    # The canonical repository is never touched (no generated model.py, no bytecode).
    assert not (canonical_repository / "double" / "1" / "model.py").exists()
    assert not list(canonical_repository.rglob("__pycache__"))


def test_derivation_refuses_models_it_cannot_serve(tmp_path: Path) -> None:
    require_triton_venv()
    src = tmp_path / "src"
    (src / "engine" / "1").mkdir(parents=True)
    (src / "engine" / "1" / "model.plan").write_bytes(b"")
    (src / "engine" / "config.pbtxt").write_text('name: "engine"\nplatform: "tensorrt_plan"\n')
    with pytest.raises(RuntimeError, match="no CPU derivation for platform/backend tensorrt_plan"):
        th.derive_cpu_variant(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_server_is_ready_and_lists_models(server: th.TritonServer) -> None:
    assert server.is_ready()
    status, _ = th.http_get(f"{server.http_url}/v2/health/live")
    assert status == 200
    status, body = th.http_post(f"{server.http_url}/v2/repository/index", {})
    assert status == 200
    states = {m["name"]: m.get("state") for m in json.loads(body)}
    assert states == {
        "double": "READY",
        "offset": "READY",
        "double_plus_one": "READY",
        "env_probe": "READY",
    }
    status, body = th.http_get(f"{server.http_url}/v2/models/double")
    meta = json.loads(body)
    assert status == 200
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [-1, 4]}]


def test_onnx_model_and_ensemble_compute_the_right_numbers(server: th.TritonServer) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 4.5
    doubled = output_array(infer(server.http_url, "double", "X", x), "Y")
    np.testing.assert_array_equal(doubled, x * 2)
    chained = output_array(infer(server.http_url, "double_plus_one", "X", x), "Z")
    np.testing.assert_array_equal(chained, x * 2 + 1)


def test_concurrent_requests_are_answered_individually(server: th.TritonServer) -> None:
    """Dynamic batching merges concurrent requests in one onnxruntime call; results must
    still go back to the right caller with the right number of rows."""
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(n, 4)).astype(np.float32) for n in (1, 2, 3, 5, 8, 13, 1, 2) * 3]

    def call(rows: np.ndarray) -> np.ndarray:
        return output_array(infer(server.http_url, "double", "X", rows), "Y")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, batches))
    for rows, result in zip(batches, results, strict=True):
        np.testing.assert_allclose(result, rows * 2, rtol=1e-6)


def test_bad_request_is_rejected_and_server_survives(server: th.TritonServer) -> None:
    payload = {"inputs": [{"name": "WRONG", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}
    status, body = th.http_post(f"{server.http_url}/v2/models/double/infer", payload)
    assert status == 400, body
    assert "WRONG" in json.loads(body)["error"]
    assert server.is_ready()


def test_models_see_the_triton_venv_with_numpy_1_and_the_project(
    server: th.TritonServer,
) -> None:
    response = infer(server.http_url, "env_probe", "IN", np.zeros(1, dtype=np.float32))
    info = json.loads(response["outputs"][0]["data"][0])
    assert info["numpy"].startswith("1."), info  # numpy 2 makes python models return nothing
    assert Path(info["prefix"]) == Path(th.load_layout()["venv"])
    if (REPO_ROOT / "pyproject.toml").exists():
        assert info["project"] == "morpheus_ext", info


def test_metrics_count_successful_requests(server: th.TritonServer) -> None:
    before = _success_count(server, "double")
    infer(server.http_url, "double", "X", np.ones((2, 4), dtype=np.float32))
    # Triton refreshes counters on each request; allow a moment for the scrape to see it.
    deadline = time.monotonic() + 5
    while _success_count(server, "double") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _success_count(server, "double") >= before + 1


def _success_count(server: th.TritonServer, model: str) -> float:
    status, body = th.http_get(server.metrics_url)
    assert status == 200
    text = body.decode()
    assert "nv_inference_request_success" in text
    match = re.search(
        rf'^nv_inference_request_success\{{model="{model}",version="1"\}} (\S+)$', text, re.M
    )
    assert match, text[:2000]
    return float(match.group(1))


def test_serve_cli_explicit_mode_and_sigterm(canonical_repository: Path, tmp_path: Path) -> None:
    """scripts/triton/serve.py end to end: explicit mode, URLs printed, clean SIGTERM stop."""
    require_triton_venv()
    cmd = [
        sys.executable,
        str(HARNESS_DIR / "serve.py"),
        "--repository",
        str(canonical_repository),
        "--workdir",
        str(tmp_path),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "double",
        "--timeout",
        "90",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.lstrip().startswith("shm:"):
                break
        banner = "".join(lines)
        assert "triton ready" in banner, banner
        urls = dict(re.findall(r"^\s+(\w+):\s+(\S+)$", banner, re.M))
        x = np.ones((1, 4), dtype=np.float32)
        doubled = output_array(infer(urls["http"], "double", "X", x), "Y")
        np.testing.assert_array_equal(doubled, x * 2)
        status, _ = th.http_get(f"{urls['http']}/v2/models/double_plus_one/ready")
        assert status != 200, "explicit mode must load only what was asked for"
        shm_prefix = urls["shm"].removeprefix("/dev/shm/").rstrip("*")
        assert th.shm_files(shm_prefix)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "triton stopped" in rest and "(exit code 0)" in rest, rest
    assert th.processes_mentioning(shm_prefix) == []
    assert th.shm_files(shm_prefix) == []
