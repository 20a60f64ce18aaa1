"""Static checks of an ONNX graph before it is loaded: no batch-statistics BatchNormalization.

Why: ONNX Runtime runs ``BatchNormalization`` with ``training_mode=1`` (what an export in training
mode writes) using the statistics of the *batch*, so one branch's labels would depend on the
other branches in its batch and the certificate would be wrong. Such graphs are refused at load.

Why a small protobuf reader instead of the ``onnx`` package: the runtime depends on onnxruntime
only, and ORT exposes no graph. The reader walks just the messages on the path to the nodes
(model -> graph -> node -> attribute, into subgraphs and model-local functions) and skips every
other field by its length, so large initializers cost no parsing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from demasked_ros.engines.errors import EngineError

# Field numbers from onnx.proto (stable since IR version 3).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE = 1
_FUNCTION_NODE = 5
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_NAME, _ATTR_I, _ATTR_G, _ATTR_GRAPHS = 1, 3, 6, 11
_MAX_DEPTH = 32


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise EngineError("truncated or malformed ONNX protobuf (varint)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of each field of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise EngineError("truncated or malformed ONNX protobuf (length)")
            yield number, wire, data[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise EngineError(f"malformed ONNX protobuf (wire type {wire})")


def _nodes(graph: memoryview, node_field: int, depth: int) -> Iterator[tuple[str, str, dict[str, int]]]:
    """(domain, op_type, integer attributes) of every node, subgraphs included."""
    if depth > _MAX_DEPTH:
        raise EngineError("ONNX graph nests subgraphs too deeply")
    for number, wire, value in _fields(graph):
        if number != node_field or wire != 2:
            continue
        assert isinstance(value, memoryview)
        op_type = domain = ""
        ints: dict[str, int] = {}
        for field, kind, item in _fields(value):
            if field == _NODE_OP_TYPE and isinstance(item, memoryview):
                op_type = bytes(item).decode("utf-8", "replace")
            elif field == _NODE_DOMAIN and isinstance(item, memoryview):
                domain = bytes(item).decode("utf-8", "replace")
            elif field == _NODE_ATTRIBUTE and kind == 2 and isinstance(item, memoryview):
                name, integer, subgraphs = _attribute(item)
                if integer is not None:
                    ints[name] = integer
                for sub in subgraphs:
                    yield from _nodes(sub, _GRAPH_NODE, depth + 1)
        yield domain, op_type, ints


def _attribute(data: memoryview) -> tuple[str, int | None, list[memoryview]]:
    name, integer, subgraphs = "", None, []
    for field, kind, item in _fields(data):
        if field == _ATTR_NAME and isinstance(item, memoryview):
            name = bytes(item).decode("utf-8", "replace")
        elif field == _ATTR_I and kind == 0 and isinstance(item, int):
            integer = item - (1 << 64) if item >= 1 << 63 else item
        elif field in (_ATTR_G, _ATTR_GRAPHS) and isinstance(item, memoryview):
            subgraphs.append(item)
    return name, integer, subgraphs


def onnx_ops(model: bytes | memoryview) -> Iterator[tuple[str, str, dict[str, int]]]:
    """(domain, op_type, integer attributes) of every node of a serialised ONNX model."""
    data = memoryview(model)
    for number, wire, value in _fields(data):
        if wire != 2 or not isinstance(value, memoryview):
            continue
        if number == _MODEL_GRAPH:
            yield from _nodes(value, _GRAPH_NODE, 0)
        elif number == _MODEL_FUNCTIONS:
            yield from _nodes(value, _FUNCTION_NODE, 0)


def batch_statistics_ops(model: bytes | memoryview) -> list[str]:
    """Descriptions of the nodes that normalise with batch statistics (BatchNormalization training)."""
    found = []
    for domain, op_type, ints in onnx_ops(model):
        if op_type == "BatchNormalization" and domain in ("", "ai.onnx") and ints.get("training_mode", 0):
            found.append("BatchNormalization(training_mode=1)")
    return found


def check_inference_graph(path: str | Path) -> None:
    """Refuse an ONNX file whose graph normalises with batch statistics.

    Raises:
        EngineError: naming the file and the offending nodes, or when the file is not ONNX.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EngineError(f"cannot read ONNX model {path}: {error}") from error
    try:
        found = batch_statistics_ops(data)
    except EngineError as error:
        raise EngineError(f"cannot load ONNX model {path}: not a valid ONNX file ({error})") from error
    if found:
        raise EngineError(
            f"{path} normalises with batch statistics ({len(found)} x {found[0]}): it was exported in "
            "training mode, so one branch's labels would depend on the other branches in its batch. "
            "Export it in eval mode (model.eval() before torch.onnx.export)")
