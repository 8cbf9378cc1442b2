"""A model the control plane declared but has nothing loaded of answers 503 with Retry-After
(try again soon: it is being restored or repaired); a name nobody declared stays 404."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from runtime.serving.server import create_app
from runtime.serving.slot import Repository

INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


class Client:
    """One request at a time into the ASGI app, in process."""

    def __init__(self, repo: Repository) -> None:
        self.app = create_app(repo, lambda: False)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, **kw)

        return anyio.run(go)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, json: Any) -> httpx.Response:
        return self.request("POST", path, json=json)


@pytest.fixture
def repo() -> Repository:
    repo = Repository()
    repo.declare(["restoring"])
    repo.slot("loading")  # a slot whose first version is not active yet
    return repo


@pytest.mark.parametrize("model", ["restoring", "loading"])
@pytest.mark.parametrize("route", ["infer", "metadata", "ready"])
def test_a_known_model_with_nothing_loaded_is_503_with_retry_after(
    repo: Repository, model: str, route: str
) -> None:
    client = Client(repo)
    path = f"/v2/models/{model}"
    if route == "infer":
        r = client.post(f"{path}/infer", json=INFER)
    else:
        r = client.get(path + ("/ready" if route == "ready" else ""))
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) > 0
    assert model in r.json()["error"]


def test_a_name_nobody_declared_is_404_and_declaring_replaces(repo: Repository) -> None:
    client = Client(repo)
    assert client.post("/v2/models/nope/infer", json=INFER).status_code == 404
    assert client.get("/v2/models/nope").status_code == 404
    repo.declare(["nope"])  # desired state now names it: the last set is replaced
    assert client.post("/v2/models/nope/infer", json=INFER).status_code == 503
    assert client.get("/v2/models/restoring").status_code == 404
