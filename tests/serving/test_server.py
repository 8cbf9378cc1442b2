"""The KServe V2 HTTP API, in-process, with a real ONNX Runtime session behind it.

Client mistakes are 400s with {"error": "..."} naming the tensor; nothing a client sends may
produce a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.serving.server import create_app
from runtime.serving.slot import Instance, Repository
from tests.support.units import golden, model_path

SHAPE = [1, 3, 224, 224]
N = 3 * 224 * 224


class Client:
    """Synchronous calls into the ASGI app in-process (httpx.ASGITransport) via an anyio portal."""

    def __init__(self, portal: Any, app: Any) -> None:
        self.portal = portal
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://hotswap.test")

    def get(self, path: str) -> httpx.Response:
        return self.portal.call(self.http.get, path)

    def post(self, path: str, content: bytes | str) -> httpx.Response:
        async def call() -> httpx.Response:
            headers = {"content-type": "application/json"}
            return await self.http.post(path, content=content, headers=headers)

        return self.portal.call(call)


class Ready:
    def __init__(self) -> None:
        self.value = True

    def __call__(self) -> bool:
        return self.value


@pytest.fixture(scope="module")
def session(kit: Any) -> Any:
    return OnnxRuntimeBackend().load(model_path(kit, "1"), threads=2)


@pytest.fixture(scope="module")
def served(session: Any) -> Iterator[tuple[Client, Repository, Ready]]:
    repo = Repository()
    repo.slot("classifier").activate(Instance("classifier", "1", session, healthy=True))
    repo.slot("empty")  # a model whose first load has not finished
    ready = Ready()
    with anyio.from_thread.start_blocking_portal() as portal:
        client = Client(portal, create_app(repo, ready))
        yield client, repo, ready
        portal.call(client.http.aclose)


@pytest.fixture
def client(served: tuple[Client, Repository, Ready]) -> Client:
    served[2].value = True
    return served[0]


def body(data: list[float] | None = None, **tensor: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": SHAPE}
    t["data"] = data if data is not None else [0.1] * N
    t.update(tensor)
    return {"inputs": [t]}


def post(client: Client, payload: Any, path: str = "/v2/models/classifier/infer") -> Any:
    raw = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post(path, raw)


# -- health and metadata -------------------------------------------------------------------


def test_live(client: Client) -> None:
    r = client.get("/v2/health/live")
    assert r.status_code == 200 and r.json() == {"live": True}


def test_ready_follows_is_ready(served: tuple[Client, Repository, Ready]) -> None:
    client, _, ready = served
    ready.value = False
    r = client.get("/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False}
    ready.value = True
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}


def test_model_metadata(client: Client) -> None:
    r = client.get("/v2/models/classifier")
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == "classifier" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert client.get("/v2/models/classifier/versions/1").json() == meta


def test_model_ready(client: Client) -> None:
    r = client.get("/v2/models/classifier/ready")
    assert r.status_code == 200 and r.json() == {"name": "classifier", "ready": True}
    assert client.get("/v2/models/classifier/versions/1/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/classifier/versions/2",
        "/v2/models/classifier/versions/2/ready",
    ],
)
def test_unknown_model_or_version_is_404(client: Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert set(r.json()) == {"error"}


def test_model_without_active_instance_is_503(client: Client) -> None:
    for r in (
        client.get("/v2/models/empty"),
        client.get("/v2/models/empty/ready"),
        post(client, body(), "/v2/models/empty/infer"),
    ):
        assert r.status_code == 503, r.text
        assert "not ready" in r.json()["error"]


# -- inference -----------------------------------------------------------------------------


def test_infer_matches_golden(client: Client, kit: Any) -> None:
    g = golden(kit, "1")
    x = g["input"][:1]
    r = post(client, body(x.ravel().tolist(), shape=list(x.shape)) | {"id": "req-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "classifier" and out["model_version"] == "1"
    assert out["id"] == "req-1"
    (logits,) = out["outputs"]
    assert logits["name"] == "logits" and logits["datatype"] == "FP32"
    assert logits["shape"] == [1, 1000]
    got = np.asarray(logits["data"], np.float32).reshape(1, 1000)
    np.testing.assert_allclose(got, g["logits"][:1], atol=1e-4)


def test_infer_batch_and_version_path(client: Client, kit: Any) -> None:
    g = golden(kit, "1")
    x = g["input"]
    r = post(
        client,
        body(x.ravel().tolist(), shape=list(x.shape)) | {"outputs": [{"name": "logits"}]},
        "/v2/models/classifier/versions/1/infer",
    )
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(g["logits"].shape)
    np.testing.assert_allclose(got, g["logits"], atol=1e-4)


def test_infer_unknown_model_is_404(client: Client) -> None:
    r = post(client, body(), "/v2/models/nope/infer")
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_infer_wrong_version_is_404(client: Client) -> None:
    r = post(client, body(), "/v2/models/classifier/versions/7/infer")
    assert r.status_code == 404
    assert "'7'" in r.json()["error"] and "active: 1" in r.json()["error"]


BAD_REQUESTS: dict[str, tuple[Any, str]] = {
    "invalid-json": (b'{"inputs": [', "not valid JSON"),
    "invalid-utf8": (b'{"inputs": "\xff"}', "not valid JSON"),
    "body-not-an-object": ([1, 2, 3], "JSON object"),
    "missing-inputs": ({"outputs": []}, "'inputs'"),
    "empty-inputs": ({"inputs": []}, "'inputs'"),
    "input-not-an-object": ({"inputs": [7]}, "inputs[0]"),
    "input-without-name": ({"inputs": [{"datatype": "FP32"}]}, "inputs[0].name"),
    "wrong-input-name": (body(name="image"), "'image'"),
    "wrong-datatype": (body(datatype="INT64"), "'input'"),
    "wrong-rank": (body(shape=[3, 224, 224]), "'input': rank"),
    "wrong-fixed-dim": (body(shape=[1, 4, 224, 224]), "'input': dim 1"),
    "data-length-mismatch": (body([0.0] * (N - 1)), "'input': 150527 values"),
    "non-numeric-data": (body(["abc"] * N), "'input'"),
    "null-in-data": (body([None] * N), "'input'"),  # numpy would read null as NaN
    "numeric-strings-in-data": (body(["0.5"] * N), "'input'"),
    "booleans-in-data": (body([True] * N), "'input'"),
    "object-in-data": (body([{}] * N), "'input'"),
    "ragged-data": (body([[0.0, 1.0], [2.0]]), "'input'"),
    "data-not-a-list": (
        body(data=None) | {"inputs": [{**body()["inputs"][0], "data": 3}]},
        "'input'",
    ),
    "negative-dims": (body(shape=[-1, 3, 224, 224]), "'input': shape"),
    "float-dims": (body(shape=[1.0, 3, 224, 224]), "'input': shape"),
    "bool-dims": (body(shape=[True, 3, 224, 224]), "'input': shape"),
    "huge-dims": (body(shape=[2**70, 3, 224, 224]), "'input'"),
    "duplicate-inputs": ({"inputs": body()["inputs"] * 2}, "'input' given twice"),
    "unknown-requested-output": (body() | {"outputs": [{"name": "probs"}]}, "'probs'"),
    "outputs-not-a-list": (body() | {"outputs": {"name": "logits"}}, "'outputs'"),
    "id-not-a-string": (body() | {"id": 5}, "'id'"),
    "overflowing-value": (body([1e39] + [0.0] * (N - 1), datatype="FP32"), None),
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("payload,fragment", BAD_REQUESTS.values(), ids=list(BAD_REQUESTS))
def test_client_mistakes_are_400_naming_the_problem(
    client: Client, payload: Any, fragment: str | None
) -> None:
    r = post(client, payload)
    if fragment is None:  # accepted or refused, but never a server error
        assert r.status_code in (200, 400), r.text
        return
    assert r.status_code == 400, r.text
    err = r.json()
    assert set(err) == {"error"} and isinstance(err["error"], str)
    assert fragment in err["error"], err["error"]


def test_deeply_nested_json_is_a_400_not_a_500(client: Client) -> None:
    r = post(client, b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400, r.text
    r = post(client, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert r.status_code == 400, r.text


def test_deeply_nested_data_is_a_400(client: Client) -> None:
    nested: Any = 0.0
    for _ in range(200):
        nested = [nested]
    r = post(client, body([nested]))
    assert r.status_code == 400, r.text


def test_empty_batch_is_not_a_server_error(client: Client) -> None:
    r = post(client, body([], shape=[0, 3, 224, 224]))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["outputs"][0]["shape"] == [0, 1000]


# -- property: nothing a client sends is a 500 -----------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
dims = st.one_of(st.integers(-2, 5), st.sampled_from([224, 3, 2**40]), json_values)
v2ish = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["input", "logits", ""]) | json_values,
                    "datatype": st.sampled_from(["FP32", "FP16", "INT64", "BYTES"]) | json_values,
                    "shape": st.lists(dims, max_size=5) | json_values,
                    "data": st.lists(json_values, max_size=6) | json_values,
                }
            ),
            max_size=3,
        )
        | json_values,
    },
    optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": json_values}), max_size=2) | json_values,
        "id": json_values,
        "parameters": json_values,
    },
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.one_of(json_values, v2ish))
def test_arbitrary_json_never_gives_a_500(client: Client, payload: Any) -> None:
    r = post(client, payload)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 200:
        assert set(r.json()) == {"error"}
