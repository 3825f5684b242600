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
        f"{cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, {platform.system()} {platform.release()}"
    )


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return out or "uncommitted"
