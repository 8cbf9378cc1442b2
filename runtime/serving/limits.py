"""How large a request to a model may be: derived from the largest input the model can take.

The handlers ask `request_limits(instances)` before reading a body (so a 200 MB body for a model
that takes 5 MB is refused from its Content-Length, or after 5 MB of a chunked one) and hand the
limits to decoding, which refuses a JSON body holding more values than the inputs can (counted
in the raw bytes before parsing: each parsed JSON number is a Python object of ~32 bytes, so the
values, not the bytes, decide what a parse costs).

An input's largest shape: its declared dims, with each dynamic dim (-1) taken from the
deployment's `spec.runtime.shapes.<input>.max` (the control plane puts it in `Instance.meta`
as `input_max`). A dynamic dim with no max declared leaves the input bounded only by
`v2.MAX_ELEMENTS` and the request by the fallback caps below.

Encodings differ: binary tensor data is exact (elements x datatype size, after a JSON header of
at most `HEADER_ALLOWANCE`); JSON text takes up to `JSON_BYTES_PER_VALUE` per value (the longest
text of one value, a separator and a space, nesting brackets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.backends.base import V2_TO_NUMPY, TensorInfo
from runtime.serving.v2 import MAX_ELEMENTS

MAX_BODY_BYTES = 256 * 1024 * 1024  # no request is larger, whatever the model
MAX_UNBOUNDED_JSON_BYTES = 16 * 1024 * 1024  # JSON for an input with no declared max
HEADER_ALLOWANCE = 64 * 1024  # names, parameters, id: the JSON around the tensor values
STRUCTURE_VALUES = 4096  # commas a request may hold besides its tensor values

# The longest JSON text of one value ("-1.2345678901234567e-308", "-9223372036854775808",
# "false"), plus ", " and one byte of nesting per value.
_LONGEST_TEXT = {
    "BOOL": 5, "UINT8": 3, "INT8": 4, "UINT16": 5, "INT16": 6, "UINT32": 10, "INT32": 11,
    "UINT64": 20, "INT64": 20, "FP16": 24, "FP32": 24, "FP64": 24,
}  # fmt: skip
JSON_BYTES_PER_VALUE = {k: n + 3 for k, n in _LONGEST_TEXT.items()}


@dataclass(frozen=True)
class InputLimit:
    name: str
    datatype: str
    shape: tuple[int, ...] | None  # largest shape; None: a dynamic dim has no declared max

    @property
    def elements(self) -> int:
        return MAX_ELEMENTS if self.shape is None else math.prod(self.shape)

    def describe(self) -> str:
        shape = "no declared max" if self.shape is None else list(self.shape)
        return f"{self.name} {shape} {self.datatype}"


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold: `json_bytes` as JSON, `header_bytes` + `binary_bytes` with
    binary tensor data, `values` numbers in its JSON."""

    inputs: tuple[InputLimit, ...]
    json_bytes: int
    binary_bytes: int
    values: int

    def body_bytes(self, header_length: int | None) -> int:
        """The largest body: JSON alone, or a JSON header of `header_length` then binary data."""
        if header_length is None:
            return self.json_bytes
        return min(MAX_BODY_BYTES, header_length + self.binary_bytes)

    def describe(self) -> str:
        return ", ".join(i.describe() for i in self.inputs)


def largest_shape(spec: TensorInfo, declared_max: Any) -> tuple[int, ...] | None:
    """`spec`'s dims with each dynamic one from `declared_max` (None: one is unbounded)."""
    dims = tuple(spec.shape)
    if all(d >= 0 for d in dims):
        return dims
    if not isinstance(declared_max, list | tuple) or len(declared_max) != len(dims):
        return None
    maxes = tuple(int(d) for d in declared_max)
    return tuple(m if d < 0 else d for d, m in zip(dims, maxes, strict=True))


def largest_shapes(inputs: Iterable[TensorInfo], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Each input's largest allowed shape (None: unbounded), for the decoders' shape check."""
    return {i.name: i.shape for i in input_limits(inputs, meta).inputs}


def input_limits(inputs: Iterable[TensorInfo], meta: Mapping[str, Any]) -> RequestLimits:
    """The limits of one loaded version: its session's inputs and its `meta["input_max"]`."""
    declared = meta.get("input_max") or {}
    limits = tuple(
        InputLimit(t.name, t.datatype, largest_shape(t, declared.get(t.name))) for t in inputs
    )
    unbounded = any(i.shape is None for i in limits)
    json_bytes = HEADER_ALLOWANCE + sum(
        i.elements * JSON_BYTES_PER_VALUE.get(i.datatype, 24) for i in limits
    )
    binary_bytes = sum(i.elements * _itemsize(i.datatype) for i in limits)
    json_cap = MAX_UNBOUNDED_JSON_BYTES if unbounded else MAX_BODY_BYTES
    return RequestLimits(
        limits,
        json_bytes=min(json_bytes, json_cap),
        binary_bytes=min(binary_bytes, MAX_BODY_BYTES),
        values=sum(i.elements for i in limits) + STRUCTURE_VALUES,
    )


def widest(limits: Iterable[RequestLimits]) -> RequestLimits | None:
    """One set of limits that admits a request any of these versions could take (during a
    canary a request may land on either version)."""
    found = list(limits)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return RequestLimits(
        max(found, key=lambda r: r.json_bytes).inputs,
        json_bytes=max(r.json_bytes for r in found),
        binary_bytes=max(r.binary_bytes for r in found),
        values=max(r.values for r in found),
    )


def _itemsize(datatype: str) -> int:
    dtype = V2_TO_NUMPY.get(datatype)
    return 8 if dtype is None else dtype.itemsize


def too_many_values(header: bytes | bytearray, limits: RequestLimits) -> str | None:
    """Why this JSON holds more values than the model's inputs can take (None: it does not).
    Every value of a list but the last is followed by a comma, so commas bound the values (and
    the lists) a parse would make, at memchr speed and before any is made."""
    commas = header.count(b",")
    if commas <= limits.values:
        return None
    return (
        f"the request holds about {commas} JSON values; the model's inputs take at most"
        f" {limits.values - STRUCTURE_VALUES} ({limits.describe()})"
    )
