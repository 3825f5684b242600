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

ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, {platform.system()} {platform.release()}"
    )


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return out or "uncommitted"


def update_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = "\n".join([begin, *lines, end])
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
