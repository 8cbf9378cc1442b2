"""KServe V2 Open Inference Protocol: request decoding and response encoding.

Tensors travel as JSON `data` lists or, with the binary tensor data extension, as raw
little-endian bytes after the JSON header (`Inference-Header-Content-Length` gives its size;
each binary input says its `binary_data_size`, in order). Outputs come back binary when the
output asks (`parameters.binary_data`) or the request does (`parameters.binary_data_output`),
which is what tritonclient sends by default.

Decoding checks the request against the model's declared inputs (names, datatypes, ranks, fixed
dims, element counts, byte sizes) so a client mistake becomes a 400 with a message naming the
tensor, never an error from inside the backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.backends.base import NUMPY_TO_V2, V2_TO_NUMPY, TensorInfo

MAX_ELEMENTS = 64 * 1024 * 1024  # per tensor; bounds memory a single request can claim


# numpy kinds a JSON `data` list may parse to, per kind of the declared datatype
_JSON_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}
_KIND_NAMES = {"f": "number", "i": "integer", "u": "integer", "b": "boolean"}


class BadRequest(Exception):
    """The client's request is wrong: HTTP 400 with this message."""


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    feeds: dict[str, np.ndarray]
    requested_outputs: tuple[str, ...]  # empty: all outputs
    binary_outputs: frozenset[str] = frozenset()  # outputs to return as raw bytes
    binary_default: bool = False  # request-level binary_data_output, for outputs not listed


@dataclass(frozen=True)
class EncodedResponse:
    header: dict[str, Any]
    binary: tuple[bytes, ...]  # raw output bytes in header order; empty for a pure JSON reply


def _expect(cond: object, message: str) -> None:
    if not cond:
        raise BadRequest(message)


def split_body(
    body: bytes | bytearray, header_length: str | None
) -> tuple[bytes | bytearray, memoryview]:
    """Separate the JSON header from the binary tensor data that may follow it."""
    if header_length is None:
        return body, memoryview(b"")
    _expect(
        # isascii: '²' and other digits of other scripts pass isdigit() but not int()
        header_length.isascii() and header_length.isdigit() and int(header_length) <= len(body),
        f"Inference-Header-Content-Length {header_length!r} must be an integer between 0 and"
        f" the body size {len(body)}",
    )
    n = int(header_length)
    return body[:n], memoryview(body)[n:]


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    _expect(isinstance(params, dict), f"{where}.parameters must be an object")
    return params


def decode_request(
    body: Any,
    inputs: tuple[TensorInfo, ...],
    outputs: tuple[TensorInfo, ...],
    binary: memoryview | bytes = b"",
    largest: Mapping[str, tuple[int, ...] | None] | None = None,
) -> InferRequest:
    """`largest`: each input's largest shape the deployment allows (`spec.runtime.shapes` max);
    a request over it is refused, as the backend could not take it."""
    _expect(isinstance(body, dict), "request body must be a JSON object")
    request_params = _parameters(body, "request")
    raw_inputs = body.get("inputs")
    _expect(isinstance(raw_inputs, list) and raw_inputs, "'inputs' must be a non-empty list")
    feeds = _decode_inputs(raw_inputs, inputs, memoryview(binary), largest or {})
    binary_default = request_params.get("binary_data_output", False)
    requested, binary_outputs = _decode_outputs(body, outputs, binary_default)
    request_id = body.get("id")
    _expect(request_id is None or isinstance(request_id, str), "'id' must be a string")
    return InferRequest(request_id, feeds, requested, binary_outputs, bool(binary_default))


def _decode_inputs(
    raw_inputs: list[Any],
    inputs: tuple[TensorInfo, ...],
    binary_view: memoryview,
    largest: Mapping[str, tuple[int, ...] | None],
) -> dict[str, np.ndarray]:
    """Every declared input, once each, from JSON data or its slice of the binary data."""
    declared = {t.name: t for t in inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(raw_inputs):
        _expect(isinstance(tensor, dict), f"inputs[{i}] must be an object")
        name = tensor.get("name")
        _expect(isinstance(name, str), f"inputs[{i}].name must be a string")
        _expect(name in declared, f"unknown input {name!r}; the model takes {sorted(declared)}")
        _expect(name not in feeds, f"input {name!r} given twice")
        size = _parameters(tensor, f"inputs[{i}]").get("binary_data_size")
        check_largest(tensor.get("shape"), name, largest.get(name))
        if size is None:
            feeds[name] = _decode_tensor(tensor, declared[name])
            continue
        _expect(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            f"input {name!r}: binary_data_size must be a non-negative integer",
        )
        _expect(
            offset + size <= len(binary_view),
            f"input {name!r}: binary_data_size {size} runs past the {len(binary_view)} bytes of"
            " binary data (is Inference-Header-Content-Length set?)",
        )
        feeds[name] = _decode_tensor(tensor, declared[name], binary_view[offset : offset + size])
        offset += size
    _expect(
        offset == len(binary_view),
        f"{len(binary_view) - offset} bytes of binary data follow the tensors they belong to",
    )
    missing = sorted(set(declared) - set(feeds))
    _expect(not missing, f"missing inputs {missing}")
    return feeds


def _decode_outputs(
    body: dict[str, Any], outputs: tuple[TensorInfo, ...], binary_default: Any
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for (empty: all), and which of them come back as binary."""
    requested: list[str] = []
    binary_outputs: set[str] = set()
    raw_outputs = body.get("outputs", [])
    _expect(isinstance(raw_outputs, list), "'outputs' must be a list")
    known_outputs = {t.name for t in outputs}
    for j, out in enumerate(raw_outputs):
        _expect(
            isinstance(out, dict) and isinstance(out.get("name"), str),
            f"outputs[{j}].name must be a string",
        )
        _expect(
            out["name"] in known_outputs,
            f"unknown output {out['name']!r}; the model gives {sorted(known_outputs)}",
        )
        requested.append(out["name"])
        out_params = _parameters(out, f"outputs[{j}]")
        _expect(
            "classification" not in out_params and "class_count" not in out_params,
            f"output {out['name']!r}: the classification extension is not supported",
        )
        if out_params.get("binary_data", binary_default):
            binary_outputs.add(out["name"])
    return tuple(requested), frozenset(binary_outputs)


def _decode_tensor(
    tensor: dict[str, Any], spec: TensorInfo, raw_bytes: memoryview | None = None
) -> np.ndarray:
    name = spec.name
    datatype = tensor.get("datatype")
    _expect(
        datatype == spec.datatype,
        f"input {name!r}: datatype {datatype!r} does not match the model's {spec.datatype}",
    )
    dtype = V2_TO_NUMPY.get(spec.datatype)
    _expect(
        dtype is not None, f"input {name!r}: datatype {spec.datatype} is not supported over JSON"
    )
    assert dtype is not None
    shape = checked_shape(tensor.get("shape"), spec)
    count = math.prod(shape)
    if raw_bytes is not None:
        _expect("data" not in tensor, f"input {name!r}: give either 'data' or binary_data_size")
        want = count * dtype.itemsize
        _expect(
            len(raw_bytes) == want,
            f"input {name!r}: binary_data_size is {len(raw_bytes)} bytes, shape {shape} of"
            f" {spec.datatype} needs {want}",
        )
        # Little-endian per the protocol; frombuffer shares the request's bytes without a copy.
        return np.frombuffer(raw_bytes, dtype=dtype.newbyteorder("<")).reshape(shape)
    array = _from_json(tensor.get("data"), spec, dtype)
    _expect(
        array.size == count,
        f"input {name!r}: {array.size} values given, shape {shape} needs {count}",
    )
    return array.reshape(shape)


def check_largest(shape: Any, name: str, largest: tuple[int, ...] | None) -> None:
    """Refuse a shape over the deployment's declared max (checked again in `checked_shape`
    for type and rank; here only what is comparable); gRPC's decoder checks with it too."""
    if largest is None or not isinstance(shape, list) or len(shape) != len(largest):
        return
    for axis, (got, most) in enumerate(zip(shape, largest, strict=True)):
        _expect(
            not isinstance(got, int) or got <= most,
            f"input {name!r}: dim {axis} is {got}, over the largest the model takes"
            f" {list(largest)} (spec.runtime.shapes max)",
        )


def checked_shape(shape: Any, spec: TensorInfo) -> list[int]:
    """A tensor's shape, refused unless it fits the model's (rank, fixed dims) and its element
    count is within MAX_ELEMENTS; gRPC's decoder checks with it too."""
    name = spec.name
    _expect(
        isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape),
        f"input {name!r}: shape must be a list of non-negative integers",
    )
    assert isinstance(shape, list)
    _expect(
        len(shape) == len(spec.shape),
        f"input {name!r}: rank {len(shape)} does not match the model's {list(spec.shape)}",
    )
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        _expect(
            want < 0 or got == want,
            f"input {name!r}: dim {axis} is {got}, the model needs {want} ({list(spec.shape)})",
        )
    count = math.prod(shape)
    _expect(
        count <= MAX_ELEMENTS,
        f"input {name!r}: {count} elements exceed the limit of {MAX_ELEMENTS}",
    )
    return shape


def _from_json(data: Any, spec: TensorInfo, dtype: np.dtype) -> np.ndarray:
    """A JSON `data` list as a flat-or-nested array of `dtype`, values of the right kind only."""
    name = spec.name
    _expect(isinstance(data, list), f"input {name!r}: 'data' must be a list")
    try:
        raw = np.asarray(data)
        # Only JSON values of the tensor's kind: a cast would turn null into NaN, "1.5" into
        # 1.5 and 2.7 into an INT64 2, running the model on something the client never sent.
        _expect(
            raw.size == 0 or raw.dtype.kind in _JSON_KINDS.get(dtype.kind, ""),
            f"input {name!r}: data is not valid {spec.datatype}: every value must be a JSON"
            f" {_KIND_NAMES.get(dtype.kind, 'value of that type')}",
        )
        array = raw.astype(dtype)
        if dtype.kind == "f" and raw.dtype.kind == "f":
            _expect(
                bool(np.isfinite(array).all()) or not bool(np.isfinite(raw).all()),
                f"input {name!r}: a value is out of range for {spec.datatype}",
            )
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input {name!r}: data is not valid {spec.datatype}: {e}") from e
    return array


def encode_response(
    model: str, version: str, request: InferRequest, results: dict[str, np.ndarray]
) -> EncodedResponse:
    names = request.requested_outputs or tuple(results)
    outputs = []
    chunks: list[bytes] = []
    for name in names:
        value = results[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": NUMPY_TO_V2.get(value.dtype, str(value.dtype)),
            "shape": list(value.shape),
        }
        as_binary = name in request.binary_outputs or (
            not request.requested_outputs and request.binary_default
        )
        if as_binary:
            raw = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = value.ravel().tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    return EncodedResponse(response, tuple(chunks))
