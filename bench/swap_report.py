"""The swap scenario's verdict and its output: the targets, the printed report, the PNG.

Called by swap_under_load.run_swap_scenario once the hotswap run and the baselines are done,
with the result dict (what the JSON holds) and, for the plot, the raw series (every Rec, the
Swaps, the RSS samples) that the JSON leaves out. The targets are measured and printed, not
asserted: only --short fails a run, and on failed requests or unobserved swaps alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from load_generator import Rec
from plotting import mark_failures, new_figure, save_figure, scatter_responses, side_legend
from reporting import TargetRows, fmt, mib, print_targets, ratio

TARGETS = {
    "failed_requests": 0,
    "swap_p99_over_steady_p99": 1.25,
    "hotswap_p50_over_bare_ort_p50": 1.05,
    "peak_rss_over_one_version_plus_second": 1.10,
    "detection_ms_max": 100.0,
}


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    hot = result["hotswap"]
    bare = (result.get("baselines") or {}).get("bare_ort")
    steady, window = hot["latency"]["steady"], hot["latency"]["swap_windows"]
    rows = TargetRows()

    rows.add(
        "failed_requests",
        hot["failed"],
        TARGETS["failed_requests"],
        hot["failed"] == 0,
        f"{hot['requests']} requests, {hot['swaps_observed']}/{hot['swaps_requested']} swaps observed",
    )
    r = ratio(window["p99_ms"], steady["p99_ms"])
    rows.add(
        "swap_p99_over_steady_p99",
        r,
        TARGETS["swap_p99_over_steady_p99"],
        None if r is None else r <= TARGETS["swap_p99_over_steady_p99"],
        f"p99 {window['p99_ms']} ms in swap windows vs {steady['p99_ms']} ms steady",
    )
    if bare:
        r = ratio(steady["p50_ms"], bare["latency"]["p50_ms"])
        r99 = ratio(steady["p99_ms"], bare["latency"]["p99_ms"])
        rows.add(
            "hotswap_p50_over_bare_ort_p50",
            r,
            TARGETS["hotswap_p50_over_bare_ort_p50"],
            None if r is None else r <= TARGETS["hotswap_p50_over_bare_ort_p50"],
            f"p50 {steady['p50_ms']} vs {bare['latency']['p50_ms']} ms; p99 ratio {r99}",
        )
    else:
        rows.add(
            "hotswap_p50_over_bare_ort_p50",
            None,
            TARGETS["hotswap_p50_over_bare_ort_p50"],
            None,
            "baselines not run",
        )
    rss = hot["rss"]
    r = rss["peak_over_budget"]
    rows.add(
        "peak_rss_over_one_version_plus_second",
        r,
        TARGETS["peak_rss_over_one_version_plus_second"],
        None if r is None else r <= TARGETS["peak_rss_over_one_version_plus_second"],
        f"peak {mib(rss['peak_during_swaps_bytes'])} vs {mib(rss['one_version_bytes'])} + "
        f"{mib(rss['second_version_onnx_bytes'])} MiB",
    )
    det = hot["detection_ms"]
    rows.add(
        "detection_ms_max",
        det["max"],
        TARGETS["detection_ms_max"],
        None if det["max"] is None else det["max"] <= TARGETS["detection_ms_max"],
        f"median {det['median']} ms over {det['count']} swaps",
    )
    w2s = hot["write_to_serving_ms"]
    rows.add(
        "write_to_serving_ms",
        w2s["median"],
        None,
        None,
        f"reported: min {w2s['min']} / median {w2s['median']} / max {w2s['max']} ms",
    )
    return rows


def print_report(result: dict[str, Any]) -> None:
    hot = result["hotswap"]
    cfg = result["config"]
    print()
    print(
        f"swap under load: concurrency {cfg['concurrency']}, {cfg['duration_s']} s, "
        f"{cfg['swaps']} swaps, batch {cfg['batch']}, {cfg['protocol']} tensors "
        f"({cfg['request_body_bytes']:,} bytes), {result['machine']['cpu_count']} CPUs"
    )
    print(
        f"hotswap: {hot['requests']} requests, {hot['failed']} failed, "
        f"{hot['throughput_rps']} req/s, swaps observed {hot['swaps_observed']}/{hot['swaps_requested']}"
    )
    header = f"{'':34}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
    print(header)

    def line(name: str, s: dict[str, Any]) -> None:
        print(
            f"{name:34}{fmt(s['count']):>8}{fmt(s['p50_ms']):>10}{fmt(s['p99_ms']):>10}{fmt(s['max_ms']):>10}"
        )

    line("hotswap steady", hot["latency"]["steady"])
    line("hotswap swap windows", hot["latency"]["swap_windows"])
    base = result.get("baselines") or {}
    if base.get("bare_ort"):
        line("bare ONNX Runtime", base["bare_ort"]["latency"])
        codec = base["bare_ort"]["protocol_codec_ms"]
        if "count" in codec:
            line(f"  V2 {codec['protocol']} codec alone (1 thread)", codec)
    plain = base.get("plain_restart")
    if plain:
        line("plain server steady", plain["latency"]["steady"])
        line("plain server update windows", plain["latency"]["swap_windows"])
    print()
    w2s, det = hot["write_to_serving_ms"], hot["detection_ms"]
    gap = hot["max_gap_between_responses_ms"]
    print(f"{'per update (min/median/max)':28}{'hotswap':>26}", end="")
    print(f"{'plain restart':>26}" if plain else "")

    def trio(s: dict[str, Any]) -> str:
        return f"{fmt(s['min'])}/{fmt(s['median'])}/{fmt(s['max'])}"

    rows = [
        ("write -> new version (ms)", w2s, plain["write_to_serving_ms"] if plain else None),
        (
            "longest no-response gap (ms)",
            gap,
            plain["max_gap_between_responses_ms"] if plain else None,
        ),
        ("detection (ms)", det, None),
    ]
    for name, h, p in rows:
        print(f"{name:28}{trio(h):>26}", end="")
        print(f"{trio(p) if p else '-':>26}" if plain else "")
    if plain:
        print(
            f"{'failed requests':28}{hot['failed']:>26}{plain['failed']:>26}"
            f"   (plain: {plain['swaps_requested']} updates, {plain['requests']} requests)"
        )
    rss = hot["rss"]
    print(
        f"daemon RSS: one version {mib(rss['one_version_bytes'])} MiB, v2 ONNX "
        f"{mib(rss['second_version_onnx_bytes'])} MiB, peak in swaps "
        f"{mib(rss['peak_during_swaps_bytes'])} MiB, peak {mib(rss['peak_bytes'])} MiB"
    )
    print(
        f"            idle with v1 {mib(rss.get('idle_one_version_bytes'))} MiB; a loaded v2 session "
        f"adds {mib(rss.get('second_version_loaded_footprint_bytes'))} MiB (peak / (one + that) = "
        f"{fmt(rss.get('peak_over_one_version_plus_loaded_footprint'))}); peak in first swap "
        f"{mib(rss.get('peak_in_first_swap_bytes'))} MiB, in last {mib(rss.get('peak_in_last_swap_bytes'))} MiB"
    )
    print()
    print_targets(result["targets"], "target", 40)


def plot(result: dict[str, Any], series: dict[str, Any], png: Path) -> None:
    hot = series["hotswap"]
    plain = series.get("plain_restart")
    rows = 3 if plain else 2
    fig, axes = new_figure(rows, (15, 3.6 * rows), [3, 1.4, 3][:rows])
    cfg = result["config"]
    bare = (result.get("baselines") or {}).get("bare_ort")
    bare_p50 = bare["latency"]["p50_ms"] if bare else None

    def latency_panel(
        ax: Any, data: dict[str, Any], summary: dict[str, Any], label: str, what: str
    ) -> None:
        recs: list[Rec] = data["records"]
        ok = [r for r in recs if r.ok]
        bad = [r for r in recs if not r.ok]
        scatter_responses(ax, ok, 14, counts=False)
        if ok:
            ends = np.array([r.end for r in ok])
            lats = np.array([r.latency * 1000 for r in ok])
            span = float(ends.max() - ends.min())
            width = max(0.25, span / 120, 10 * span / len(ok))  # ~10+ responses per bin
            edges = np.arange(0.0, ends.max() + width, width)
            mids, p99 = [], []
            for lo, hi in itertools.pairwise(edges):
                sel = lats[(ends >= lo) & (ends < hi)]
                if sel.size >= 3:
                    mids.append((lo + hi) / 2)
                    p99.append(np.percentile(sel, 99))
            ax.plot(mids, p99, color="black", lw=1.1, label=f"rolling p99 ({width:.2f} s bins)")
        steady = summary["latency"]["steady"]["p99_ms"]
        if steady:
            ax.axhline(steady, color="gray", ls=":", lw=1, label=f"steady p99 {steady:.0f} ms")
        if bare_p50:
            ax.axhline(
                bare_p50, color="tab:red", ls="-.", lw=1, label=f"bare ORT p50 {bare_p50:.1f} ms"
            )
        mark_failures(ax, ok, bad, 1.15)
        for k, (sw, info) in enumerate(zip(data["swaps"], summary["swaps"], strict=True)):
            ax.axvline(sw.write, color="tab:orange", ls="--", lw=1, label=what if k == 0 else None)
            lo, hi = info["window_s"]
            ax.axvspan(
                lo, hi, color="tab:orange", alpha=0.12, label="swap window" if k == 0 else None
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms)")
        ax.set_title(label, fontsize=10, loc="left")
        ax.grid(True, which="both", alpha=0.25)
        side_legend(ax, markerscale=2)

    hs = result["hotswap"]
    latency_panel(
        axes[0], hot, hs,
        f"hotswap daemon: {hs['requests']} requests, {hs['failed']} failed, "
        f"{hs['swaps_observed']} swaps (v1<->v2), concurrency {cfg['concurrency']}, batch {cfg['batch']}",
        "YAML write",
    )  # fmt: skip
    ax = axes[1]
    if hot["rss"]:
        t, v = zip(*hot["rss"], strict=True)
        ax.plot(t, np.array(v) / 2**20, color="tab:purple", lw=1, label="daemon RSS")
    rss = hs["rss"]
    if rss["budget_bytes"]:
        ax.axhline(
            rss["budget_bytes"] * TARGETS["peak_rss_over_one_version_plus_second"] / 2**20,
            color="red", ls=":", lw=1, label="target: 1.10 x (one version + v2 ONNX)",
        )  # fmt: skip
    for sw in hot["swaps"]:
        ax.axvline(sw.write, color="tab:orange", ls="--", lw=1)
    ax.set_ylabel("RSS (MiB)")
    ax.set_xlabel("seconds since load start")
    ax.grid(True, alpha=0.25)
    side_legend(ax)
    axes[1].sharex(axes[0])
    if plain:
        ps = result["baselines"]["plain_restart"]
        latency_panel(
            axes[2], plain, ps,
            f"baseline: plain server, update = cp new model + restart: {ps['requests']} requests, "
            f"{ps['failed']} failed, {ps['swaps_requested']} updates",
            "cp + restart",
        )  # fmt: skip
        axes[2].set_xlabel("seconds since load start")
    save_figure(fig, png)
