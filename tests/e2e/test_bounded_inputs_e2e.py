"""Requests are bounded by what the model can take, measured on the real daemon.

The example classifier takes at most [8, 3, 224, 224] FP32 (`shapes.max`): 4.8 MB as binary
tensor data, about 33 MB as JSON text. Each abusive case prints the daemon's peak memory growth
(VmHWM after a reset, minus the RSS before) so that `pytest -s` shows what it cost; the asserts
hold it to a small multiple of what the model's own input needs. Headers must be complete
within --header-timeout and fit in 16 KiB.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from tests.support.daemon import Daemon
from tests.support.e2e import wait_served
from tests.support.kit import Kit, infer_body
from tests.support.raw_http import PeakMemory, RawAnswer, chunked, exchange, post_head

INFER = "/v2/models/classifier/infer"
MIB = 1024 * 1024
LARGEST = (8, 3, 224, 224)
ROW = 3 * 224 * 224 * 4  # bytes of one FP32 image


@pytest.fixture
def served(daemon, kit: Kit) -> Iterator[Daemon]:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(args=["--header-timeout", "1"])
    wait_served(d, "1")
    yield d


def measured(d: Daemon, case: str, send: Callable[[], RawAnswer]) -> tuple[RawAnswer, int]:
    assert d.proc is not None
    memory = PeakMemory(d.proc.pid)
    before = memory.reset()
    answer = send()
    growth = memory.peak() - before
    print(f"\n{case}: HTTP {answer.status} in {answer.seconds:.2f} s, sent {answer.sent / MIB:.1f}"
          f" MiB, daemon peak RSS +{growth / MIB:.1f} MiB")  # fmt: skip
    return answer, growth


def lazy_json_values(total: int) -> Iterator[bytes]:
    yield b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [8, 3, 224, 224], "data": ['
    for _ in range(total // MIB):
        yield b"0.1," * (MIB // 4)


def test_oversized_json_bodies_are_refused_before_they_cost_memory(served: Daemon) -> None:
    port = served.port
    huge = 200 * MIB
    declared, growth = measured(
        served, "200 MB JSON, Content-Length", lambda: exchange(port, post_head(INFER, huge))
    )
    assert declared.status == 413 and b"exceeds" in declared.body and declared.sent == 0
    assert growth < 16 * MIB
    streamed, growth = measured(
        served,
        "200 MB JSON, chunked",
        lambda: exchange(port, post_head(INFER, None), chunked(lazy_json_values(huge))),
    )
    assert streamed.status == 413 and streamed.sent < 64 * MIB
    assert growth < 96 * MIB
    values = b"".join(lazy_json_values(30 * MIB)) + b"0.1]}]}"  # 30 MB: under the byte limit
    many, growth = measured(
        served, "30 MB JSON of 7.9M values", lambda: exchange(port, post_head(INFER, len(values)), [values])
    )  # fmt: skip
    assert many.status == 413 and b"JSON values" in many.body
    assert growth < 96 * MIB


def test_the_largest_input_is_served_at_a_bounded_cost(served: Daemon) -> None:
    body = json.dumps(infer_body(0.1, batch=LARGEST[0])).encode()
    ok, growth = measured(
        served, f"largest JSON ({len(body) / MIB:.0f} MB)", lambda: exchange(served.port, post_head(INFER, len(body)), [body])
    )  # fmt: skip
    assert ok.status == 200, ok.body[:300]
    assert growth < 400 * MIB  # Python objects of 1.2M parsed numbers: see docs/inputs.md
    for batch, status in ((8, 200), (9, 413)):
        answer, growth = measured(
            served, f"binary batch {batch}", functools.partial(binary, served, batch)
        )
        assert answer.status == status, answer.body[:300]
        assert growth < 64 * MIB


def binary(d: Daemon, batch: int) -> RawAnswer:
    """A request of `batch` images as binary tensor data, sent with its Content-Length."""
    data = np.zeros((batch, *LARGEST[1:]), np.float32).tobytes()
    tensor = {"name": "input", "datatype": "FP32", "shape": [batch, *LARGEST[1:]]}
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps({"inputs": [tensor]}).encode()
    extra = {"inference-header-content-length": str(len(header))}
    return exchange(d.port, post_head(INFER, len(header) + len(data), extra), [header + data])


def test_slow_and_oversized_headers_do_not_hold_a_connection(served: Daemon) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nhost: x\r\n")  # and never more
        answer = sock.recv(4096)
        assert b"408" in answer.split(b"\r\n", 1)[0]
        assert sock.recv(4096) == b""  # closed
    assert time.monotonic() - started < 10
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.settimeout(15)
        assert sock.recv(4096) == b""  # an idle connection is closed too, silently
    big = post_head(INFER, 2, {"x-padding": "a" * 20_000})
    answer = exchange(served.port, big, [b"{}"])
    assert answer.status == 400
    assert served.client.get("/v2/health/live").status_code == 200
