"""The KServe V2 binary tensor data extension and /metrics, in-process and with tritonclient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import pytest
import tritonclient.http as tc
from tritonclient.utils import InferenceServerException

from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.serving.metrics import Metrics
from runtime.serving.server import create_app
from runtime.serving.slot import Instance, Repository
from tests.support.daemon import Daemon
from tests.support.kit import Kit
from tests.support.units import golden, model_path

HEADER = "Inference-Header-Content-Length"


class Binary:
    def __init__(self, portal: Any, app: Any) -> None:
        self.portal = portal
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    def post(
        self, header: dict[str, Any], binary: bytes = b"", header_length: str | None = "auto"
    ) -> httpx.Response:
        head = json.dumps(header).encode()
        headers = {"content-type": "application/octet-stream"}
        if header_length == "auto":
            headers[HEADER] = str(len(head))
        elif header_length is not None:
            headers[HEADER] = header_length
        return self.portal.call(
            lambda: self.http.post(
                "/v2/models/classifier/infer", content=head + binary, headers=headers
            )
        )

    def get(self, path: str) -> httpx.Response:
        return self.portal.call(self.http.get, path)


@pytest.fixture(scope="module")
def served(kit: Kit) -> Iterator[tuple[Binary, Metrics]]:
    session = OnnxRuntimeBackend().load(model_path(kit, "1"))
    repo = Repository()
    repo.slot("classifier").activate(Instance("classifier", "1", session, healthy=True))
    metrics = Metrics()
    metrics.watch_state(repo.describe, lambda: 1234)
    with anyio.from_thread.start_blocking_portal() as portal:
        client = Binary(portal, create_app(repo, lambda: True, metrics=metrics))
        yield client, metrics
        portal.call(client.http.aclose)


def _split(r: httpx.Response) -> tuple[dict[str, Any], bytes]:
    n = int(r.headers[HEADER])
    return json.loads(r.content[:n]), r.content[n:]


def _input(x: np.ndarray, binary: bool = True) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    if binary:
        t["parameters"] = {"binary_data_size": x.nbytes}
    else:
        t["data"] = x.ravel().tolist()
    return t


def test_binary_in_binary_out_matches_golden(served: tuple[Binary, Metrics], kit: Kit) -> None:
    client, _ = served
    g = golden(kit, "1")
    x = g["input"]
    r = client.post(
        {"inputs": [_input(x)], "parameters": {"binary_data_output": True}}, x.tobytes()
    )
    assert r.status_code == 200, r.text
    header, raw = _split(r)
    (out,) = header["outputs"]
    assert header["model_version"] == "1"
    assert out["parameters"]["binary_data_size"] == len(raw) == x.shape[0] * 1000 * 4
    got = np.frombuffer(raw, "<f4").reshape(out["shape"])
    np.testing.assert_allclose(got, g["logits"], atol=1e-4)


def test_binary_in_json_out_when_the_output_asks_for_json(
    served: tuple[Binary, Metrics], kit: Kit
) -> None:
    client, _ = served
    x = golden(kit, "1")["input"][:1]
    r = client.post(
        {
            "inputs": [_input(x)],
            "outputs": [{"name": "logits", "parameters": {"binary_data": False}}],
        },
        x.tobytes(),
    )
    assert r.status_code == 200, r.text
    assert HEADER not in r.headers
    assert len(r.json()["outputs"][0]["data"]) == 1000


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda h, b: (h, b[:-4], "auto"), "runs past"),
        (lambda h, b: (h, b + b"\0\0\0\0", "auto"), "bytes of binary data follow"),
        (lambda h, b: (h, b, "999999999"), "Inference-Header-Content-Length"),
        (lambda h, b: (h, b, "-1"), "Inference-Header-Content-Length"),
        (lambda h, b: (h, b, None), "not valid JSON"),
        (
            lambda h, b: ({**h, "inputs": [{**h["inputs"][0], "data": [1.0]}]}, b, "auto"),
            "either 'data' or",
        ),
        (
            lambda h, b: (
                {**h, "inputs": [{**h["inputs"][0], "parameters": {"binary_data_size": "x"}}]},
                b,
                "auto",
            ),
            "non-negative integer",
        ),
        (
            lambda h, b: (
                {
                    **h,
                    "inputs": [
                        {
                            **h["inputs"][0],
                            "shape": [2, 3, 224, 224],
                            "parameters": {"binary_data_size": 2 * 602112},
                        }
                    ],
                },
                b + b,
                "auto",
            ),
            None,
        ),
        (
            lambda h, b: (
                {
                    **h,
                    "inputs": [
                        {
                            **h["inputs"][0],
                            "shape": [1, 3, 224, 224],
                            "parameters": {"binary_data_size": 8},
                        }
                    ],
                },
                b[:8],
                "auto",
            ),
            "needs 602112",
        ),
        (
            lambda h, b: (
                {**h, "outputs": [{"name": "logits", "parameters": {"class_count": 3}}]},
                b,
                "auto",
            ),
            "classification",
        ),
    ],
)
def test_bad_binary_requests_are_400s(
    served: tuple[Binary, Metrics], mangle: Any, message: str | None
) -> None:
    client, _ = served
    x = np.zeros((1, 3, 224, 224), np.float32)
    header, binary, length = mangle({"inputs": [_input(x)]}, x.tobytes())
    r = client.post(header, binary, length)
    if message is None:  # a well-formed batch of two must work: the control case
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_metrics_count_requests_by_version_and_code(served: tuple[Binary, Metrics]) -> None:
    client, _ = served
    x = np.zeros((1, 3, 224, 224), np.float32)
    before = client.get("/metrics").text
    client.post({"inputs": [_input(x)]}, x.tobytes())
    client.post({"inputs": [_input(x)]}, x.tobytes()[:-4])
    text = client.get("/metrics").text

    def value(body: str, series: str) -> float:
        for line in body.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    ok = 'hotswap_inference_requests_total{code="200",model="classifier",version="1"}'
    bad = 'hotswap_inference_requests_total{code="400",model="classifier",version="1"}'
    assert value(text, ok) == value(before, ok) + 1
    assert value(text, bad) == value(before, bad) + 1
    assert 'hotswap_model_version_info{model="classifier",role="active",version="1"} 1.0' in text
    assert "hotswap_journal_bytes 1234.0" in text
    assert "hotswap_inference_duration_seconds_bucket" in text


def test_tritonclient_works_unchanged_against_the_daemon(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    d.wait_version("1")
    client = tc.InferenceServerClient(f"127.0.0.1:{d.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("classifier")
        assert not client.is_model_ready("nope")
        meta = client.get_model_metadata("classifier")
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

        g = golden(kit, "1")
        for binary in (True, False):
            inp = tc.InferInput("input", list(g["input"].shape), "FP32")
            inp.set_data_from_numpy(g["input"], binary_data=binary)
            out = tc.InferRequestedOutput("logits", binary_data=binary)
            result = client.infer("classifier", [inp], outputs=[out], request_id="req-1")
            np.testing.assert_allclose(result.as_numpy("logits"), g["logits"], atol=1e-4)
            response = result.get_response()
            assert response["model_version"] == "1"
            assert response["id"] == "req-1"
        # no outputs named: tritonclient asks for every output in binary
        inp = tc.InferInput("input", list(g["input"].shape), "FP32")
        inp.set_data_from_numpy(g["input"])
        np.testing.assert_allclose(
            client.infer("classifier", [inp]).as_numpy("logits"), g["logits"], atol=1e-4
        )

        with pytest.raises(InferenceServerException, match="unknown model"):
            client.infer("nope", [inp])
        wrong = tc.InferInput("input", [1, 3, 224, 224], "FP64")
        wrong.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float64))
        with pytest.raises(InferenceServerException, match="datatype") as err:
            client.infer("classifier", [wrong])
        assert err.value.status() == "400"
    finally:
        client.close()
