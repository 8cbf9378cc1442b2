"""The short form of bench/swap_under_load.py: 2 swaps under load, zero failed requests.

Runs the benchmark exactly as a user would (its own daemon, models and temp dirs) and checks
what it writes, so the benchmark keeps working as the product changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TOP_KEYS = {"schema", "timestamp", "config", "machine", "hotswap", "baselines", "targets", "ok"}
HOTSWAP_KEYS = {
    "requests",
    "failed",
    "throughput_rps",
    "latency",
    "swaps",
    "swaps_requested",
    "swaps_observed",
    "write_to_serving_ms",
    "detection_ms",
    "max_gap_between_responses_ms",
    "rss",
}
SWAP_KEYS = {
    "index",
    "target_version",
    "write_s",
    "first_new_response_s",
    "observed",
    "write_to_serving_ms",
    "detection_ms",
    "window_s",
    "requests",
    "failed",
    "latency",
}
RSS_KEYS = {"one_version_bytes", "second_version_onnx_bytes", "peak_during_swaps_bytes"}
TARGETS = {
    "failed_requests",
    "swap_p99_over_steady_p99",
    "hotswap_p50_over_bare_ort_p50",
    "peak_rss_over_one_version_plus_second",
    "detection_ms_max",
    "write_to_serving_ms",
}


def test_short_benchmark_swaps_twice_without_a_failed_request(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "swap_under_load.py"), "--short", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    results = sorted(out.glob("swap_under_load-*.json"))
    assert len(results) == 1, sorted(p.name for p in out.iterdir())
    result = json.loads(results[0].read_text())

    assert result.keys() >= TOP_KEYS
    assert result["schema"] == "hotswap-bench/swap-under-load/v1"
    assert result["config"]["short"] is True
    assert result["ok"] is True
    hot = result["hotswap"]
    assert hot.keys() >= HOTSWAP_KEYS
    assert hot["latency"].keys() >= {"steady", "swap_windows"}
    assert hot["rss"].keys() >= RSS_KEYS
    assert {t["target"] for t in result["targets"]} == TARGETS

    assert hot["requests"] > 0
    assert hot["failed"] == 0, hot["failures_by_kind"]
    assert hot["swaps_observed"] >= 2
    for swap in hot["swaps"]:
        assert swap.keys() >= SWAP_KEYS
        # the new version answered after each write, and no request failed around it
        assert swap["observed"], swap
        assert swap["first_new_response_s"] >= swap["write_s"], swap
        assert swap["failed"] == 0, swap
    assert [s["target_version"] for s in hot["swaps"]] == ["2", "1"]
    assert result["png"] and Path(result["png"]).is_file()
