"""The protobuf -> numpy decoder: what a client sends comes out exactly, and anything else is
a BadRequest (INVALID_ARGUMENT), never another exception from inside the decoder."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import service_pb2 as pb

from runtime.backends.base import V2_TO_NUMPY, TensorInfo
from runtime.serving.grpc.codec import CONTENTS_FIELD, decode_request, encode_response
from runtime.serving.v2 import BadRequest, InferRequest

DATATYPES = sorted(V2_TO_NUMPY)
OUTPUTS = (TensorInfo("y", "FP32", (-1,)),)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    array = draw(hnp.arrays(V2_TO_NUMPY[datatype], shape))
    return datatype, array


def _spec(datatype: str, array: np.ndarray) -> tuple[TensorInfo, ...]:
    # the first dim dynamic, the others fixed, as exported models usually declare
    return (TensorInfo("x", datatype, (-1, *array.shape[1:])),)


@settings(max_examples=150, deadline=None)
@given(tensors())
def test_raw_contents_decode_to_exactly_what_was_sent(drawn: tuple[str, np.ndarray]) -> None:
    datatype, array = drawn
    req = pb.ModelInferRequest(model_name="m", raw_input_contents=[array.tobytes()])
    req.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
    feeds = decode_request(req, _spec(datatype, array), OUTPUTS).feeds
    assert feeds["x"].dtype == array.dtype and feeds["x"].shape == array.shape
    assert feeds["x"].tobytes() == array.tobytes()  # bit for bit, NaN payloads included


@settings(max_examples=150, deadline=None)
@given(tensors())
def test_typed_contents_decode_to_the_values_sent(drawn: tuple[str, np.ndarray]) -> None:
    datatype, array = drawn
    field = CONTENTS_FIELD.get(datatype)
    if field is None:  # FP16 travels raw only: typed contents are refused
        return
    req = pb.ModelInferRequest(model_name="m")
    inp = req.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
    getattr(inp.contents, field).extend(array.ravel().tolist())
    decoded = decode_request(req, _spec(datatype, array), OUTPUTS).feeds["x"]
    np.testing.assert_array_equal(decoded, array)
    assert decoded.dtype == array.dtype


_contents = st.builds(
    pb.InferTensorContents,
    fp32_contents=st.lists(st.floats(width=32), max_size=5),
    int_contents=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5),
    int64_contents=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5),
    uint_contents=st.lists(st.integers(0, 2**32 - 1), max_size=5),
    bool_contents=st.lists(st.booleans(), max_size=5),
)
_inputs = st.builds(
    pb.ModelInferRequest.InferInputTensor,
    name=st.sampled_from(["x", "z", ""]),
    datatype=st.sampled_from([*DATATYPES, "BYTES", "fp32", ""]),
    shape=st.lists(st.integers(-3, 2**33), max_size=4),
    contents=st.one_of(st.none(), _contents),
)
_requests = st.builds(
    pb.ModelInferRequest,
    model_name=st.just("m"),
    inputs=st.lists(_inputs, max_size=3),
    raw_input_contents=st.lists(st.binary(max_size=40), max_size=3),
    outputs=st.lists(
        st.builds(
            pb.ModelInferRequest.InferRequestedOutputTensor, name=st.sampled_from(["y", "q"])
        ),
        max_size=2,
    ),
)


@settings(max_examples=400, deadline=None)
@given(_requests, st.sampled_from(DATATYPES))
def test_any_request_decodes_or_is_a_bad_request(request: pb.ModelInferRequest, dt: str) -> None:
    spec = (TensorInfo("x", dt, (-1, 2)),)
    try:
        feeds = decode_request(request, spec, OUTPUTS).feeds
    except BadRequest as e:
        assert str(e)
        return
    x = feeds["x"]
    assert x.dtype == V2_TO_NUMPY[dt] and x.ndim == 2 and x.shape[1] == 2
    assert math.prod(x.shape) == x.size


def test_outputs_go_back_raw_little_endian_in_the_order_asked() -> None:
    results = {"a": np.arange(3, dtype=">i4"), "b": np.ones((2, 2), np.float16)}
    asked = InferRequest("id-1", {}, ("b", "a"))
    response = encode_response("m", "4", asked, results)
    assert (response.model_name, response.model_version, response.id) == ("m", "4", "id-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("b", "FP16", [2, 2]),
        ("a", "INT32", [3]),
    ]
    assert response.raw_output_contents[1] == np.arange(3, dtype="<i4").tobytes()


def test_a_shape_over_the_deployments_max_is_refused_as_over_http() -> None:
    spec = (TensorInfo("x", "FP32", (-1, 4)),)
    largest = {"x": (8, 4)}

    def request(batch: int) -> pb.ModelInferRequest:
        array = np.zeros((batch, 4), np.float32)
        req = pb.ModelInferRequest(model_name="m", raw_input_contents=[array.tobytes()])
        req.inputs.add(name="x", datatype="FP32", shape=[batch, 4])
        return req

    assert decode_request(request(8), spec, OUTPUTS, largest).feeds["x"].shape == (8, 4)
    try:
        decode_request(request(9), spec, OUTPUTS, largest)
    except BadRequest as e:
        assert "dim 0 is 9" in str(e) and "shapes max" in str(e)
    else:
        raise AssertionError("a batch of 9 passed a max of 8")
