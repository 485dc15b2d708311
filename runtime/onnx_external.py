"""Whether an ONNX file keeps a tensor's data in another file ("external data"), read from its
bytes without the onnx package (no dependency of the runtime): :func:`external_tensor`, which
``ModelFiles.graph_bytes`` refuses such graphs with."""

from __future__ import annotations

_TENSOR_FIELDS = {
    # message: {field number: the message that field holds}, from onnx.proto, for every path from
    # a model to a tensor (tests/test_loading.py checks the numbers against the onnx package's).
    "model": {7: "graph", 20: "training", 25: "function"},  # graph, training_info, functions
    "training": {1: "graph", 2: "graph"},  # initialization, algorithm
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # node, initializer, sparse_initializer
    "function": {7: "node", 11: "attribute"},  # node, attribute_proto
    "node": {5: "attribute"},  # attribute
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # values, indices
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1


def external_tensor(data: bytes) -> str | None:
    """The name of the first tensor of an ONNX model (``data``, its file's bytes) that keeps its
    data in another file ("external data"), or None. onnxruntime reads such data for a graph
    given as bytes from the current folder (before 1.21 even with a folder named in the
    session's options), where a model folder could point a tensor at any file: the decoded
    pixels would show it, and depend on a file the model's hash does not cover.

    A walk of the protobuf wire format along the fields that lead to tensors (the onnx package
    is no dependency of the runtime); the bytes of weights are skipped, not read. It reads as
    protobuf does (a tag's bits above 32 and an enum's are dropped there): what it cannot walk
    is refused, not passed on, since onnxruntime's protobuf may read more (a group, which ONNX
    never writes, skipped there, hid a tensor behind it).

    Raises:
        ValueError: ``data`` is no protobuf this walk reads to its end (the reason).
    """
    view = memoryview(data)
    pending = [("model", 0, len(view))]
    while pending:
        kind, at, end = pending.pop()
        fields = _TENSOR_FIELDS.get(kind, {})
        name, external = b"", False
        while at < end:
            key, at = _varint(view, at, end)
            number, wire = key >> 3, key & 7
            if key > 0xFFFFFFFF or number == 0:
                raise ValueError(f"a field tag of {key:#x}, which protobuf reads otherwise or refuses")
            if wire == 0:
                value, at = _varint(view, at, end)
                external |= kind == "tensor" and number == _DATA_LOCATION and value & 0xFFFFFFFF == _EXTERNAL
            elif wire == 2:
                length, at = _varint(view, at, end)
                if length > end - at:
                    raise ValueError("a field longer than its message")
                if kind == "tensor" and number == _TENSOR_NAME:
                    name = bytes(view[at:at + length])
                external |= kind == "tensor" and number == _EXTERNAL_DATA
                if number in fields:
                    pending.append((fields[number], at, at + length))
                at += length
            elif wire in (1, 5):
                at += 8 if wire == 1 else 4
            else:
                raise ValueError(f"field {number} is a group (wire type {wire}), which ONNX does not use")
        if at > end:
            raise ValueError("a fixed-size field runs past the end of its message")
        if external:
            return repr(name.decode("utf-8", "replace"))
    return None


def _varint(view: memoryview, at: int, end: int) -> tuple[int, int]:
    """A protobuf varint at ``at`` and the position after it.

    Raises:
        ValueError: it runs past ``end`` or past ten bytes.
    """
    value = 0
    for shift in range(0, 70, 7):
        if at >= end:
            break
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
    raise ValueError("a varint that does not end")
