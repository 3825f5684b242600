"""Shared by the benchmark scripts: machine description and Markdown section updates.

Each benchmark owns one section of docs/benchmarks.md between its own HTML-comment markers, so
re-running one benchmark replaces its numbers and leaves the others alone.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import onnxruntime as ort

from morpheus_ext.markdown_sections import cpu_model, update_section

__all__ = ["ROOT", "git_commit", "machine_info", "update_section"]

ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} logical cores{gpu_model()}, "
        f"Python {platform.python_version()}, onnxruntime {ort.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


def gpu_model() -> str:
    """', GPU: <name> (driver <version>)' where nvidia-smi answers, else ''."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not out:
        return ""
    name, _, driver = out.splitlines()[0].partition(",")
    return f", GPU: {name.strip()} (driver {driver.strip()})"


def git_commit() -> str:
    """Short HEAD; $SECUREAI_COMMIT where the tree is a copy without .git (a GPU machine)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        out = ""
    return out or os.environ.get("SECUREAI_COMMIT", "uncommitted")
