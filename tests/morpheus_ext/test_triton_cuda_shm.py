"""Triton over CUDA shared memory: one clear error without a GPU, same outputs with one."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from morpheus_ext.feature_spec import load_spec, resolve_layout
from morpheus_ext.model_repository import ENSEMBLE_OUTPUTS, INPUT
from morpheus_ext.stages.inference.cuda_shm import layouts_from_metadata
from morpheus_ext.stages.inference.triton import TritonEngine, TritonEngineError
from morpheus_ext.stages.preprocess.featurizer import Featurizer
from synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.integration
SPEC = load_spec("security_events")


def _cuda_usable() -> bool:
    if importlib.util.find_spec("cuda") is None:
        return False
    try:
        import cuda.bindings.runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:
        return False


def test_layouts_come_from_the_served_metadata(triton_server: Any) -> None:
    engine = TritonEngine(triton_server.grpc_url, SPEC.spec_hash)
    try:
        layouts = layouts_from_metadata(engine._metadata(engine.model))
    finally:
        engine.close()
    assert set(layouts) == {INPUT, *ENSEMBLE_OUTPUTS}
    assert layouts[INPUT].row_elements == 256 and layouts[INPUT].datatype == "FP32"
    assert layouts["FIELD_Z"].row_elements == len(resolve_layout(SPEC).fields)
    assert layouts["MODEL_VERSION"].byte_size(4) == 4 * 8


@pytest.mark.skipif(_cuda_usable(), reason="this check is for machines without a usable GPU")
def test_cuda_shared_memory_without_a_gpu_is_one_clear_error(triton_server: Any) -> None:
    with pytest.raises(TritonEngineError) as info:
        TritonEngine(triton_server.grpc_url, SPEC.spec_hash, shared_memory="cuda")
    message = str(info.value)
    assert "\n" not in message and "shared_memory: cuda" in message


@pytest.mark.gpu
@pytest.mark.skipif(
    not _cuda_usable(), reason="needs a CUDA GPU and tritonclient[cuda] (cuda-python)"
)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cuda_shared_memory_gives_the_same_outputs(triton_server: Any, protocol: str) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_address
    tensor = np.asarray(Featurizer(SPEC).transform(generate(SyntheticConfig(n_events=3000))).tensor)
    plain = TritonEngine(url, SPEC.spec_hash, protocol=protocol)  # type: ignore[arg-type]
    shm = TritonEngine(url, SPEC.spec_hash, protocol=protocol, shared_memory="cuda")  # type: ignore[arg-type]
    try:
        expected, got = plain.infer(tensor), shm.infer(tensor)
        again = shm.infer(tensor[:10])  # regions are reused: a smaller batch reads its own rows
        # Several requests in flight: each pool thread registers its own regions.
        pieces = [shm.submit(tensor[i : i + 500]) for i in range(0, len(tensor), 500)]
        concurrent = [p.result() for p in pieces]
    finally:
        plain.close()
        shm.close()
    for name in ENSEMBLE_OUTPUTS:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(again[name], expected[name][:10], atol=1e-6, err_msg=name)
        joined = np.concatenate([c[name] for c in concurrent])
        np.testing.assert_allclose(joined, expected[name], atol=1e-6, err_msg=name)
    # close() unregistered every region it made, from the closing thread (HTTP/gevent clients
    # cannot be used from the pool threads that registered them once those have exited).
    assert not [r for r in _cuda_regions(url, protocol) if r.startswith("secureai-")]


def _cuda_regions(url: str, protocol: str) -> list[str]:
    """Names of the CUDA shared-memory regions registered on the server."""
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        status = grpcclient.InferenceServerClient(url).get_cuda_shared_memory_status(as_json=True)
        return list(status.get("regions", {}))
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        return [str(r["name"]) for r in client.get_cuda_shared_memory_status()]
    finally:
        client.close()
