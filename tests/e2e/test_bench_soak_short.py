"""The short form of bench/soak.py: a few swaps under load, RSS, fds and threads per swap.

Runs the benchmark as a user would and checks what it writes, so it keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_short_soak_swaps_without_a_failed_request_and_reports_growth(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--short", "--swaps", "6", "--out",
         str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    [path] = sorted(out.glob("soak-*.json"))
    result = json.loads(path.read_text())
    assert result["schema"] == "hotswap-bench/soak/v1" and result["ok"] is True
    assert result["swaps_observed"] == 6 and result["failed"] == 0
    assert [s["swap"] for s in result["samples"]] == list(range(7))
    assert all(s["rss_bytes"] > 0 and s["fds"] > 0 and s["threads"] > 0 for s in result["samples"])
    assert result["growth"].keys() == {"rss_bytes", "fds", "threads"}
    assert result["growth"]["rss_bytes"]["per_swap"] is not None
    assert "growth" in proc.stdout and Path(result["png"]).is_file()
