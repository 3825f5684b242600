"""Just enough of the ONNX protobuf format to read our two served graphs, without ``onnx``.

Why not ``import onnx``: the torch fallback (:mod:`morpheus_ext.stages.inference.device`) runs on
lent GPU machines whose image has torch and ONNX Runtime but not the ``onnx`` package, and no
package index; its wheel (plus ml_dtypes) would not fit beside the Triton server in what
scripts/gpu/pack_for_device.sh may carry. The subset read here is what ``modelling/export.py``
writes: nodes (op, inputs, outputs, attributes), initializers and Constant tensors stored as
``raw_data`` or typed fields, graph inputs/outputs and ``metadata_props``. Anything else (external
data, sparse tensors, subgraphs) raises :class:`OnnxFormatError` rather than being misread.

Protobuf wire format: each field is a varint key ``(number << 3) | wire_type``; wire types 0
(varint), 1 (8 bytes), 2 (length-delimited: strings, bytes, messages, packed repeats), 5 (4 bytes).

>>> from morpheus_ext.model_repository import DEFAULT_REPOSITORY
>>> model = read_model(DEFAULT_REPOSITORY / "dfp_encoder" / "1" / "model.onnx")
>>> [n.op_type for n in model.nodes], model.inputs, model.outputs
(['Sub', 'Div', 'IsNaN', 'Where', 'Clip'], ['EVENT_TENSOR'], ['NORMALIZED'])
>>> model.initializers["center"].shape, model.initializers["center"].dtype.name
((256,), 'float32')
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# TensorProto.DataType -> NumPy dtype (the types an exported MLP and its head use).
DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.float32),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    11: np.dtype(np.float64),
}


class OnnxFormatError(ValueError):
    """The file uses a part of ONNX this reader does not handle (it never guesses)."""


@dataclass(frozen=True)
class Node:
    """One graph node: ``op_type`` applied to ``inputs`` (names; "" = omitted optional)."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    """A graph in execution order (ONNX requires nodes topologically sorted)."""

    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]
    metadata: dict[str, str]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _signed(value: int) -> int:
    """int64 fields are two's complement in 10-byte varints (``axes=[-1]``)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): int for varint/fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise OnnxFormatError(f"protobuf wire type {wire} is not supported")
        yield number, wire, value


def _ints(wire: int, value: Any) -> list[int]:
    """A repeated int64 field: one varint, or a packed run of them."""
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _tensor(buf: bytes) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    dtype = 0
    name = ""
    raw: bytes | None = None
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = value
        elif number == 4:  # float_data, packed or one fixed32
            floats += list(struct.unpack(f"<{len(value) // 4}f", value))
        elif number in (5, 7):  # int32_data, int64_data
            ints += _ints(wire, value)
        elif number == 8:
            name = value.decode()
        elif number == 9:
            raw = bytes(value)
        elif number == 14:
            raise OnnxFormatError(f"tensor {name!r}: external data is not supported")
    if dtype not in DTYPES:
        raise OnnxFormatError(f"tensor {name!r}: data type {dtype} is not supported")
    np_dtype = DTYPES[dtype]
    if raw is not None:
        array = np.frombuffer(raw, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
    elif floats:
        array = np.asarray(floats, dtype=np_dtype)
    else:
        array = np.asarray(ints, dtype=np_dtype)
    return name, array.reshape(dims)


def _attribute(buf: bytes) -> tuple[str, Any]:
    name, value_of = "", None
    ints: list[int] = []
    floats: list[float] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            name = value.decode()
        elif number == 2:
            value_of = struct.unpack("<f", value)[0]
        elif number == 3:
            value_of = _signed(value)
        elif number == 4:
            value_of = bytes(value)
        elif number == 5:
            value_of = _tensor(value)[1]
        elif number == 7:
            floats += list(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 8:
            ints += _ints(wire, value)
        elif number in (6, 10, 11, 22, 23):
            raise OnnxFormatError(f"attribute {name!r}: graphs/sparse tensors are not supported")
    if value_of is None:
        value_of = ints if ints else floats
    return name, value_of


def _node(buf: bytes) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = ""
    attributes: dict[str, Any] = {}
    for number, _wire, value in _fields(buf):
        if number == 1:
            inputs.append(value.decode())
        elif number == 2:
            outputs.append(value.decode())
        elif number == 4:
            op_type = value.decode()
        elif number == 5:
            key, attr = _attribute(value)
            attributes[key] = attr
        elif number == 7 and value:
            raise OnnxFormatError(f"{op_type}: operator domain {value.decode()!r} not supported")
    return Node(op_type, inputs, outputs, attributes)


def _value_name(buf: bytes) -> str:
    return next((v.decode() for n, _w, v in _fields(buf) if n == 1), "")


def parse_model(data: bytes) -> Model:
    """A :class:`Model` from the bytes of an ONNX file."""
    graph: bytes | None = None
    metadata: dict[str, str] = {}
    for number, _wire, value in _fields(data):
        if number == 7:
            graph = value
        elif number == 14:
            entry = {n: v.decode() for n, _w, v in _fields(value)}
            metadata[entry.get(1, "")] = entry.get(2, "")
    if graph is None:
        raise OnnxFormatError("no graph in the model")
    nodes: list[Node] = []
    initializers: dict[str, np.ndarray] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    for number, _wire, value in _fields(graph):
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            name, array = _tensor(value)
            initializers[name] = array
        elif number == 11:
            inputs.append(_value_name(value))
        elif number == 12:
            outputs.append(_value_name(value))
        elif number == 15:
            raise OnnxFormatError("sparse initializers are not supported")
    inputs = [name for name in inputs if name not in initializers]
    return Model(nodes, initializers, inputs, outputs, metadata)


def read_model(path: Path | str) -> Model:
    """:func:`parse_model` of a file."""
    return parse_model(Path(path).read_bytes())
