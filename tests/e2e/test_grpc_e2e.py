"""gRPC against a real daemon with the real tritonclient.grpc client: served beside HTTP, a swap
under gRPC load with zero failed requests, and Triton's extensions showing the quarantine."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from tests.support.daemon import Daemon
from tests.support.kit import INPUT_SHAPE, Kit

IMAGE = np.full(INPUT_SHAPE, 0.1, np.float32)


def infer(c: tg.InferenceServerClient) -> str:
    t = tg.InferInput("input", list(IMAGE.shape), "FP32")
    t.set_data_from_numpy(IMAGE)
    return c.infer("classifier", [t], client_timeout=20).get_response().model_version


def status_of(c: tg.InferenceServerClient, model: str, x: np.ndarray) -> str | None:
    t = tg.InferInput("input", list(x.shape), "FP32" if x.dtype == np.float32 else "FP64")
    t.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as caught:
        c.infer(model, [t], client_timeout=20)
    return caught.value.status()


class GrpcLoad:
    """`threads` clients sending inferences back to back (bounded) until stopped."""

    def __init__(self, url: str, threads: int = 3, max_requests: int = 3000) -> None:
        self.versions: list[list[str]] = [[] for _ in range(threads)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url, i, max_requests), daemon=True)
            for i in range(threads)
        ]

    def _run(self, url: str, index: int, max_requests: int) -> None:
        client = tg.InferenceServerClient(url)
        for _ in range(max_requests):
            if self._stop.is_set():
                break
            try:
                self.versions[index].append(infer(client))
            except InferenceServerException as e:
                self.failures.append(str(e))
        client.close()

    def seen(self, version: str) -> bool:
        return any(version in v for v in self.versions)

    def __enter__(self) -> GrpcLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def test_tritonclient_grpc_through_a_swap_under_load(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    d.wait_version("1")
    c = tg.InferenceServerClient(d.grpc_url)
    assert c.is_server_live() and c.is_model_ready("classifier")
    assert infer(c) == "1"
    assert status_of(c, "nope", IMAGE) == "StatusCode.NOT_FOUND"
    assert status_of(c, "classifier", IMAGE[:, :2]) == "StatusCode.INVALID_ARGUMENT"
    assert status_of(c, "classifier", IMAGE.astype(np.float64)) == "StatusCode.INVALID_ARGUMENT"
    config = c.get_model_config("classifier", as_json=True)["config"]
    assert config["platform"] == "onnxruntime_onnx" and config["input"][0]["name"] == "input"
    with GrpcLoad(d.grpc_url) as load:
        d.wait_for(lambda: load.seen("1"), 30, "gRPC load answered by v1")
        kit.write(d.desired, "2")
        d.wait_for(lambda: all("2" in v for v in load.versions), 60, "every client on v2")
    assert load.failures == []
    for versions in load.versions:  # each client: v1 answers, then v2 only, never back
        first_two = versions.index("2")
        assert set(versions[:first_two]) == {"1"} and set(versions[first_two:]) == {"2"}
    stats = c.get_inference_statistics("classifier", as_json=True)["model_stats"]
    counts = {s["version"]: int(s["execution_count"]) for s in stats}
    assert counts["1"] > 0 and counts["2"] > 0


def test_the_repository_index_shows_why_a_version_is_not_served(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "2")
    d.start()
    d.wait_version("2")
    kit.write(d.desired, "3")  # NaN on its golden inputs: quarantined
    c = tg.InferenceServerClient(d.grpc_url)

    def quarantined() -> bool:
        index = c.get_model_repository_index(as_json=True).get("models", [])
        return any(m.get("state") == "UNAVAILABLE" and m.get("version") == "3" for m in index)

    d.wait_for(quarantined, 60, "v3 UNAVAILABLE in the index")
    by_version = {m["version"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
    assert by_version["2"]["state"] == "READY"
    assert "quarantined" in by_version["3"]["reason"] and "NaN" in by_version["3"]["reason"]
    http_index = d.client.post("/v2/repository/index").json()
    assert {(m["version"], m["state"]) for m in http_index} == {
        ("2", "READY"),
        ("3", "UNAVAILABLE"),
    }
    assert infer(c) == "2"
    started = time.monotonic()
    d.stop()  # SIGTERM: both servers stop and the daemon exits
    assert d.proc is not None and d.proc.returncode == 0 and time.monotonic() - started < 20


def test_a_grpc_address_in_use_stops_the_daemon_at_start(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d.start(args=["--grpc-listen", f"127.0.0.1:{port}"])
        assert d.wait_exit(60) == 1
    assert "grpc.listen-failed" in d.log_tail()
