"""A real daemon with batching on for the example classifier: concurrent requests are answered
exactly as alone, the model configuration says it batches, and /metrics shows batch sizes,
queue wait apart from compute, the process, the release and the reconcile loop's last pass."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import Daemon
from tests.support.kit import Kit, infer_body


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value  # summed over labels
    return out


def _batching(doc: dict[str, Any]) -> None:
    doc["spec"]["runtime"]["batching"] = {"max_batch_size": 8, "max_queue_delay": "20ms"}


def test_batched_answers_equal_lone_ones_and_metrics_show_it(kit: Kit, daemon: Any) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1", mutate=_batching)
    d.start()
    d.wait_version("1")
    url = f"{d.url}/v2/models/classifier/infer"
    bodies = [infer_body(0.1 * i) for i in range(8)]
    with httpx.Client(timeout=30) as client:
        alone = [client.post(url, json=b).json()["outputs"][0]["data"] for b in bodies]
        before = _samples(client.get(f"{d.url}/metrics").text)
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda b: httpx.post(url, json=b, timeout=30).json(), bodies))
        config = client.get(f"{d.url}/v2/models/classifier/config").json()
        metrics = _samples(client.get(f"{d.url}/metrics").text)
    for lone, answer in zip(alone, together, strict=True):
        assert answer["model_version"] == "1"
        assert answer["outputs"][0]["data"] == lone  # same bytes in, same numbers out
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20000
    grew = {name: metrics[name] - before.get(name, 0.0) for name in metrics}
    assert grew["hotswap_inference_batch_size_sum"] == 8  # every request, in some batch
    assert grew["hotswap_inference_batch_size_count"] < 8, "no two requests shared a batch"
    assert grew["hotswap_inference_queue_seconds_count"] == 8
    assert grew["hotswap_inference_compute_seconds_count"] == 8
    assert metrics["process_resident_memory_bytes"] > 10_000_000
    assert metrics["process_open_fds"] > 3 and metrics["process_cpu_seconds_total"] > 0
    assert metrics["hotswap_build_info"] == 1
    assert metrics["hotswap_reconcile_last_pass_timestamp_seconds"] > 1.7e9
