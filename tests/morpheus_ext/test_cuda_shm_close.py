"""CudaSharedMemory.close: our clean-up logic, with a fake cudashm module (no GPU needed)."""

from __future__ import annotations

from typing import Any

import pytest

from morpheus_ext.stages.inference import cuda_shm
from morpheus_ext.stages.inference.cuda_shm import CudaSharedMemory, TensorLayout, _Regions


class FakeCudaShm:
    """Stands in for tritonclient.utils.cuda_shared_memory: records destroyed handles."""

    def __init__(self) -> None:
        self.destroyed: list[str] = []

    def destroy_shared_memory_region(self, handle: str) -> None:
        self.destroyed.append(handle)


class FakeClient:
    """Records unregister calls; fails for the region names it is told to."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.unregistered: list[str] = []
        self.failing = failing or set()

    def unregister_cuda_shared_memory(self, region: str) -> None:
        if region in self.failing:
            raise RuntimeError(f"server refused {region}")
        self.unregistered.append(region)


def _memory(monkeypatch: pytest.MonkeyPatch) -> tuple[CudaSharedMemory, FakeCudaShm]:
    fake = FakeCudaShm()
    monkeypatch.setattr(cuda_shm, "_cudashm", lambda: fake)
    memory = CudaSharedMemory({"X": TensorLayout("X", "FP32", 4)}, max_batch_size=8)
    for thread in ("t1", "t2"):  # two pool threads, each with its own registering client
        regions = _Regions({n: (f"{thread}-{n}", f"h-{thread}-{n}") for n in ("in", "out")})
        memory._all.append((object(), regions))
    return memory, fake


def test_close_unregisters_every_region_with_the_callers_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory, fake = _memory(monkeypatch)
    client = FakeClient()
    memory.close(client)
    assert client.unregistered == ["t1-in", "t1-out", "t2-in", "t2-out"]
    assert fake.destroyed == ["h-t1-in", "h-t1-out", "h-t2-in", "h-t2-out"]
    memory.close(client)  # idempotent: nothing left to release
    assert len(client.unregistered) == 4


def test_close_frees_every_buffer_even_when_the_server_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory, fake = _memory(monkeypatch)
    client: Any = FakeClient(failing={"t1-in"})
    with pytest.raises(RuntimeError, match="refused t1-in"):
        memory.close(client)
    assert client.unregistered == ["t1-out", "t2-in", "t2-out"]
    assert len(fake.destroyed) == 4
