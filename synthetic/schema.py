"""The event schema: columns, dtypes and the anomaly kinds (the generator's contract)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArr = NDArray[np.float64]
IntArr = NDArray[np.int64]
ObjArr = NDArray[np.object_]
BoolArr = NDArray[np.bool_]
Rng = np.random.Generator


ANOMALY_KINDS: tuple[str, ...] = (
    "brute_force",
    "impossible_travel",
    "unusual_hour",
    "new_device",
    "exfiltration",
    "port_scan",
)
OPT_IN_KINDS: tuple[str, ...] = ("leakage", "campaign")
"""Kinds generated only when named in ``anomaly_kinds`` (not by default)."""
ALL_KINDS: tuple[str, ...] = ANOMALY_KINDS + OPT_IN_KINDS
INJECTED_FIELDS: dict[str, frozenset[str]] = {
    "brute_force": frozenset({"result", "auth_method", "country", "device", "user_agent"}),
    "impossible_travel": frozenset({"country"}),
    "unusual_hour": frozenset({"hour", "weekday"}),
    "new_device": frozenset({"device", "user_agent"}),
    "exfiltration": frozenset({"bytes_out", "bytes_in", "packets", "duration_ms", "tcp_flags"}),
    "port_scan": frozenset({"dst_port", "tcp_flags", "packets", "bytes_in", "bytes_out"}),
    "leakage": frozenset({"url", "user_agent", "message"}),
    "campaign": frozenset(
        {"result", "auth_method", "country", "device", "user_agent", "src_ip", "dst_app"}
    ),
}
"""Per kind, the fields the generator makes unusual: a reason naming one of them explains the
attack (how incidents are judged, docs/results.md)."""
AUTH_KINDS: frozenset[str] = frozenset(
    {"brute_force", "impossible_travel", "unusual_hour", "new_device", "leakage", "campaign"}
)
NETFLOW_KINDS: frozenset[str] = frozenset({"exfiltration", "port_scan"})

COMMON_COLUMNS: tuple[str, ...] = ("event_id", "timestamp", "event_type", "site")
AUTH_COLUMNS: tuple[str, ...] = (
    "user",
    "src_ip",
    "src_host",
    "dst_app",
    "dst_host",
    "auth_method",
    "result",
    "country",
    "device",
    "user_agent",
)
NETFLOW_COLUMNS: tuple[str, ...] = (
    "src_ip",
    "src_host",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol",
    "bytes_in",
    "bytes_out",
    "packets",
    "duration_ms",
    "tcp_flags",
)
LABEL_COLUMNS: tuple[str, ...] = ("label", "anomaly_kind")
INT_COLUMNS: tuple[str, ...] = ("src_port", "dst_port", "bytes_in", "bytes_out", "packets")
FLOAT_COLUMNS: tuple[str, ...] = ("duration_ms",)
COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(COMMON_COLUMNS + AUTH_COLUMNS + NETFLOW_COLUMNS + LABEL_COLUMNS)
)
STR_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS + ("label",)
)
