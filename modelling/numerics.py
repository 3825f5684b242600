"""Training arithmetic that is deterministic on one machine and as alike as is cheap across CPUs.

torch picks its CPU kernels at run time: ATen's own vectorized loops by the widest ISA it finds
(AVX-512 here, AVX2 elsewhere), and MKL's BLAS by ISA *and vendor* (Intel and AMD get different
GEMM code). Each rounds differently; dozens of epochs of SGD turn those last bits into another
model (measured: docs/reproducibility.md). So training processes pin them before torch loads:

* ``ATEN_CPU_CAPABILITY=avx2``: ATen's loops as on any AVX2 CPU (every CI machine has AVX2);
* ``MKL_CBWR=AUTO``: MKL's Conditional Numerical Reproducibility on its own CPU's code path
  (fixed blocking, deterministic reductions: the same bytes run after run on one machine).
  ``COMPATIBLE`` (one code path for every vendor) was the pin until 2026-12-06; it did not
  make an Intel Sapphire Rapids and an AMD EPYC agree anyway (oneDNN differs too) and it made
  GEMMs 3.4-7x slower on Intel: cross-CPU is a quality contract now (``ACROSS_CPU_FAMILIES``);
* ``ONEDNN_MAX_CPU_ISA=AVX2``: the CNN model's convolutions.

Values a user already exported win (``setdefault``). ``modelling/__init__`` calls
:func:`pin_kernel_env`, i.e. before any of our modules imports torch (every training path
imports ``modelling`` first; :func:`ensure_pinned` catches the rest while MKL is unused);
:func:`kernel_report` says what is really in effect and goes into every run record.

This module must not import torch at module level (it runs before torch is loaded).

>>> pin_kernel_env()
>>> import os
>>> os.environ["MKL_CBWR"] in ("AUTO", os.environ["MKL_CBWR"])
True
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PINNED_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AUTO",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# mkl_service.h: mkl_cbwr_get(MKL_CBWR_BRANCH) answers one of these.
_MKL_CBWR_BRANCH = 1
_MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 8: "SSE4_2", 10: "AVX2"}
_MKL_OFF, _MKL_AUTO = 1, 2


def pin_kernel_env() -> None:
    """Export the pinned kernel choices unless set already; effective only before torch loads."""
    for key, value in PINNED_KERNELS.items():
        os.environ.setdefault(key, value)


def _mkl() -> Any | None:
    """torch's statically linked MKL service functions, if this torch build has them."""
    torch = sys.modules.get("torch")
    if torch is None or torch.__file__ is None:
        return None
    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        handle = ctypes.CDLL(str(lib))
        handle.mkl_serv_cbwr_get  # noqa: B018 - probe the symbol
    except (OSError, AttributeError):
        return None
    return handle


def kernel_report() -> dict[str, Any]:
    """What training runs on now: ATen capability, MKL's CNR branch, and whether both are
    pinned (ATen at AVX2, MKL's CNR on: then the same config gives the same bytes on this CPU
    family, and a model of the same quality on any x86-64 CPU with AVX2)."""
    import torch

    mkl = _mkl()
    branch = _MKL_BRANCHES.get(mkl.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH), "?") if mkl else None
    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "aten_cpu_capability": capability,
        "mkl_cbwr_branch": branch,
        "pinned": capability == "AVX2" and branch != "OFF",
        "torch_threads": torch.get_num_threads(),
    }


def ensure_pinned() -> dict[str, Any]:
    """Turn MKL's CNR on now if torch was loaded before :func:`pin_kernel_env` (works until
    MKL's first call); a branch the user chose (``MKL_CBWR=COMPATIBLE``...) is kept. Warns
    when training will not be deterministic."""
    mkl = _mkl()
    if mkl is not None and mkl.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH) == _MKL_OFF:
        mkl.mkl_serv_cbwr_set(_MKL_AUTO)
    report = kernel_report()
    if not report["pinned"]:
        log.warning(
            "training kernels are not pinned (%s): the result may not reproduce even on this "
            "machine; import secureai before torch or export %s",
            report,
            " ".join(f"{k}={v}" for k, v in PINNED_KERNELS.items()),
        )
    return report
