"""CUDA shared memory between the pipeline and a Triton server on the same GPU host.

Why: over gRPC/HTTP a 4096 x 256 FP32 batch (4 MiB) is serialised into the request and copied
by the server into device memory; with CUDA shared memory the pipeline copies the batch once
into a device buffer that Triton reads directly (CUDA IPC), and the outputs come back the same
way. This only works when client and server share a GPU host (the docker-compose/Helm layout
with the scorer beside Triton), so it is opt-in: ``inference.shared_memory: cuda``.

Each inference thread owns one input and one set of output regions sized for the model's
``max_batch_size`` (requests in flight never share a buffer), registered with the server on
first use and unregistered/freed on :meth:`CudaSharedMemory.close`.

``tritonclient.utils.cuda_shared_memory`` needs ``cuda-python`` (``tritonclient[cuda]``) and a
GPU; both are imported lazily so the CPU path never loads them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morpheus_ext.model_repository import ENSEMBLE_OUTPUTS, INPUT

_DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


class CudaSharedMemoryUnavailable(RuntimeError):
    """CUDA shared memory was asked for but cannot be used here (message is one line)."""


def _cudashm() -> Any:
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm
    except (ImportError, RuntimeError) as exc:
        raise CudaSharedMemoryUnavailable(
            "inference.shared_memory: cuda needs a CUDA GPU and tritonclient[cuda] "
            f"(cuda-python): {str(exc).strip().splitlines()[0]}"
        ) from exc
    return cudashm


@dataclass(frozen=True)
class TensorLayout:
    """One tensor's element type and per-row element count (dims after the batch dim)."""

    name: str
    datatype: str
    row_elements: int

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_DTYPES[self.datatype])

    def byte_size(self, rows: int) -> int:
        return rows * self.row_elements * self.dtype.itemsize


def layouts_from_metadata(metadata: dict[str, Any]) -> dict[str, TensorLayout]:
    """Input and ensemble output layouts from Triton model metadata (``-1`` = batch dim)."""
    out: dict[str, TensorLayout] = {}
    for tensor in [*metadata["inputs"], *metadata["outputs"]]:
        if tensor["name"] not in (INPUT, *ENSEMBLE_OUTPUTS):
            continue
        if tensor["datatype"] not in _DTYPES:
            raise CudaSharedMemoryUnavailable(
                f"output {tensor['name']} is {tensor['datatype']}: not mappable to shared memory"
            )
        dims = [int(d) for d in tensor["shape"]][1:]
        out[tensor["name"]] = TensorLayout(
            tensor["name"], tensor["datatype"], int(np.prod(dims)) if dims else 1
        )
    return out


@dataclass
class _Regions:
    """One thread's registered regions: name -> (triton region name, cudashm handle)."""

    handles: dict[str, tuple[str, Any]] = field(default_factory=dict)


class CudaSharedMemory:
    """Per-thread CUDA shared-memory regions for the ensemble's input and outputs."""

    def __init__(
        self, layouts: dict[str, TensorLayout], max_batch_size: int, device_id: int = 0
    ) -> None:
        self._cudashm = _cudashm()
        self.layouts = layouts
        self.max_batch_size = max_batch_size
        self.device_id = device_id
        self._local = threading.local()
        self._all: list[tuple[Any, _Regions]] = []  # (registering client, its regions)
        self._lock = threading.Lock()

    def _regions(self, client: Any) -> _Regions:
        regions: _Regions | None = getattr(self._local, "regions", None)
        if regions is not None:
            return regions
        regions = _Regions()
        prefix = f"secureai-{os.getpid()}-{threading.get_ident()}"
        for name, layout in self.layouts.items():
            region = f"{prefix}-{name}"
            size = layout.byte_size(self.max_batch_size)
            handle = self._cudashm.create_shared_memory_region(region, size, self.device_id)
            client.register_cuda_shared_memory(
                region, self._cudashm.get_raw_handle(handle), self.device_id, size
            )
            regions.handles[name] = (region, handle)
        self._local.regions = regions
        with self._lock:
            self._all.append((client, regions))
        return regions

    def infer(self, client: Any, lib: Any, model: str, x: np.ndarray, **kwargs: Any) -> Any:
        """One request whose input and outputs travel through this thread's regions."""
        regions = self._regions(client)
        region, handle = regions.handles[INPUT]
        self._cudashm.set_shared_memory_region(handle, [x])
        inp = lib.InferInput(INPUT, list(x.shape), "FP32")
        inp.set_shared_memory(region, x.nbytes)
        outputs = []
        for name in ENSEMBLE_OUTPUTS:
            requested = lib.InferRequestedOutput(name)
            requested.set_shared_memory(
                regions.handles[name][0], self.layouts[name].byte_size(len(x))
            )
            outputs.append(requested)
        result = client.infer(model, [inp], outputs=outputs, **kwargs)
        return {name: self._read(result, regions, name) for name in ENSEMBLE_OUTPUTS}

    def _read(self, result: Any, regions: _Regions, name: str) -> np.ndarray:
        meta = result.get_output(name)
        shape = [int(d) for d in (meta["shape"] if isinstance(meta, dict) else meta.shape)]
        contents = self._cudashm.get_contents_as_numpy(
            regions.handles[name][1], self.layouts[name].dtype, shape
        )
        return np.array(contents, copy=True)  # the region is reused by the next request

    def close(self, client: Any) -> None:
        """Unregister every region from the server and free the device buffers.

        ``client`` must belong to the calling thread: the regions were registered by pool
        threads that have exited by now, and the HTTP client (gevent) cannot be used from a
        thread other than its own (found on the first GPU run). Triton region names are
        server-wide, so any client may unregister them. Every buffer is freed even if the
        server is gone; the first unregister error is raised afterwards.
        """
        with self._lock:
            registered, self._all = self._all, []
        first_error: Exception | None = None
        for _, regions in registered:
            for region, handle in regions.handles.values():
                try:
                    client.unregister_cuda_shared_memory(region)
                except Exception as exc:
                    first_error = first_error or exc
                finally:
                    self._cudashm.destroy_shared_memory_region(handle)
        if first_error is not None:
            raise first_error
