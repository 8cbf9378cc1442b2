"""End-to-end: the real daemon, driven as an operator would (desired files, HTTP, CLI, signals).

Run with `pytest -s tests/test_e2e.py` to see the measured swap figures; they are also written
to `swap-metrics.json` / `swap-latency.json` in the test's tmp directory.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import httpx

from tests.support.daemon import Daemon
from tests.support.e2e import (
    LoadGenerator,
    VersionWatch,
    in_sync,
    infer_raw,
    last_seq,
    model_row,
    select,
    served,
    wait_passes,
    wait_records,
    wait_served,
    wait_status,
)
from tests.support.kit import Kit, infer_body, write_text


def started(daemon, kit: Kit, version: str = "1", resync: float = 30.0) -> Daemon:
    d: Daemon = daemon()
    kit.write(d.desired, version)
    d.start(resync=resync)
    wait_served(d, version)
    return d


def assert_journal_intact(d: Daemon) -> None:
    out = d.cli("journal", "--verify")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hash chain intact" in out.stdout


def test_serves_v1_over_v2_api(kit: Kit, daemon) -> None:
    d = started(daemon, kit, "1")
    r = d.client.post("/v2/models/classifier/infer", json=infer_body())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "classifier"
    assert body["model_version"] == "1"
    [out] = body["outputs"]
    assert out["name"] == "logits"
    assert out["shape"] == [1, 1000]
    assert out["datatype"] == "FP32"
    assert len(out["data"]) == 1000

    assert d.client.get("/v2/health/live").status_code == 200
    ready = d.client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert d.client.get("/v2/models/classifier/ready").status_code == 200

    meta = d.client.get("/v2/models/classifier")
    assert meta.status_code == 200
    m = meta.json()
    assert m["name"] == "classifier"
    assert m["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in m["inputs"]] == [
        ("input", "FP32", [-1, 3, 224, 224])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in m["outputs"]] == [
        ("logits", "FP32", [-1, 1000])
    ]
    # the version-qualified routes answer for the active version only
    assert d.client.get("/v2/models/classifier/versions/1").status_code == 200
    assert d.client.get("/v2/models/classifier/versions/2").status_code == 404
    assert d.client.get("/v2/models/nope").status_code == 404


def test_swap_under_load_drops_nothing(kit: Kit, daemon, tmp_path: Path) -> None:
    d = started(daemon, kit, "1")
    load = LoadGenerator(d, threads=4, max_s=25.0).start()
    try:
        d.wait_for(lambda: load.successes() >= 8, 15, "load warmed up on v1")
        written = time.monotonic()
        kit.write(d.desired, "2")
        d.wait_for(lambda: load.first_seen("2") is not None, 30, "a v2 response under load")
        time.sleep(1.0)  # keep the load on a little after the swap
    finally:
        result = load.stop()
    first_v2 = load.first_seen("2")
    assert first_v2 is not None
    metrics = {
        "threads": 4,
        "total_requests": result.total,
        "failed_requests": len(result.failures),
        "write_to_first_v2_response_s": round(first_v2 - written, 3),
        "responses_v1": sum(v == "1" for t in result.per_thread for _, v in t),
        "responses_v2": sum(v == "2" for t in result.per_thread for _, v in t),
    }
    (tmp_path / "swap-metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\n[swap under load] {json.dumps(metrics)} -> {tmp_path / 'swap-metrics.json'}")

    assert not result.failures, f"{len(result.failures)} failed: {result.failures[:5]}"
    assert metrics["responses_v1"] > 0 and metrics["responses_v2"] > 0, metrics
    for i, seq in enumerate(result.per_thread):
        versions = [v for _, v in seq]
        assert set(versions) <= {"1", "2"}, versions
        if "2" in versions:
            after = versions[versions.index("2") :]
            assert "1" not in after, f"thread {i} saw v1 again after v2: {versions}"
    assert_journal_intact(d)


def test_swap_latency_write_to_first_response(kit: Kit, daemon, tmp_path: Path) -> None:
    d = started(daemon, kit, "1")
    d.wait_for(lambda: in_sync(d, version="1"), 30, "v1 in sync")
    timings: list[float] = []
    for target in ("2", "1", "2"):
        since = last_seq(d)
        written = time.monotonic()
        kit.write(d.desired, target)
        deadline = written + 30
        while time.monotonic() < deadline and served(d) != target:
            time.sleep(0.005)
        timings.append(time.monotonic() - written)
        assert served(d) == target
        # let the update finish (retire) before the next one, so it does not wait on it
        wait_records(
            d, f"retire v{target}", step="retire", phase="done", to_version=target, after_seq=since
        )
    figures = {
        "swaps": "1->2->1->2",
        "write_to_first_response_s": [round(t, 3) for t in timings],
        "median_s": round(statistics.median(timings), 3),
    }
    (tmp_path / "swap-latency.json").write_text(json.dumps(figures, indent=2))
    print(f"\n[swap latency] {json.dumps(figures)} -> {tmp_path / 'swap-latency.json'}")
    assert max(timings) < 30


def test_bad_versions_are_rejected_and_quarantined(kit: Kit, daemon) -> None:
    d = started(daemon, kit, "2", resync=0.5)
    d.wait_for(lambda: in_sync(d, version="2"), 30, "v2 in sync")

    # v3 outputs NaN: the health check rejects it, the candidate is dropped, v2 never stops
    with VersionWatch(d) as watch:
        since = last_seq(d)
        kit.write(d.desired, "3")
        [failed] = wait_records(
            d, "health-check of v3 failed", step="health-check", phase="failed", to_version="3"
        )
        wait_records(d, "revert after v3", step="revert", phase="done", to_version="3")
        assert "NaN" in failed["detail"]["message"]
        assert failed["detail"]["reason"] == "health-nan"
        status = wait_status(
            d,
            lambda s: model_row(s)["state"] == "failed (quarantined)",
            "v3 quarantined in status",
        )
        row = model_row(status)
        assert row["desired"] == "3"
        assert row["active"]["version"] == "2"
        assert "NaN" in (row["last_error"] or "")
        # no retry loop: several resyncs (0.5 s) later, v3 was tried exactly once
        wait_passes(d, 4)
        recs = select(d.journal_records(), after_seq=since, to_version="3")
        assert len(select(recs, step="health-check", phase="begin")) == 1, recs
        assert len(select(recs, step="fetch", phase="begin")) == 1, recs
        assert not select(recs, step="swap")
    watch.assert_only("2")

    text = d.cli("status")
    assert text.returncode == 0
    assert "classifier" in text.stdout
    assert "v3" in text.stdout and "v2" in text.stdout
    assert "failed (quarantined)" in text.stdout
    plan = d.cli("plan")
    assert plan.returncode == 1, plan.stdout + plan.stderr  # nothing to do, and not in sync
    assert "classifier v3 is quarantined" in plan.stdout and "NaN" in plan.stdout
    assert "last error:" in text.stdout and "NaN" in text.stdout

    # v4 breaks the interface (output `scores` instead of `logits`): verify rejects it
    with VersionWatch(d) as watch:
        kit.write(d.desired, "4")
        [failed] = wait_records(
            d, "verify of v4 failed", step="verify", phase="failed", to_version="4"
        )
        message = failed["detail"]["message"]
        assert "logits" in message or "scores" in message, message
        wait_status(
            d,
            lambda s: (
                model_row(s)["state"] == "failed (quarantined)" and model_row(s)["desired"] == "4"
            ),
            "v4 quarantined in status",
        )
    watch.assert_only("2")
    recs = select(d.journal_records(), to_version="4")
    assert not select(recs, step="warm"), "a version that failed verify must never be loaded"

    # a new, good digest clears the quarantine
    kit.write(d.desired, "1")
    wait_served(d, "1")
    d.wait_for(lambda: in_sync(d, version="1"), 30, "v1 in sync")
    assert_journal_intact(d)


def test_deleting_the_file_unloads_and_readding_loads(kit: Kit, daemon) -> None:
    d = started(daemon, kit, "1")
    (d.desired / "classifier.yaml").unlink()
    d.wait_for(
        lambda: infer_raw(d.client).status_code == 404,
        30,
        "classifier unloaded",
    )
    assert d.client.get("/v2/models/classifier").status_code == 404
    assert d.client.get("/v2/models/classifier/ready").status_code == 404
    wait_records(d, "unload done", step="unload", phase="done", model="classifier")
    assert d.alive()

    kit.write(d.desired, "1")
    wait_served(d, "1")
    assert d.client.get("/v2/models/classifier").status_code == 200
    assert_journal_intact(d)


def test_two_models_reconcile_independently(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1", name="classifier")
    kit.write(d.desired, "1", name="classifier-b")
    d.start()
    wait_served(d, "1", model="classifier")
    wait_served(d, "1", model="classifier-b")

    with VersionWatch(d, model="classifier") as watch:
        kit.write(d.desired, "3", name="classifier")  # broken
        kit.write(d.desired, "2", name="classifier-b")  # good
        wait_served(d, "2", model="classifier-b")
        wait_records(
            d,
            "classifier v3 rejected",
            step="health-check",
            phase="failed",
            to_version="3",
            model="classifier",
        )
    watch.assert_only("1")
    assert served(d, "classifier") == "1"
    assert served(d, "classifier-b") == "2"
    recs = d.journal_records()
    assert not select(recs, model="classifier", step="swap", to_version="3")
    assert select(recs, model="classifier-b", step="swap", phase="done", to_version="2")
    assert not select(recs, model="classifier-b", phase="failed")
    status = d.status()
    assert model_row(status, "classifier")["state"] == "failed (quarantined)"
    wait_status(d, lambda s: model_row(s, "classifier-b")["state"] == "in sync", "b in sync")


def test_second_daemon_on_same_state_dir_is_refused(kit: Kit, daemon) -> None:
    first = started(daemon, kit, "1")
    second: Daemon = daemon(desired=first.desired, state=first.state)
    second.start()
    assert second.wait_exit(timeout=30) == 2
    log = second.log_path.read_text()
    assert "another hotswap daemon" in log, log
    assert first.proc is not None and f"pid {first.proc.pid}" in log, log
    assert "lock" in log or "state dir" in log
    assert first.alive()
    assert served(first) == "1"


def test_plan_exit_codes(kit: Kit, daemon) -> None:
    d = started(daemon, kit, "1")
    d.wait_for(lambda: d.cli("plan").returncode == 0, 30, "plan in sync (exit 0)")
    out = d.cli("plan")
    assert "in sync" in out.stdout

    d.stop()  # SIGTERM: a clean shutdown, the cleanup ran to the end
    assert d.proc is not None and d.proc.returncode == 0, d.log_tail()
    assert "daemon.stopped" in d.log_tail(5), d.log_tail()
    kit.write(d.desired, "2")
    out = d.cli("plan")
    assert out.returncode == 3, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("- ")]
    steps = [line.split()[1] for line in lines]
    assert steps == ["fetch", "verify", "build", "warm", "health-check", "swap", "retire"], lines
    assert all("classifier" in line for line in lines)
    assert "v2" in lines[0]

    js = d.cli("plan", "--json")
    assert js.returncode == 3
    assert [s["step"] for s in json.loads(js.stdout)["steps"]][-2:] == ["swap", "retire"]

    write_text(d.desired / "classifier.yaml", "apiVersion: hotswap/v1\nkind: [oops\n")
    out = d.cli("plan")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "classifier.yaml" in out.stderr and "YAML syntax error" in out.stderr

    status = d.cli("status")
    assert status.returncode == 0
    assert "not running" in status.stdout
    assert "invalid desired state" in status.stdout
    assert_journal_intact(d)


def test_restart_restores_the_promoted_version_first(kit: Kit, daemon) -> None:
    d = started(daemon, kit, "1")
    kit.write(d.desired, "2")
    wait_served(d, "2")
    d.wait_for(lambda: in_sync(d, version="2"), 30, "v2 in sync")
    d.stop()
    assert d.proc is not None and d.proc.returncode == 0, d.log_tail()
    stopped_seq = last_seq(d)

    # While it is down, desired state asks for v3, which will fail its health check: whatever
    # serves after the restart can only come from restoring v2 from the journal.
    kit.write(d.desired, "3")
    d.start(resync=30.0)
    first: str | None = None
    refused: list[int] = []
    with httpx.Client(base_url=d.url, timeout=10.0) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and first is None:
            try:
                r = infer_raw(client)
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            if r.status_code == 200:
                first = r.json()["model_version"]
            else:
                refused.append(r.status_code)
                time.sleep(0.02)
    assert first == "2", f"first answer after restart: {first!r} (refused: {refused})"
    # the daemon restores before it serves: no request saw the model missing or not ready
    assert not refused, refused

    recs = d.journal_records()
    restored = select(recs, step="restore", phase="done", after_seq=stopped_seq)
    assert restored and restored[0]["to_version"] == "2", restored
    with VersionWatch(d) as watch:
        wait_records(
            d,
            "v3 rejected after restart",
            step="health-check",
            phase="failed",
            to_version="3",
            after_seq=stopped_seq,
        )
    watch.assert_only("2")

    status = d.cli("status")
    assert status.returncode == 0
    assert "running, pid" in status.stdout
    assert "classifier" in status.stdout and "v2" in status.stdout and "v3" in status.stdout
    assert_journal_intact(d)
