"""Request limits derived from the model's largest input (no server here; the real daemon's
side, with memory measured, is tests/e2e/test_bounded_inputs_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends.base import TensorInfo
from runtime.serving.limits import (
    HEADER_ALLOWANCE,
    JSON_BYTES_PER_VALUE,
    MAX_UNBOUNDED_JSON_BYTES,
    STRUCTURE_VALUES,
    input_limits,
    too_many_values,
    widest,
)
from runtime.serving.v2 import BadRequest, decode_request

IMAGE = TensorInfo("input", "FP32", (-1, 3, 224, 224))
MASK = TensorInfo("mask", "UINT8", (-1, 16))
OUT = TensorInfo("logits", "FP32", (-1, 10))
META = {"input_max": {"input": [8, 3, 224, 224], "mask": [8, 16]}}


def test_limits_come_from_the_declared_max_datatype_and_encoding() -> None:
    limits = input_limits((IMAGE, MASK), META)
    pixels, flags = 8 * 3 * 224 * 224, 8 * 16
    assert limits.binary_bytes == pixels * 4 + flags
    assert limits.json_bytes == HEADER_ALLOWANCE + pixels * JSON_BYTES_PER_VALUE["FP32"] + flags * 6
    assert limits.values == pixels + flags + STRUCTURE_VALUES
    assert limits.body_bytes(None) == limits.json_bytes
    assert limits.body_bytes(100) == 100 + limits.binary_bytes  # binary: exact bytes + header
    assert "input [8, 3, 224, 224] FP32" in limits.describe()


def test_a_dynamic_dim_without_a_max_falls_back_to_the_caps() -> None:
    limits = input_limits((IMAGE,), {})
    assert limits.json_bytes == MAX_UNBOUNDED_JSON_BYTES
    assert "no declared max" in limits.describe()
    fixed = input_limits((TensorInfo("x", "FP32", (1, 4)),), {})
    assert fixed.binary_bytes == 16  # fixed dims need no declared max


def test_a_canary_admits_what_either_version_takes() -> None:
    small = input_limits((IMAGE,), {"input_max": {"input": [1, 3, 224, 224]}})
    large = input_limits((IMAGE,), META)
    both = widest([small, large])
    assert both is not None and both.json_bytes == large.json_bytes
    assert widest([]) is None


def test_values_are_counted_before_parsing() -> None:
    limits = input_limits((TensorInfo("x", "FP32", (2, 2)),), {})
    assert too_many_values(b"[" + b"0," * STRUCTURE_VALUES + b"0]", limits) is None
    problem = too_many_values(bytearray(b"0," * (STRUCTURE_VALUES + 10)), limits)
    assert problem is not None and "at most 4" in problem


def test_a_shape_over_the_declared_max_is_a_client_error() -> None:
    largest = {"input": (8, 3, 224, 224)}
    ok = np.zeros((8, 3, 224, 224), np.float32)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [8, 3, 224, 224],
                        "parameters": {"binary_data_size": ok.nbytes}}]}  # fmt: skip
    assert (
        decode_request(body, (IMAGE,), (OUT,), ok.tobytes(), largest).feeds["input"].shape[0] == 8
    )
    body["inputs"][0]["shape"] = [9, 3, 224, 224]
    with pytest.raises(BadRequest, match=r"dim 0 is 9, over the largest the model takes"):
        decode_request(body, (IMAGE,), (OUT,), b"", largest)
