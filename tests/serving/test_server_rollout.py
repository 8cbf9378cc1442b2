"""The V2 server during a rollout stage: which requests a canary sends where, over HTTP, and
what the stage's figures count (in-process, real ONNX Runtime sessions of v1 and v2)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import pytest

from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.serving.metrics import Metrics
from runtime.serving.server import create_app
from runtime.serving.slot import Instance, ModelSlot, Repository
from runtime.serving.traffic import Split
from tests.support.units import model_path

BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 3, 224, 224],
                "data": np.full(3 * 224 * 224, 0.5).tolist(),
            }
        ]
    }
)


@pytest.fixture(scope="module")
def served(kit: Any) -> Iterator[tuple[Any, ModelSlot, Metrics]]:
    backend = OnnxRuntimeBackend()
    repo = Repository()
    slot = repo.slot("classifier")
    slot.activate(Instance("classifier", "1", backend.load(model_path(kit, "1")), healthy=True))
    slot.set_candidate(
        Instance("classifier", "2", backend.load(model_path(kit, "2")), healthy=True)
    )
    metrics = Metrics()
    app = create_app(repo, lambda: True, metrics=metrics, workers=2)
    with anyio.from_thread.start_blocking_portal() as portal:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

        def post(request_id: str | None = None) -> str:
            headers = {"content-type": "application/json"}
            if request_id:
                headers["x-request-id"] = request_id
            r = portal.call(
                lambda: http.post("/v2/models/classifier/infer", content=BODY, headers=headers)
            )
            assert r.status_code == 200, r.text
            return str(r.json()["model_version"])

        yield post, slot, metrics
        portal.call(http.aclose)


def test_a_request_id_lands_on_the_same_version_every_time(served) -> None:
    post, slot, _ = served
    slot.start_split(Split("canary", 0, 50, "digest", compare=False))
    try:
        by_id = {f"client-{i}": {post(f"client-{i}") for _ in range(3)} for i in range(16)}
        assert all(len(seen) == 1 for seen in by_id.values()), by_id
        assert {v for seen in by_id.values() for v in seen} == {"1", "2"}
    finally:
        slot.end_split()


def test_the_stage_counts_each_arm_and_a_revert_is_timed(served) -> None:
    post, slot, metrics = served
    split = Split("canary", 0, 25, "digest", compare=False)
    slot.start_split(split)
    answered = [post() for _ in range(20)]
    to_candidate = answered.count("2")
    assert 4 <= to_candidate <= 6  # requests without an id: 25%, give or take one or two
    figures = split.snapshot()
    assert figures["candidate"]["requests"] == to_candidate
    assert figures["active"]["requests"] == 20 - to_candidate
    assert figures["candidate"]["p99_ms"] > 0
    slot.end_split(decided_at=time.perf_counter())
    assert {post() for _ in range(5)} == {"1"}
    assert metrics.revert_seconds.labels("classifier")._sum.get() > 0
