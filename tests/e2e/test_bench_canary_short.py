"""The short form of bench/swap_under_load.py --scenario canary: v5 "flaky" rolled out as a
canary under random-image load is reverted by its error-rate gate.

Runs the benchmark exactly as a user would (its own daemon, models and temp dirs) and checks
what it writes, so the canary benchmark keeps working as the product changes (~20 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_short_canary_benchmark_reverts_the_flaky_version(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "swap_under_load.py"), "--scenario", "canary",
         "--short", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    results = sorted(out.glob("canary_under_load-*.json"))
    assert len(results) == 1, sorted(p.name for p in out.iterdir())
    result = json.loads(results[0].read_text())

    assert result["schema"] == "hotswap-bench/canary-under-load/v1"
    assert result["config"]["short"] is True and result["config"]["canaries"] == ["5"]
    assert result["ok"] is True
    run = result["canary"]
    assert run["requests"] > 0 and run["hot_requests"] > 0
    (v5,) = run["canaries"]
    assert v5["target_version"] == "5" and v5["outcome"] == "reverted", v5["journal"]
    gate = v5["journal"]["gate_failure"]
    assert gate["reason"] == "rollout-gate" and "error rate" in gate["message"], gate
    assert v5["stages"][0]["result"] == "failed"
    assert v5["journal"]["revert_done_s"] >= v5["journal"]["gate_failed_s"]
    # every failure is v5's HTTP 500 on an image that trips it; v1 answered the rest
    assert run["failed"] == v5["failed"] == v5["failed_with_hot_input"] > 0
    assert set(run["failures_by_kind"]) == {"HTTP 500"}
    assert run["served_at_end"] == "1"
    assert run["rollback"] is None  # the warm-standby rollback follows a promotion: full run only
    revert = v5["revert_seconds"]
    assert revert["count"] == 1 and revert["mean_ms"] is not None and revert["bucket_s"], revert
    assert result["png"] and Path(result["png"]).is_file()
