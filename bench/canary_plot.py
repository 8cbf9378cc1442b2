"""The canary scenario's PNG: latency over time per response, coloured by the version that
answered, with the YAML writes, the rollout stages, the gate failures, reverts, the promotion
and the rollback marked; below it, each version's share of the answers in 0.5 s bins (the
stage weights at work).

Called by canary_under_load.main_canary through reporting.save_results, with the result dict
(the journal times it marks) and the run's Recs (the dots). Only draws: every figure it shows
is already in the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from load_generator import Rec
from plotting import (
    VERSION_COLORS,
    mark_failures,
    new_figure,
    save_figure,
    scatter_responses,
    side_legend,
)
from reporting import fmt


def plot_canary(result: dict[str, Any], series: dict[str, Any], png: Path) -> None:
    recs: list[Rec] = series["records"]
    can = result["canary"]
    fig, axes = new_figure(2, (15, 8), [3, 1.3], sharex=True)
    ax = axes[0]
    ok = [r for r in recs if r.ok]
    bad = [r for r in recs if not r.ok]
    scatter_responses(ax, ok, 12, counts=True)
    mark_failures(ax, ok, bad, 1.3)
    labelled: set[str] = set()

    def vline(axis: Any, x: float | None, what: str, **kw: Any) -> None:
        if x is None:
            return
        axis.axvline(x, label=None if what in labelled else what, **kw)
        labelled.add(what)

    for c in can["canaries"]:
        j = c["journal"]
        vline(ax, c["write_s"], "YAML write", color="tab:purple", ls="--", lw=1.1)
        ax.text(
            c["write_s"], 0.98, f" {c['name']}: {c['outcome']}", fontsize=8, color="tab:purple",
            transform=ax.get_xaxis_transform(), va="top",
        )  # fmt: skip
        for st in c["stages"]:
            ax.axvspan(
                st["begin_s"], st["end_s"], alpha=0.10,
                color="tab:red" if st["result"] == "failed" else "tab:green",
                label=None if "stage" in labelled else "rollout stage (red: gate failed)",
            )  # fmt: skip
            labelled.add("stage")
            vline(ax, st["begin_s"], "stage begins", color="gray", ls=":", lw=1)
        vline(ax, j["gate_failed_s"], "gate failed (traffic back)", color="red", lw=1.3)
        vline(ax, j["revert_done_s"], "revert journaled", color="darkred", ls="-.", lw=1)
        vline(ax, j["swap_done_s"], "promoted (swap)", color="tab:green", lw=1.5)
    rb = can.get("rollback")
    if rb is not None:
        vline(ax, rb["command_s"], "hotswap rollback run", color="black", ls="--", lw=1.1)
        vline(ax, rb["journal"]["swap_done_s"], "rollback: swap to the standby", color="tab:blue",
              lw=1.5)  # fmt: skip
        rev = rb["revert_seconds"]["mean_ms"]
        ax.text(
            rb["command_s"], 0.90,
            f" rollback -> v{rb['to_version']}: {rb['failed']} failed, first v1 200 after "
            f"{fmt(rb['client']['command_to_first_v1_200_ms'])} ms, daemon revert {fmt(rev)} ms",
            fontsize=8, color="black", transform=ax.get_xaxis_transform(), va="top", ha="right",
        )  # fmt: skip
    steady = can["latency"]["steady_v1"]["p99_ms"]
    if steady:
        ax.axhline(steady, color="gray", ls=":", lw=1, label=f"v1 steady p99 {steady:.1f} ms")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    cfg = result["config"]
    ax.set_title(
        f"canaries under load: {can['requests']} requests, {can['failed']} failed, concurrency "
        f"{cfg['concurrency']}, batch {cfg['batch']}, random images ({cfg['protocol']})",
        fontsize=10, loc="left",
    )  # fmt: skip
    ax.grid(True, which="both", alpha=0.25)
    side_legend(ax, markerscale=2)

    # Share of answers per version (and of failures) in 0.5 s bins: the stage weights at work.
    ax = axes[1]
    if recs:
        ends = np.array([r.end for r in recs])
        width = 0.5
        edges = np.arange(0.0, ends.max() + width, width)
        mids = (edges[:-1] + edges[1:]) / 2
        idx = np.digitize(ends, edges) - 1
        total = np.bincount(idx, minlength=len(mids))[: len(mids)].astype(float)
        total[total == 0] = np.nan
        kinds = [(f"v{v}", [r.ok and r.version == v for r in recs], VERSION_COLORS.get(v, "gray"))
                 for v in sorted({r.version for r in ok if r.version})]  # fmt: skip
        kinds.append(("failed", [not r.ok for r in recs], "red"))
        for name, mask, color in kinds:
            counts = np.bincount(idx[np.array(mask, bool)], minlength=len(mids))[: len(mids)]
            ax.plot(mids, 100 * counts / total, color=color, lw=1, label=name, ds="steps-mid")
    for c in can["canaries"]:
        ax.axvline(c["write_s"], color="tab:purple", ls="--", lw=1)
        for st in c["stages"]:
            ax.axvspan(st["begin_s"], st["end_s"], alpha=0.10, color="gray")
    if rb is not None:
        ax.axvline(rb["command_s"], color="black", ls="--", lw=1)
    ax.set_ylabel("% of answers (0.5 s)")
    ax.set_xlabel("seconds since load start")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.25)
    side_legend(ax)
    save_figure(fig, png)
