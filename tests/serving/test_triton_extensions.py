"""Triton's read-only extensions over HTTP and gRPC: model configuration, statistics and the
repository index in the fields Triton documents, the same over both protocols; load and unload
refused; Retry-After on every 503."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as tg
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb

from runtime.backends.base import TensorInfo
from runtime.serving.conditions import Condition
from runtime.serving.slot import Repository
from tests.support.grpc_serving import DoublingSession, Served, grpc_served, instance

X = np.ones((3, 4), np.float32)
MODEL_STAT_FIELDS = {
    "name", "version", "last_inference", "inference_count", "execution_count",
    "inference_stats", "batch_stats",
}  # fmt: skip
INFER_STAT_FIELDS = {"success", "fail", "queue", "compute_input", "compute_infer", "compute_output"}


@pytest.fixture
def served() -> Iterator[Served]:
    repo = Repository()
    repo.slot("m").activate(instance("1", max_batch_size=16, backend="onnxruntime"))
    fixed = DoublingSession()
    fixed.inputs = (TensorInfo("x", "FP32", (1, 4)),)  # batch dim fixed: not a batching model
    repo.slot("fixed").activate(instance("3", fixed, name="fixed", platform="tensorrt_plan"))
    with grpc_served(repo) as s:
        yield s


def infer(s: Served, n: int = 1) -> None:
    c = tg.InferenceServerClient(s.url)
    for _ in range(n):
        t = tg.InferInput("x", [3, 4], "FP32")
        t.set_data_from_numpy(X)
        c.infer("m", [t])


def test_model_config_in_tritons_shape_over_http_and_grpc(served: Served) -> None:
    config = served.http("GET", "/v2/models/m/config").json()
    assert config["name"] == "m" and config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 16
    # a batching model: dims leave the batch dim out, as Triton's do
    assert config["input"] == [
        {"name": "x", "data_type": "TYPE_FP32", "dims": [4], "format": "FORMAT_NONE"}
    ]
    assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}]
    assert "dynamic_batching" not in config  # batching is off
    assert served.http("GET", "/v2/models/m/versions/1/config").json() == config
    over_grpc = served.stub.ModelConfig(pb.ModelConfigRequest(name="m"), timeout=10).config
    assert over_grpc == json_format.ParseDict(config, model_config_pb2.ModelConfig())
    assert served.http("GET", "/v2/models/m/versions/2/config").status_code == 404


def test_a_model_with_a_fixed_batch_dim_reports_max_batch_size_zero_and_full_dims(
    served: Served,
) -> None:
    config = served.http("GET", "/v2/models/fixed/config").json()
    assert config["max_batch_size"] == 0 and config["input"][0]["dims"] == [1, 4]
    assert config["platform"] == "tensorrt_plan" and config["backend"] == "tensorrt"


def test_dynamic_batching_shows_when_the_instance_batches() -> None:
    repo = Repository()
    batching = {"max_batch_size": 8, "max_queue_delay_s": 0.002, "preferred_sizes": [4, 8]}
    repo.slot("m").activate(instance("1", batching=batching))
    with grpc_served(repo) as s:
        config = s.http("GET", "/v2/models/m/config").json()
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [4, 8],
        "max_queue_delay_microseconds": 2000,
    }


def test_statistics_count_both_protocols_in_tritons_fields(served: Served) -> None:
    infer(served, 2)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": [1.0] * 12}]}
    assert served.http("POST", "/v2/models/m/infer", json=body).status_code == 200
    assert served.http("POST", "/v2/models/m/infer", json={"inputs": []}).status_code == 400
    stats = served.http("GET", "/v2/models/m/stats").json()["model_stats"]
    assert [s["version"] for s in stats] == ["1"]
    (entry,) = stats
    assert set(entry) == MODEL_STAT_FIELDS
    assert set(entry["inference_stats"]) >= INFER_STAT_FIELDS
    assert entry["execution_count"] == 3 and entry["inference_count"] == 9  # 3 rows each
    inference = entry["inference_stats"]
    assert inference["success"]["count"] == 3 and inference["fail"]["count"] == 1
    for phase in INFER_STAT_FIELDS - {"fail"}:
        assert inference[phase]["count"] == 3 and inference[phase]["ns"] > 0, phase
    assert [b["batch_size"] for b in entry["batch_stats"]] == [3]
    assert entry["last_inference"] > 0
    over_grpc = served.stub.ModelStatistics(pb.ModelStatisticsRequest(name="m"), timeout=10)
    assert over_grpc == json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())


def test_statistics_of_every_model_one_model_and_one_version(served: Served) -> None:
    every = served.http("GET", "/v2/models/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [("fixed", "3"), ("m", "1")]
    assert every[0]["inference_count"] == 0  # served nothing yet, listed at zero
    one = served.http("GET", "/v2/models/m/versions/1/stats").json()["model_stats"]
    assert [s["name"] for s in one] == ["m"]
    assert served.http("GET", "/v2/models/m/versions/9/stats").status_code == 404
    assert served.http("GET", "/v2/models/nope/stats").status_code == 404
    listed = served.stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=10)
    assert [s.name for s in listed.model_stats] == ["fixed", "m"]


def test_repository_index_shows_loading_and_the_quarantine_reason(served: Served) -> None:
    served.repo.slot("new")  # desired, first load in progress
    served.repo.conditions.publish(
        {
            "m": Condition("2", "UNAVAILABLE", "quarantined (health-nan): NaN in output y"),
            "new": Condition("1", "LOADING"),
        }
    )
    index = served.http("POST", "/v2/repository/index").json()
    assert index == [
        {"name": "fixed", "version": "3", "state": "READY", "reason": ""},
        {"name": "m", "version": "1", "state": "READY", "reason": ""},
        {"name": "m", "version": "2", "state": "UNAVAILABLE",
         "reason": "quarantined (health-nan): NaN in output y"},
        {"name": "new", "version": "1", "state": "LOADING", "reason": ""},
    ]  # fmt: skip
    ready = served.http("POST", "/v2/repository/index", json={"ready": True}).json()
    assert [e["state"] for e in ready] == ["READY", "READY"]
    over_grpc = served.stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
    assert [json_format.MessageToDict(m, always_print_fields_with_no_presence=True)
            for m in over_grpc.models] == index  # fmt: skip
    assert served.http("POST", "/v2/repository/index", content=b"[1").status_code == 400


def test_load_and_unload_over_http_are_refused(served: Served) -> None:
    for action in ("load", "unload"):
        r = served.http("POST", f"/v2/repository/models/m/{action}")
        assert r.status_code == 403 and "desired state" in r.json()["error"]


def test_every_503_says_when_to_retry() -> None:
    repo = Repository()
    repo.slot("loading")
    with grpc_served(repo, ready=False) as s:
        ready = s.http("GET", "/v2/health/ready")
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
        infer_503 = s.http("POST", "/v2/models/loading/infer", json=body)
        meta_503 = s.http("GET", "/v2/models/loading")
    for r in (ready, infer_503, meta_503):
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
