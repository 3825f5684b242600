"""Derive the CPU variant of a production-shaped Triton model repository, mechanically.

Why: the canonical ``triton_model_repository/`` is written for NGC Triton on GPUs and serves
ONNX files with the native ``onnxruntime_onnx`` platform. The CPU Triton binary from the
nvidia-pytriton wheel (local runs, ``make test``) has only the python backend. Rather than keep a
second, hand-edited repository that would drift, this module rewrites a copy by fixed rules:

For every model directory ``<model>/`` with ``config.pbtxt``:

1. ONNX models (``platform: "onnxruntime_onnx"`` or ``backend: "onnxruntime"``):
   - config: ``platform`` is dropped and ``backend: "python"`` set. Kept unchanged: ``name``,
     ``version_policy``, ``max_batch_size``, ``input``, ``output``, ``dynamic_batching``,
     ``parameters``, ``model_warmup``, ``metric_tags``, ``response_cache``,
     ``model_transaction_policy``, ``model_metrics``. Dropped, because they configure the GPU
     or the onnxruntime backend itself and mean nothing to the python backend: ``runtime``,
     ``optimization`` (e.g. TensorRT / CUDA execution accelerators), ``default_model_filename``
     (its value moves to the parameter ``onnx_model_filename``), ``cc_model_filenames``.
     ``instance_group`` is replaced (rule 3). Refused with an error, because the python model
     below cannot honour them: ``sequence_batching``, ``ensemble_scheduling``, ``batch_input``,
     ``batch_output``, ``model_operations`` (custom-op libraries), ``model_repository_agents``,
     a decoupled transaction policy, and configs without explicit ``input``/``output``.
   - every version directory keeps its files (``model.onnx`` ...) and gets ``model.py``, a
     verbatim copy of ``scripts/triton/onnx_python_model.py``: it opens the sibling ONNX file
     with onnxruntime (``intra_op_thread_count`` parameter, default 1) and maps inputs and
     outputs by their config names, casting outputs to the configured data types.
2. Python models (``backend: "python"``): files copied unchanged; config only gets rule 3.
3. Every non-ensemble model gets ``instance_group [{ kind: KIND_CPU }]`` (one CPU instance),
   replacing any GPU groups, counts and device lists.
4. Ensembles (``platform: "ensemble"``) are copied unchanged (Triton rejects instance groups on
   ensembles, and their steps refer to models by name, which does not change).
5. Any other platform/backend (TensorRT, TorchScript, ...) is an error: there is no CPU
   equivalent in this binary, and silently skipping a model would hide it.

Rewritten configs start with a ``# GENERATED`` comment naming the source. ``dst`` is synced,
not rebuilt: unchanged files are left alone (so a server in poll mode does not reload them),
each new or changed version directory is staged next to ``dst`` and renamed in whole (Triton
must never see a python version directory without its ``model.py``), and models or versions
gone from ``src`` are removed. ``dst`` must be empty, missing, or an earlier output (marker file
``.secureai-cpu-derived``), so a wrong path cannot wipe unrelated files.

Run with the Triton venv's Python (it needs ``tritonclient``'s ``model_config_pb2``):
``.triton-venv/bin/python scripts/triton/cpu_repository.py SRC DST``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_TEMPLATE = Path(__file__).with_name("onnx_python_model.py")
MARKER = ".secureai-cpu-derived"
CONFIG = "config.pbtxt"

ONNX_PLATFORMS = {"onnxruntime_onnx"}
ONNX_BACKENDS = {"onnxruntime"}
# Fields copied from an ONNX model's config into its python-backend config.
KEPT_FIELDS = (
    "name",
    "version_policy",
    "max_batch_size",
    "input",
    "output",
    "dynamic_batching",
    "parameters",
    "model_warmup",
    "metric_tags",
    "response_cache",
    "model_transaction_policy",
    "model_metrics",
)
# GPU / onnxruntime-backend settings with no meaning for the python backend.
DROPPED_FIELDS = (
    "platform",
    "backend",
    "runtime",
    "optimization",
    "default_model_filename",
    "cc_model_filenames",
    "instance_group",
)
# Settings the generated python model cannot honour: refuse rather than change behaviour.
REFUSED_FIELDS = (
    "sequence_batching",
    "ensemble_scheduling",
    "batch_input",
    "batch_output",
    "model_operations",
    "model_repository_agents",
)


class DerivationError(ValueError):
    """The canonical repository holds something this mechanical derivation cannot map."""


def parse_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt (protobuf text) into a ModelConfig message."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise DerivationError(f"{path}: {exc}") from exc


def _field_names(config: mc.ModelConfig) -> set[str]:
    return {field.name for field, _ in config.ListFields()}


def _is_onnx(config: mc.ModelConfig) -> bool:
    return config.platform in ONNX_PLATFORMS or config.backend in ONNX_BACKENDS


def _is_ensemble(config: mc.ModelConfig) -> bool:
    return config.platform == "ensemble"


def _is_python(config: mc.ModelConfig) -> bool:
    return config.backend == "python" and not config.platform


def _cpu_instance_group(config: mc.ModelConfig) -> None:
    del config.instance_group[:]
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU)


def derive_onnx_config(config: mc.ModelConfig, where: str) -> mc.ModelConfig:
    """Return the python-backend config for an onnxruntime_onnx config (rules 1 and 3)."""
    present = _field_names(config)
    refused = sorted(present & set(REFUSED_FIELDS))
    if refused:
        raise DerivationError(f"{where}: {', '.join(refused)} cannot be derived for CPU")
    if config.model_transaction_policy.decoupled:
        raise DerivationError(f"{where}: decoupled ONNX models cannot be derived for CPU")
    if not config.input or not config.output:
        raise DerivationError(
            f"{where}: the CPU derivation maps tensors by the names in config.pbtxt, so the "
            "config must list its inputs and outputs (no auto-complete)"
        )
    unknown = sorted(present - set(KEPT_FIELDS) - set(DROPPED_FIELDS))
    if unknown:  # a field added to ModelConfig after this script was written
        raise DerivationError(f"{where}: no derivation rule for {', '.join(unknown)}")

    derived = mc.ModelConfig()
    derived.CopyFrom(config)
    for name in DROPPED_FIELDS:  # everything else present is in KEPT_FIELDS (checked above)
        derived.ClearField(name)
    derived.backend = "python"
    if config.default_model_filename and config.default_model_filename != "model.onnx":
        derived.parameters["onnx_model_filename"].string_value = config.default_model_filename
    _cpu_instance_group(derived)
    return derived


def _render(config: mc.ModelConfig, source: Path, changes: str) -> str:
    header = (
        f"# GENERATED by scripts/triton/cpu_repository.py from {source}: do not edit.\n"
        f"# CPU variant: {changes}\n"
    )
    return header + text_format.MessageToString(config)


def _is_version_dir(path: Path) -> bool:
    return path.is_dir() and path.name.isdigit()


def _skip_hidden_dirs(directory: str, names: list[str]) -> set[str]:
    """copytree filter: leave out dot-directories (a publisher's ``.staging-N`` in progress)."""
    return {n for n in names if n.startswith(".") and os.path.isdir(os.path.join(directory, n))}


def _without_config(src_model: Path) -> Callable[[str, list[str]], set[str]]:
    """copytree filter: hidden dirs, and the model's own config (it is rewritten instead)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == src_model and CONFIG in names
        return _skip_hidden_dirs(directory, names) | ({CONFIG} if top else set())

    return ignore


def _stage_model(src_model: Path, staged: Path) -> None:
    """Write the complete CPU variant of one model directory into ``staged``."""
    config_path = src_model / CONFIG
    if not config_path.is_file():
        raise DerivationError(f"{src_model}: no {CONFIG} (the harness needs explicit configs)")
    config = parse_config(config_path)
    where = str(config_path)

    if _is_ensemble(config):
        shutil.copytree(src_model, staged, ignore=_skip_hidden_dirs)
        return
    if _is_onnx(config):
        derived = derive_onnx_config(config, where)
        text = _render(derived, config_path, "onnxruntime_onnx -> python backend + KIND_CPU")
        model_file = config.default_model_filename or "model.onnx"
        shutil.copytree(src_model, staged, ignore=_without_config(src_model))
        for version in sorted(p for p in staged.iterdir() if _is_version_dir(p)):
            if not (version / model_file).exists():
                raise DerivationError(f"{src_model / version.name}: no {model_file}")
            if (version / "model.py").exists():
                raise DerivationError(f"{src_model / version.name}: model.py already exists")
            shutil.copy2(MODEL_TEMPLATE, version / "model.py")
    elif _is_python(config):
        _cpu_instance_group(config)
        text = _render(config, config_path, "instance_group -> KIND_CPU")
        shutil.copytree(src_model, staged, ignore=_without_config(src_model))
    else:
        kind = config.platform or config.backend or "(none)"
        raise DerivationError(f"{where}: no CPU derivation for platform/backend {kind}")
    (staged / CONFIG).write_text(text)


def _same_tree(a: Path, b: Path) -> bool:
    """Byte-for-byte comparison of two directory trees (ignoring __pycache__ and VCS dirs)."""
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def _same(a: Path, b: Path) -> bool:
    if a.is_dir() and b.is_dir():
        return _same_tree(a, b)
    if a.is_file() and b.is_file():
        return filecmp.cmp(a, b, shallow=False)
    return False


def _remove(path: Path, trash: Path) -> None:
    """Move ``path`` out of the served tree first (atomic), then delete it."""
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{path.parent.name}.{path.name}.{len(list(trash.iterdir()))}"
    path.rename(target)
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


def _merge_model(staged: Path, live: Path, trash: Path) -> None:
    """Bring ``live`` to the content of ``staged``, a version directory at a time."""
    if not live.exists():
        staged.rename(live)  # new model: appears complete, in one rename
        return
    staged_names = {p.name for p in staged.iterdir()}
    for old in sorted(live.iterdir()):
        if old.name not in staged_names:
            _remove(old, trash)
    # Version directories first, config last, so a poll-mode reload sees a consistent model.
    entries = sorted(staged.iterdir(), key=lambda p: (p.name == CONFIG, p.name))
    for new in entries:
        current = live / new.name
        if current.exists() or current.is_symlink():
            if _same(new, current):
                continue
            if new.is_dir() or current.is_dir():
                _remove(current, trash)
        os.replace(new, current)  # files: atomic replace; dirs: rename into the freed name


def derive_cpu_repository(src: Path, dst: Path) -> Path:
    """Sync ``dst`` to the CPU variant of the canonical repository ``src``; return ``dst``.

    See the module docstring for the exact rules. Safe to call again on the same ``dst``
    (e.g. while a poll-mode server is serving it): only changed parts are replaced.
    """
    src = Path(src).resolve()
    dst = Path(dst).resolve()
    if not src.is_dir():
        raise DerivationError(f"{src}: not a directory")
    if dst == src or src in dst.parents or dst in src.parents:
        raise DerivationError(f"{dst}: must not overlap the canonical repository {src}")
    if dst.exists() and any(dst.iterdir()) and not (dst / MARKER).exists():
        raise DerivationError(f"{dst}: not empty and not a derived repository ({MARKER} missing)")

    staging = dst.parent / f".{dst.name}.staging"
    trash = dst.parent / f".{dst.name}.trash"
    for leftover in (staging, trash):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        models = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
        for model in models:  # stage everything first: an error leaves dst untouched
            _stage_model(model, staging / model.name)
        dst.mkdir(parents=True, exist_ok=True)
        marker = f"CPU variant of {src}; see scripts/triton/cpu_repository.py\n"
        if not (dst / MARKER).is_file() or (dst / MARKER).read_text() != marker:
            (dst / MARKER).write_text(marker)
        wanted = {m.name for m in models}
        for old in sorted(p for p in dst.iterdir() if p.is_dir()):
            if old.name not in wanted:
                _remove(old, trash)
        for model in models:
            _merge_model(staging / model.name, dst / model.name, trash)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    """CLI: derive (or re-sync) the CPU variant and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="canonical model repository")
    parser.add_argument("dst", type=Path, help="CPU variant to create or sync")
    args = parser.parse_args(argv)
    try:
        print(derive_cpu_repository(args.src, args.dst))
    except DerivationError as exc:
        print(f"cpu_repository: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
