"""The figures of bench/fleet_sim.py from what it recorded: the MQTT tap, the rollouts' commit
lines, the wake probes and the light load; its printed report and its PNG."""

from __future__ import annotations

from collections import Counter
from typing import Any

from example_kit import MODEL
from reporting import TargetRows, print_targets, spread


def _reports(tap: list[tuple[float, str, int, Any]]) -> list[tuple[float, str, dict[str, Any]]]:
    """(time, device, its classifier entry) of every online state report."""
    out = []
    for t, _topic, _size, body in tap:
        if isinstance(body, dict) and body.get("status") == "online":
            out.append((t, str(body.get("device")), (body.get("models") or {}).get(MODEL) or {}))
    return out


def ring_latencies(reports: list[Any], rollout: dict[str, Any], ring_of: dict[str, str],
                   version: str) -> dict[str, Any]:  # fmt: skip
    """Per ring: seconds from its commit to each device's first report of `version` active."""
    rings: dict[str, Any] = {}
    for commit in (c for c in rollout["commits"] if not c["revert"]):
        members = [d for d, r in ring_of.items() if r == commit["ring"]]
        serving: dict[str, float] = {}
        for t, device, model in reports:
            fresh = device in members and device not in serving and t >= commit["t"]
            if fresh and model.get("active") == version and model.get("state") == "serving":
                serving[device] = t - commit["t"]
        values = list(serving.values())
        rings[commit["ring"]] = {
            "devices": len(members), "serving": len(values), "per_device_s": spread(values),
            "all_serving_s": round(max(values), 3) if len(values) == len(members) else None,
        }  # fmt: skip
    return rings


def message_figures(tap: list[tuple[float, str, int, Any]], devices: int) -> dict[str, Any]:
    states = [(t, size) for t, topic, size, _ in tap if topic.endswith("/state")]
    wakes = [(t, size) for t, topic, size, _ in tap if topic.endswith("/sync")]
    per_second = Counter(int(t) for t, _ in states)
    span = (tap[-1][0] - tap[0][0]) if len(tap) > 1 else 0.0
    return {
        "state_messages": len(states),
        "state_bytes": spread([float(s) for _, s in states]),
        "wake_messages": len(wakes),
        "wake_bytes": spread([float(s) for _, s in wakes]),
        "state_per_device": round(len(states) / max(1, devices), 1),
        "peak_state_per_s": max(per_second.values(), default=0),
        "mean_state_per_s": round(len(states) / span, 2) if span else None,
        "span_s": round(span, 1),
    }


def summarize(*, devices: list[Any], sizes: dict[str, int], tap: list[Any], good: dict[str, Any],
              bad: dict[str, Any], wakes: list[float], load: Any, untouched: dict[str, bool],
              resync_s: float, git_log: str, source: str = "git") -> dict[str, Any]:  # fmt: skip
    ring_of = {d.name: d.ring for d in devices}
    reports = _reports(tap)
    first_ring = next(iter(sizes))
    bad_seen = sorted(
        {dev for _, dev, m in reports if m.get("desired") == "3" and ring_of.get(dev) != first_ring}
    )
    canary_final = {dev: m.get("active") for _, dev, m in reports if ring_of.get(dev) == first_ring}
    bad_rings = sorted({c["ring"] for c in bad["commits"]})
    result = {
        "devices": len(devices), "rings": sizes, "resync_s": resync_s, "source": source,
        "good": {"rc": good["rc"], "rings": ring_latencies(reports, good, ring_of, "2"),
                 "duration_s": round(good["ended"] - good["started"], 1), "stdout": good["stdout"]},
        "bad": {"rc": bad["rc"], "rings_committed": bad_rings, "stderr": bad["stderr"],
                "other_rings_saw_v3": bad_seen, "ring_files_as_before": untouched,
                "first_ring_back_on": sorted(set(canary_final.values()))},
        "wake_to_look_s": spread(wakes),
        "polling_expected_s": {"mean": resync_s / 2, "max": round(resync_s * 1.1, 1)},
        "load": {"sent": load.sent, "failed": load.failed, "failures": load.failures[:20]},
        "mqtt": message_figures(tap, len(devices)),
        "git_log": git_log.splitlines(),
    }  # fmt: skip
    result["ok"] = bool(
        good["rc"] == 0
        and bad["rc"] == 1
        and load.failed == 0
        and bad_rings == [first_ring]
        and not bad_seen
        and all(untouched.values())
        and result["bad"]["first_ring_back_on"] == ["2"]
    )
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"\nfleet_sim: {result['devices']} devices {result['rings']}, polling every {result['resync_s']:g}s, source {result.get('source', 'worktree')}"
    )
    for ring, r in result["good"]["rings"].items():
        print(f"  v2 ring {ring:7} {r['serving']}/{r['devices']} serving; commit -> device serving "
              f"median {r['per_device_s']['median']}s max {r['per_device_s']['max']}s")  # fmt: skip
    w = result["wake_to_look_s"]
    print(f"  wake -> device looks: median {w['median']}s max {w['max']}s"
          f" (polling: mean {result['polling_expected_s']['mean']}s)")  # fmt: skip
    m = result["mqtt"]
    print(f"  MQTT: {m['state_messages']} state reports ({m['state_per_device']} per device),"
          f" {m['state_bytes']['median']} B median, {m['state_bytes']['max']} B max;"
          f" peak {m['peak_state_per_s']}/s; {m['wake_messages']} wakes")  # fmt: skip
    rows = TargetRows()
    rows.add("good rollout completes (rc)", result["good"]["rc"], 0, result["good"]["rc"] == 0, "")
    rows.add("bad rollout stopped (rc)", result["bad"]["rc"], 1, result["bad"]["rc"] == 1, "")
    rows.add("bad: rings committed", ",".join(result["bad"]["rings_committed"]), "canary",
             result["bad"]["rings_committed"] == ["canary"], "then reverted")  # fmt: skip
    rows.add("bad: other devices saw v3", len(result["bad"]["other_rings_saw_v3"]), 0,
             not result["bad"]["other_rings_saw_v3"], "")  # fmt: skip
    rows.add("failed requests under light load", result["load"]["failed"], 0,
             result["load"]["failed"] == 0, f"of {result['load']['sent']}")  # fmt: skip
    rows.add("wake -> device looks, max (s)", w["max"], result["resync_s"], None,
             "vs the polling interval")  # fmt: skip
    print()
    print_targets(rows, "target", 36)


def draw(result: dict[str, Any], png: Any) -> None:
    from plotting import new_figure, save_figure

    fig, (top, bottom) = new_figure(2, (8, 6), [1, 1])
    rings = result["good"]["rings"]
    names = list(rings)
    medians = [rings[n]["per_device_s"]["median"] or 0 for n in names]
    maxima = [rings[n]["per_device_s"]["max"] or 0 for n in names]
    top.bar([i - 0.2 for i in range(len(names))], medians, 0.4, label="median")
    top.bar([i + 0.2 for i in range(len(names))], maxima, 0.4, label="max")
    top.set_xticks(range(len(names)), [f"{n} ({rings[n]['devices']})" for n in names])
    top.set_ylabel("s, commit -> serving v2")
    top.set_title(f"fleet_sim: {result['devices']} devices, one broker, one git repository")
    top.legend(fontsize=7)
    w = result["wake_to_look_s"]
    bottom.barh(["wake -> looks (max)", "wake -> looks (median)", "polling (mean)"],
                [w["max"] or 0, w["median"] or 0, result["polling_expected_s"]["mean"]])  # fmt: skip
    bottom.set_xscale("log")
    bottom.set_xlabel("seconds (log)")
    save_figure(fig, png)
