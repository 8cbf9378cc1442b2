"""Between Triton's gRPC messages and numpy: `ModelInferRequest` in, `ModelInferResponse` out.

Called by the servicer's `ModelInfer` on an inference worker thread, as the decode and encode
callbacks of the shared inference path. Inputs come as `raw_input_contents` (little-endian bytes,
one entry per input in order: what tritonclient sends) or as the typed `contents` fields
(`fp32_contents`, `int_contents`...); Triton's rule holds: a request uses one or the other for all
its inputs. Outputs always go back as `raw_output_contents`, as Triton's do, which every client
reads. Checks are the HTTP decoder's (names, datatypes, ranks, fixed dims, element counts, byte
sizes, `v2.checked_shape`), so a client's mistake is a `BadRequest` naming the tensor, whatever
the protocol, and never an error from inside the backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

from runtime.backends.base import NUMPY_TO_V2, V2_TO_NUMPY, TensorInfo
from runtime.serving.v2 import BadRequest, InferRequest, check_largest, checked_shape

# The typed field of InferTensorContents that carries each datatype (FP16: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
# Each contents field's own protobuf type: reading the values as it avoids numpy guessing a
# float64 for large 64-bit integers (which rounds them).
_FIELD_DTYPE = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}
# Parameters this server cannot honour: refused rather than silently ignored.
_UNSUPPORTED = {
    "shared_memory_region": "shared memory is not supported; send the tensor in the request",
    "classification": "the classification extension is not supported",
}


def _expect(cond: object, message: str) -> None:
    if not cond:
        raise BadRequest(message)


def _refuse_unsupported(params: Any, where: str) -> None:
    for key, why in _UNSUPPORTED.items():
        _expect(key not in params, f"{where}: {why}")


def decode_request(
    request: service_pb2.ModelInferRequest,
    inputs: tuple[TensorInfo, ...],
    outputs: tuple[TensorInfo, ...],
    largest: Mapping[str, tuple[int, ...] | None] | None = None,
) -> InferRequest:
    """The request as feeds for a model with these inputs and outputs; BadRequest if it does
    not fit them. `largest`: each input's largest shape the deployment allows (shapes.max)."""
    _expect(request.inputs, "the request has no inputs")
    raw = request.raw_input_contents
    _expect(
        not raw or len(raw) == len(request.inputs),
        f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: use it"
        " for every input or for none",
    )
    declared = {t.name: t for t in inputs}
    feeds: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        _expect(name in declared, f"unknown input {name!r}; the model takes {sorted(declared)}")
        _expect(name not in feeds, f"input {name!r} given twice")
        _refuse_unsupported(tensor.parameters, f"input {name!r}")
        spec = declared[name]
        _expect(
            tensor.datatype == spec.datatype,
            f"input {name!r}: datatype {tensor.datatype!r} does not match the model's"
            f" {spec.datatype}",
        )
        shape = checked_shape(list(tensor.shape), spec)
        check_largest(shape, name, (largest or {}).get(name))
        if raw:
            _expect(
                not tensor.HasField("contents"),
                f"input {name!r}: give either contents or raw_input_contents, not both",
            )
            feeds[name] = _from_raw(raw[i], spec, shape)
        else:
            feeds[name] = _from_contents(tensor.contents, spec, shape)
    missing = sorted(set(declared) - set(feeds))
    _expect(not missing, f"missing inputs {missing}")
    _refuse_unsupported(request.parameters, "request")
    return InferRequest(request.id or None, feeds, _requested_outputs(request, outputs))


def _requested_outputs(
    request: service_pb2.ModelInferRequest, outputs: tuple[TensorInfo, ...]
) -> tuple[str, ...]:
    known = {t.name for t in outputs}
    names: list[str] = []
    for out in request.outputs:
        _expect(out.name in known, f"unknown output {out.name!r}; the model gives {sorted(known)}")
        _refuse_unsupported(out.parameters, f"output {out.name!r}")
        names.append(out.name)
    return tuple(names)


def _dtype(spec: TensorInfo) -> np.dtype:
    dtype = V2_TO_NUMPY.get(spec.datatype)
    _expect(dtype is not None, f"input {spec.name!r}: datatype {spec.datatype} is not supported")
    assert dtype is not None
    return dtype


def _from_raw(data: bytes, spec: TensorInfo, shape: list[int]) -> np.ndarray:
    dtype = _dtype(spec)
    want = math.prod(shape) * dtype.itemsize
    _expect(
        len(data) == want,
        f"input {spec.name!r}: raw_input_contents holds {len(data)} bytes, shape {shape} of"
        f" {spec.datatype} needs {want}",
    )
    # Little-endian per the protocol; frombuffer shares the message's bytes without a copy.
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)


def _from_contents(
    contents: service_pb2.InferTensorContents, spec: TensorInfo, shape: list[int]
) -> np.ndarray:
    name, dtype = spec.name, _dtype(spec)
    field = CONTENTS_FIELD.get(spec.datatype)
    _expect(field, f"input {name!r}: {spec.datatype} travels only in raw_input_contents")
    assert field is not None
    others = sorted(f.name for f, _ in contents.ListFields() if f.name != field)
    _expect(not others, f"input {name!r}: {spec.datatype} goes in contents.{field}, not {others}")
    values = getattr(contents, field)
    count = math.prod(shape)
    _expect(
        len(values) == count,
        f"input {name!r}: {len(values)} values given, shape {shape} needs {count}",
    )
    wide: np.ndarray = np.asarray(values, dtype=_FIELD_DTYPE[field])
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        _expect(
            int(wide.min()) >= info.min and int(wide.max()) <= info.max,
            f"input {name!r}: a value is out of range for {spec.datatype}",
        )
    if dtype.kind == "f" and dtype.itemsize < wide.dtype.itemsize and wide.size:
        narrow = wide.astype(dtype)
        _expect(
            bool(np.isfinite(narrow).all()) or not bool(np.isfinite(wide).all()),
            f"input {name!r}: a value is out of range for {spec.datatype}",
        )
    return wide.astype(dtype).reshape(shape)


def encode_response(
    model: str, version: str, request: InferRequest, results: dict[str, np.ndarray]
) -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(
        model_name=model, model_version=version, id=request.id or ""
    )
    for name in request.requested_outputs or tuple(results):
        value = results[name]
        native = value.dtype.newbyteorder("=")  # a big-endian output is still, say, INT32
        response.outputs.add(
            name=name,
            datatype=NUMPY_TO_V2.get(native, str(value.dtype)),
            shape=list(value.shape),
        )
        little = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        response.raw_output_contents.append(little.tobytes())
    return response
