"""gRPC serving in process: the real tritonclient.grpc client (and the raw stub for what it
would not send) against the servicer on a free loopback port.

Every client mistake is a precise status code with a message naming what is wrong, never
INTERNAL; a request finishes on the instance it started on, whatever is swapped meanwhile; the
canary split routes a request id the same way over gRPC as over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from runtime.backends.base import V2_TO_NUMPY
from runtime.serving.slot import Repository
from runtime.serving.traffic import Split
from tests.support.grpc_serving import DoublingSession, Served, grpc_served, instance

X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def served() -> Iterator[Served]:
    repo = Repository()
    repo.slot("m").activate(instance("1"))
    repo.slot("loading")  # a model whose first load has not finished
    with grpc_served(repo) as s:
        yield s


def client(s: Served) -> tg.InferenceServerClient:
    return tg.InferenceServerClient(s.url)


def tensor(x: np.ndarray, name: str = "x", datatype: str = "FP32") -> tg.InferInput:
    t = tg.InferInput(name, list(x.shape), datatype)
    t.set_data_from_numpy(x)
    return t


def request(x: np.ndarray = X, model: str = "m", **fields: Any) -> pb.ModelInferRequest:
    """A raw-contents request of `x` for input "x"; `fields` replace the request's fields."""
    req = pb.ModelInferRequest(model_name=model, raw_input_contents=[x.tobytes()])
    req.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    for key, value in fields.items():
        req.ClearField(key)
        if isinstance(value, list):
            getattr(req, key).extend(value)
        else:
            setattr(req, key, value)
    return req


def status_of(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value.code(), caught.value.details()


# -- health, metadata, inference ------------------------------------------------------------


def test_health_and_metadata_through_tritonclient(served: Served) -> None:
    c = client(served)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("m") and c.is_model_ready("m", "1")
    assert not c.is_model_ready("m", "2") and not c.is_model_ready("nope")
    assert not c.is_model_ready("loading")
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "hotswap"
    assert {"model_configuration", "statistics", "model_repository"} <= set(meta["extensions"])
    model = c.get_model_metadata("m", as_json=True)
    assert model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_infer_raw_contents_with_version_and_id(served: Served) -> None:
    result = client(served).infer("m", [tensor(X)], request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    response = result.get_response()
    assert response.model_version == "1" and response.id == "r-1"
    assert len(response.raw_output_contents) == 1


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0, 4.0]),
        ("FP64", "fp64_contents", [0.1, 0.2, 0.3, 1e300]),
        ("INT8", "int_contents", [-128, 0, 5, 127]),
        ("INT64", "int64_contents", [-(2**62), 0, 1, 2**40]),
        ("UINT8", "uint_contents", [0, 1, 2, 100]),
        ("UINT64", "uint64_contents", [0, 1, 2, 2**40]),
        ("BOOL", "bool_contents", [True, False, True, True]),
    ],
)
def test_typed_contents_of_each_datatype(datatype: str, field: str, values: list[Any]) -> None:
    repo = Repository()
    repo.slot("m").activate(instance("1", DoublingSession(datatype)))
    with grpc_served(repo) as s:
        req = pb.ModelInferRequest(model_name="m")
        inp = req.inputs.add(name="x", datatype=datatype, shape=[1, 4])
        getattr(inp.contents, field).extend(values)
        response = s.stub.ModelInfer(req, timeout=10)
    x = np.asarray(values).astype(V2_TO_NUMPY[datatype])
    want = ~x if datatype == "BOOL" else (x * 2).astype(x.dtype)
    got = np.frombuffer(response.raw_output_contents[0], dtype=want.dtype.newbyteorder("<"))
    np.testing.assert_array_equal(got.reshape(1, 4), want.reshape(1, 4))
    assert response.model_version == "1" and list(response.outputs[0].shape) == [1, 4]


# -- client mistakes and outages: each its own status code ---------------------------------

Input = pb.ModelInferRequest.InferInputTensor


def _bad_requests() -> dict[str, tuple[pb.ModelInferRequest, str]]:
    """name -> (request, a phrase the message must hold)"""
    two = np.zeros((2, 4), np.float32)
    typed = pb.InferTensorContents(fp32_contents=[0.0] * 8)
    return {
        "no inputs": (request(inputs=[], raw_input_contents=[]), "no inputs"),
        "unknown input": (request(inputs=[Input(name="z", datatype="FP32", shape=[2, 4])]), "unknown input 'z'"),
        "wrong datatype": (request(inputs=[Input(name="x", datatype="INT32", shape=[2, 4])]), "datatype 'INT32'"),
        "wrong rank": (request(inputs=[Input(name="x", datatype="FP32", shape=[8])]), "rank 1"),
        "wrong dim": (request(inputs=[Input(name="x", datatype="FP32", shape=[1, 8])]), "dim 1 is 8"),
        "negative dim": (request(inputs=[Input(name="x", datatype="FP32", shape=[-2, 4])]), "non-negative"),
        "too many elements": (request(inputs=[Input(name="x", datatype="FP32", shape=[2**40, 4])]), "exceed the limit"),
        "short raw bytes": (request(raw_input_contents=[two.tobytes()[:-1]]), "needs 32"),
        "raw count": (request(raw_input_contents=[two.tobytes(), b""]), "2 entries for 1 inputs"),
        "duplicate": (request(inputs=[Input(name="x", datatype="FP32", shape=[2, 4])] * 2, raw_input_contents=[two.tobytes()] * 2), "given twice"),
        "raw and typed": (request(inputs=[Input(name="x", datatype="FP32", shape=[2, 4], contents=typed)]), "not both"),
        "typed count": (request(raw_input_contents=[], inputs=[Input(name="x", datatype="FP32", shape=[1, 4], contents=typed)]), "8 values given"),
        "typed field": (request(raw_input_contents=[], inputs=[Input(name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(int_contents=[1] * 4))]), "fp32_contents"),
        "unknown output": (request(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="q")]), "unknown output 'q'"),
        "classification": (request(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="y", parameters={"classification": pb.InferParameter(int64_param=3)})]), "classification"),
        "shared memory": (request(inputs=[Input(name="x", datatype="FP32", shape=[2, 4], parameters={"shared_memory_region": pb.InferParameter(string_param="r")})]), "shared memory"),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(_bad_requests()))
def test_a_bad_request_is_invalid_argument_naming_the_problem(served: Served, case: str) -> None:
    req, phrase = _bad_requests()[case]
    code, details = status_of(served.stub.ModelInfer, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert phrase in details


def test_a_typed_value_out_of_its_datatype_range_is_invalid_argument() -> None:
    repo = Repository()
    repo.slot("m").activate(instance("1", DoublingSession("INT8")))
    with grpc_served(repo) as s:
        req = pb.ModelInferRequest(model_name="m")
        req.inputs.add(name="x", datatype="INT8", shape=[1, 4]).contents.int_contents.extend(
            [1, 2, 3, 300]
        )
        code, details = status_of(s.stub.ModelInfer, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "out of range for INT8" in details


def test_unknown_model_or_version_is_not_found_and_not_ready_is_unavailable(
    served: Served,
) -> None:
    code, details = status_of(served.stub.ModelInfer, request(model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details
    code, details = status_of(served.stub.ModelInfer, request(model_version="7"))
    assert code == grpc.StatusCode.NOT_FOUND and "no version '7'" in details
    code, _ = status_of(served.stub.ModelInfer, request(model="loading"))
    assert code == grpc.StatusCode.UNAVAILABLE
    for call in (served.stub.ModelMetadata, served.stub.ModelConfig):
        assert status_of(call, pb.ModelMetadataRequest(name="nope"))[0] == grpc.StatusCode.NOT_FOUND
        code, _ = status_of(call, pb.ModelMetadataRequest(name="loading"))
        assert code == grpc.StatusCode.UNAVAILABLE
    code, _ = status_of(served.stub.ModelStatistics, pb.ModelStatisticsRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_only_the_backend_failing_is_internal() -> None:
    session = DoublingSession()
    session.fail = True
    repo = Repository()
    repo.slot("m").activate(instance("1", session))
    with grpc_served(repo) as s:
        code, details = status_of(s.stub.ModelInfer, request())
    assert code == grpc.StatusCode.INTERNAL and "the device fell over" in details


def test_load_and_unload_are_refused_saying_desired_state_decides(served: Served) -> None:
    for call in (served.stub.RepositoryModelLoad, served.stub.RepositoryModelUnload):
        code, details = status_of(call, pb.RepositoryModelLoadRequest(model_name="m"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "desired state" in details
    with pytest.raises(InferenceServerException, match="desired"):
        client(served).load_model("m")


# -- swap semantics and routing -------------------------------------------------------------


def test_a_request_finishes_on_the_instance_it_started_on_across_a_swap() -> None:
    old, new = DoublingSession(), DoublingSession()
    old.gate = threading.Event()
    repo = Repository()
    slot = repo.slot("m")
    slot.activate(instance("1", old))
    with grpc_served(repo) as s, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(s.stub.ModelInfer, request(), timeout=30)
        assert old.entered.wait(10)
        slot.set_candidate(instance("2", new))
        slot.promote_candidate(keep_standby=False)
        assert s.stub.ModelInfer(request(), timeout=10).model_version == "2"
        assert not old.released  # still held by the request in flight
        old.gate.set()
        assert in_flight.result().model_version == "1"
    assert old.released


def test_canary_routes_a_request_id_alike_over_grpc_and_http() -> None:
    repo = Repository()
    slot = repo.slot("m")
    slot.activate(instance("1"))
    slot.set_candidate(instance("2"))
    slot.start_split(Split("canary", 0, 50.0, "digest", compare=False))
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": X.ravel().tolist()}]
    }
    with grpc_served(repo) as s:
        seen: dict[str, set[str]] = {"1": set(), "2": set()}
        for i in range(40):
            rid = f"req-{i}"
            by_metadata = s.stub.ModelInfer(
                request(), metadata=[("x-request-id", rid)]
            ).model_version
            by_field = s.stub.ModelInfer(request(id=rid)).model_version
            over_http = s.http(
                "POST", "/v2/models/m/infer", json=body, headers={"x-request-id": rid}
            )
            assert by_metadata == by_field == over_http.json()["model_version"], rid
            seen[by_field].add(rid)
    assert seen["1"] and seen["2"]  # 40 ids at 50 %: both arms get some


def test_stop_drains_the_request_in_flight_and_refuses_new_ones() -> None:
    session = DoublingSession()
    session.gate = threading.Event()
    repo = Repository()
    repo.slot("m").activate(instance("1", session))
    with grpc_served(repo) as s, ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(s.stub.ModelInfer, request(), timeout=30)
        assert session.entered.wait(10)
        stopping = pool.submit(s.server.stop, 20)
        with pytest.raises(grpc.RpcError) as refused:
            for _ in range(200):  # until the stop has begun (bounded)
                s.stub.ModelInfer(request(), timeout=5)
        session.gate.set()
        # grpc refuses a new call on an open channel as CANCELLED, on a new one as UNAVAILABLE
        assert refused.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert in_flight.result().model_version == "1"
        stopping.result(timeout=20)
