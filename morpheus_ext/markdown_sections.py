"""Rewrite one marked section of a Markdown report, leaving the rest of the file alone.

Benchmarks (docs/benchmarks.md) and the federated comparison (docs/results.md) each own
sections between ``<!-- name:begin -->`` and ``<!-- name:end -->`` markers, so re-running one
measurement replaces its own numbers only. One home for this, used by both.
"""

from __future__ import annotations

from pathlib import Path


def update_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    section = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what a benchmark row was measured on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
