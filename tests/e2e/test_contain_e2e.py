"""A signed model that misbehaves only when run, against the real daemon: contained.

A hanging candidate is quarantined (`probe-timeout`) and the fixed version pushed next is
served; a memory-hungry one is quarantined (`probe-memory`) while the daemon's own RSS stays
where it was; a stuck candidate is abandoned for a newer desired version and does not hold up
SIGTERM; a candidate the daemon dies in at every boot is quarantined after three (`crash-loop`).
The version served before answers throughout. Tiny models on ONNX Runtime (tests/support).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from reconciler.core.reasons import CRASH_LOOP_BOOTS
from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, select, served, wait_records
from tests.support.hostile_models import publish_hostile
from tests.support.kit import write_text
from tests.support.tiny_models import TinyRegistry, deployment_yaml

MODEL = "m"
BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()


@pytest.fixture
def registry(tmp_path: Path) -> TinyRegistry:
    return TinyRegistry.create(tmp_path / "publisher")


@pytest.fixture
def device(tmp_path: Path, registry: TinyRegistry) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "desired", tmp_path / "state", tmp_path / "daemon.log")
    d.desired.mkdir(parents=True)
    (d.state / "trust").mkdir(parents=True)
    shutil.copyfile(registry.public_key, d.state / "trust" / "publisher.pub")
    yield d
    d.stop()


def deploy(d: Daemon, registry: TinyRegistry, version: str, hostile: str | None = None) -> None:
    if hostile is not None:
        publish_hostile(registry, MODEL, version, hostile)
    write_text(d.desired / f"{MODEL}.yaml", deployment_yaml(registry, MODEL, version))


def wait_version(d: Daemon, version: str, timeout: float = 30.0) -> None:
    d.wait_for(lambda: served(d, MODEL, BODY) == version, timeout, f"v{version} serving")


def failed_warm(d: Daemon, version: str, reason: str, timeout: float = 30.0) -> dict[str, Any]:
    (record,) = wait_records(
        d, f"warm of v{version} failed ({reason})", timeout,
        step="warm", phase="failed", to_version=version, model=MODEL,
    )  # fmt: skip
    assert record["detail"]["reason"] == reason, record
    return record


def start_serving_v1(d: Daemon, registry: TinyRegistry, *args: str) -> None:
    deploy(d, registry, "1")
    d.start(resync=2.0, args=list(args))
    wait_version(d, "1")


def test_a_hanging_candidate_is_quarantined_and_the_fix_served(
    device: Daemon, registry: TinyRegistry
) -> None:
    start_serving_v1(device, registry, "--probe-timeout", "6")  # room on a loaded machine
    with VersionWatch(device, MODEL, body=BODY) as watch:
        deploy(device, registry, "2", "hang")
        record = failed_warm(device, "2", "probe-timeout")
    watch.assert_only("1")
    assert record["detail"]["terminal"] is True and "6 s" in record["detail"]["message"]
    deploy(device, registry, "3")
    wait_version(device, "3")


def test_a_memory_hungry_candidate_is_quarantined_and_the_daemon_stays_small(
    device: Daemon, registry: TinyRegistry
) -> None:
    start_serving_v1(device, registry)
    assert device.proc is not None
    process = psutil.Process(device.proc.pid)
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        deploy(device, registry, "2", "memory")  # 4 GiB at its first inference
        record = failed_warm(device, "2", "probe-memory")
    finally:
        done.set()
        sampler.join(5)
    assert "GiB" in record["detail"]["message"]
    grew = peak[0] - baseline
    print(f"daemon RSS {baseline / 2**20:.0f} MiB, peak {peak[0] / 2**20:.0f} MiB while probed")
    assert grew < 200 * 2**20, f"the daemon grew by {grew / 2**20:.0f} MiB"
    assert served(device, MODEL, BODY) == "1"


def test_a_stuck_candidate_gives_way_to_the_next_version_and_to_sigterm(
    device: Daemon, registry: TinyRegistry
) -> None:
    start_serving_v1(device, registry)  # the default probe timeout: 60 s
    deploy(device, registry, "2", "hang")
    wait_records(device, "warm of v2 begun", step="warm", phase="begin", to_version="2")
    started = time.monotonic()
    deploy(device, registry, "3")
    wait_version(device, "3", timeout=40)
    assert time.monotonic() - started < 40, "v3 waited for the stuck v2's probe to time out"
    failed_warm(device, "2", "superseded")
    deploy(device, registry, "4", "hang")
    wait_records(device, "warm of v4 begun", step="warm", phase="begin", to_version="4")
    assert device.proc is not None
    stopping = time.monotonic()
    device.proc.send_signal(signal.SIGTERM)
    code = device.wait_exit(timeout=30)
    took = time.monotonic() - stopping
    assert code == 0 and took < 10, f"exit {code} after {took:.1f} s\n{device.log_tail()}"
    stopped = select(device.journal_records(), step="warm", phase="failed", to_version="4")
    assert [r["detail"]["reason"] for r in stopped] == ["stopping"]


def test_a_candidate_the_daemon_dies_in_at_every_boot_is_quarantined(
    device: Daemon, registry: TinyRegistry
) -> None:
    start_serving_v1(device, registry)
    device.stop()
    deploy(device, registry, "2")
    crash = {"HOTSWAP_CRASHPOINT": "warm:inference"}  # the process dies in warm-up, every boot
    for boot in range(CRASH_LOOP_BOOTS):
        device.start(env=crash, resync=2.0)
        code = device.wait_exit(timeout=60)
        assert code == -signal.SIGKILL, f"boot {boot + 1}: exit {code}\n{device.log_tail()}"
    device.start(env=crash, resync=2.0)  # still armed: the version is not tried again
    wait_version(device, "1")
    (record,) = wait_records(device, "crash-loop quarantine", step="warm", phase="failed")
    assert record["detail"]["reason"] == "crash-loop" and record["to_version"] == "2"
    assert record["detail"]["boots"] == CRASH_LOOP_BOOTS and record["detail"]["terminal"]
    (row,) = [r for r in device.status()["models"] if r["model"] == MODEL]
    assert row["state"] == "failed (quarantined)" and device.alive(), row


def test_a_promoted_version_the_daemon_dies_restoring_at_every_boot_is_not_restored_again(
    device: Daemon, registry: TinyRegistry
) -> None:
    """The restore runs the model too: a last good version that now kills the process as it
    is loaded (a driver update, a damaged engine) stops being restored after three boots, the
    daemon stays up, and a new desired version is deployed as usual."""
    start_serving_v1(device, registry)
    device.stop()
    crash = {"HOTSWAP_CRASHPOINT": "restore:begin"}  # dies restoring v1, every boot
    for boot in range(CRASH_LOOP_BOOTS):
        device.start(env=crash, resync=2.0)
        code = device.wait_exit(timeout=60)
        assert code == -signal.SIGKILL, f"boot {boot + 1}: exit {code}\n{device.log_tail()}"
    device.start(env=crash, resync=2.0)  # still armed: v1 is not restored, nothing dies
    (record,) = wait_records(device, "crash-loop quarantine", step="restore", phase="failed")
    assert record["detail"]["reason"] == "crash-loop" and record["to_version"] == "1"
    assert '"event": "restore.skipped-quarantined"' in device.log_tail(200)
    device.wait_for(lambda: any(
        r["model"] == MODEL and r["state"] == "failed (quarantined)" for r in device.status()["models"]
    ), what="v1 shown quarantined")  # fmt: skip
    assert device.alive()
    deploy(device, registry, "2")  # desired moves on: served as any update
    wait_version(device, "2")
    assert device.alive()
