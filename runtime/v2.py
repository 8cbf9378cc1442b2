"""KServe V2 Open Inference Protocol: JSON request decoding and response encoding.

Decoding checks the request against the model's declared inputs (names, datatypes, ranks, fixed
dims, element counts) so a client mistake becomes a 400 with a message naming the tensor, never
an error from inside the backend.
"""

from __future__ import annotations

import math
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


def _expect(cond: object, message: str) -> None:
    if not cond:
        raise BadRequest(message)


def decode_request(
    body: Any, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...]
) -> InferRequest:
    _expect(isinstance(body, dict), "request body must be a JSON object")
    raw_inputs = body.get("inputs")
    _expect(isinstance(raw_inputs, list) and raw_inputs, "'inputs' must be a non-empty list")
    declared = {t.name: t for t in inputs}
    feeds: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(raw_inputs):
        _expect(isinstance(tensor, dict), f"inputs[{i}] must be an object")
        name = tensor.get("name")
        _expect(isinstance(name, str), f"inputs[{i}].name must be a string")
        _expect(name in declared, f"unknown input {name!r}; the model takes {sorted(declared)}")
        _expect(name not in feeds, f"input {name!r} given twice")
        feeds[name] = _decode_tensor(tensor, declared[name])
    missing = sorted(set(declared) - set(feeds))
    _expect(not missing, f"missing inputs {missing}")
    requested: list[str] = []
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
    request_id = body.get("id")
    _expect(request_id is None or isinstance(request_id, str), "'id' must be a string")
    return InferRequest(request_id, feeds, tuple(requested))


def _decode_tensor(tensor: dict[str, Any], spec: TensorInfo) -> np.ndarray:
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
    shape = tensor.get("shape")
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
    data = tensor.get("data")
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
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input {name!r}: data is not valid {spec.datatype}: {e}") from e
    _expect(
        array.size == count,
        f"input {name!r}: {array.size} values given, shape {shape} needs {count}",
    )
    return array.reshape(shape)


def encode_response(
    model: str, version: str, request: InferRequest, results: dict[str, np.ndarray]
) -> dict[str, Any]:
    names = request.requested_outputs or tuple(results)
    outputs = []
    for name in names:
        value = results[name]
        outputs.append(
            {
                "name": name,
                "datatype": NUMPY_TO_V2.get(value.dtype, str(value.dtype)),
                "shape": list(value.shape),
                "data": value.ravel().tolist(),
            }
        )
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    return response
