"""One canary's figures: from the daemon's journal and metrics and the clients' records, what
happened from its YAML write to the next write, the checks it must pass, and its part of the
printed report.

Called by canary_under_load, which runs the canaries (a CanaryPhase each: its write time, the
outcome it waited for, the journal records and two /metrics scrapes around it) and then hands
them here with every Rec of the run. Kept apart from the orchestration because the figures are
pure functions of what was recorded: the bench can be re-read, changed or checked without
running a daemon. A failed request has no model_version, but v1 never fails, so an HTTP 500 is
counted as the candidate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon_readings import (
    Samples,
    bucket,
    find_record,
    record_time,
    requests_by_version,
    revert_histogram,
    revert_text,
)
from load_generator import Rec
from reporting import TargetRows, count_by, detail_line, fmt, latency_summary, ms, ratio

# The kit's canary YAMLs (examples/make_models.py), in the order they run, and what the daemon
# must do with each: v5 fails the error-rate gate, v6 the p99 latency-ratio gate, v2 passes.
CANARIES = {"5": "revert", "6": "revert", "2-canary": "promote"}
CANARY_NAMES = {"5": "v5 flaky", "6": "v6 slow", "2-canary": "v2 (good)"}
OUTCOME = {"revert": "reverted", "promote": "promoted"}  # what each expectation looks like


@dataclass
class CanaryPhase:
    key: str  # kit doc key: "5", "6", "2-canary"
    target: str  # the model version it deploys
    expect: str  # "revert" | "promote"
    steps: list[dict[str, Any]]  # the YAML's rollout steps
    write: float  # seconds since the load started
    write_wall: float
    outcome: str = "pending"
    outcome_s: float | None = None
    records: list[dict[str, Any]] | None = None
    before: Samples | None = None
    after: Samples | None = None


def stage_spans(
    records: list[dict[str, Any]], end: float, steps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each rollout stage from its journal records: begin, end (done / failed), the daemon's
    verdict and figures; `steps` (the YAML's) give the weights."""
    stages: list[dict[str, Any]] = []
    for r in records:
        if r["step"] != "rollout":
            continue
        if r["phase"] == "begin":
            i = len(stages)
            stages.append(
                {
                    "stage": i + 1,
                    "weight": steps[i].get("weight") if i < len(steps) else None,
                    "begin_s": r["t_s"],
                    "end_s": None,
                    "result": "running",
                }
            )
        elif stages and stages[-1]["end_s"] is None:
            d = r["detail"]
            stages[-1].update(
                end_s=r["t_s"],
                result=r["phase"],  # done | failed
                verdict=d.get("verdict") or d.get("message"),
                reason=d.get("reason"),
                daemon_figures=d.get("figures"),
            )
    for st in stages:
        if st["end_s"] is None:
            st["end_s"] = end
    return stages


def canary_phase_figures(
    phase: CanaryPhase, records: list[Rec], window_end: float
) -> dict[str, Any]:
    """What the clients saw from one canary's YAML write to `window_end`, beside what the
    daemon journaled and counted."""
    jr = phase.records or []
    sel = [r for r in records if phase.write <= r.start < window_end]
    ok = [r for r in sel if r.ok]
    bad = [r for r in sel if not r.ok]
    # A failed request has no model_version; v1 never fails, so a 500 is the candidate's.
    to_candidate = [r for r in sel if (r.ok and r.version == phase.target) or r.status == 500]
    candidate_ids = {id(r) for r in to_candidate}

    stages = stage_spans(jr, window_end, phase.steps)
    gate = find_record(jr, "rollout", "failed")
    decided = gate["t_s"] if gate else None  # traffic goes back before this record is written
    fig: dict[str, Any] = {
        "canary": phase.key,
        "name": CANARY_NAMES.get(phase.key, phase.key),
        "target_version": phase.target,
        "expected": phase.expect,
        "outcome": phase.outcome,
        "as_expected": phase.outcome == OUTCOME[phase.expect],
        "write_s": round(phase.write, 4),
        "outcome_s": phase.outcome_s,
        "window_s": [round(phase.write, 4), round(window_end, 4)],
        "journal": {
            "health_check_done_s": record_time(jr, "health-check", "done"),
            "first_stage_begin_s": record_time(jr, "rollout", "begin"),
            "gate_failed_s": decided,
            "gate_failure": None
            if gate is None
            else {
                "reason": gate["detail"].get("reason"),
                "message": gate["detail"].get("message"),
                "stage": gate["detail"].get("stage"),
                "traffic_back_ms": gate["detail"].get("traffic_back_ms"),
                "figures": gate["detail"].get("figures"),
            },
            "revert_done_s": record_time(jr, "revert", "done"),
            "swap_done_s": record_time(jr, "swap", "done", phase.target),
            "records": len(jr),
        },
        "stages": stages,
        "requests": len(sel),
        "failed": len(bad),
        "failures_by_kind": count_by(r.error for r in bad),
        "failed_with_hot_input": sum(1 for r in bad if r.hot),
        "hot_requests": sum(1 for r in sel if r.hot),
        "answered_by_version": count_by(r.version for r in ok),
        "to_candidate": len(to_candidate),
        "candidate_error_rate": round(
            sum(1 for r in to_candidate if not r.ok) / len(to_candidate), 4
        )
        if to_candidate
        else None,
        "server_requests_by_version": requests_by_version(phase.before or [], phase.after or []),
        "revert_seconds": revert_histogram(phase.before or [], phase.after or []),
    }
    w = fig["journal"]
    w["write_to_first_stage_ms"] = ms(
        None if w["first_stage_begin_s"] is None else w["first_stage_begin_s"] - phase.write
    )
    if stages and decided is not None:
        w["stage_begin_to_gate_failed_ms"] = ms(decided - stages[-1]["begin_s"])
    # Latency per version inside each stage (responses that started and ended in it): the
    # clients' view of what the p99 gate judges (the daemon times the inference alone).
    for st in stages:
        inside = [r for r in ok if r.start >= st["begin_s"] and r.end <= st["end_s"]]
        st["client_latency"] = {
            v: latency_summary([r.latency for r in inside if r.version == v])
            for v in sorted({r.version or "?" for r in inside})
        }
        started = [r for r in sel if st["begin_s"] <= r.start < st["end_s"]]
        st["client_share_to_candidate"] = (
            round(sum(1 for r in started if id(r) in candidate_ids) / len(started), 4)
            if started
            else None
        )
        lat = st["client_latency"]
        st["client_p99_ratio"] = ratio(
            (lat.get(phase.target) or {}).get("p99_ms"), (lat.get("1") or {}).get("p99_ms")
        )
    # Client-side revert figures (seconds since the load started; durations in ms).
    client: dict[str, Any] = {}
    if bad:
        first_fail = min(r.end for r in bad)
        client["first_failure_s"] = round(first_fail, 4)
        client["last_failure_s"] = round(max(r.end for r in bad), 4)
        later_v1 = [r.end for r in ok if r.version == "1" and r.start >= first_fail]
        client["first_failure_to_next_v1_200_ms"] = ms(
            min(later_v1) - first_fail if later_v1 else None
        )
        last_cand = max(r.end for r in to_candidate)
        client["last_candidate_answer_s"] = round(last_cand, 4)
        client["first_failure_to_last_candidate_answer_ms"] = ms(last_cand - first_fail)
    if decided is not None:
        after_v1 = [r.end for r in ok if r.version == "1" and r.start >= decided]
        client["gate_failed_to_next_v1_200_ms"] = ms(min(after_v1) - decided if after_v1 else None)
        client["to_candidate_started_after_gate_failed"] = sum(
            1 for r in to_candidate if r.start > decided
        )
        if to_candidate:
            client["gate_failed_to_last_candidate_answer_ms"] = ms(
                max(r.end for r in to_candidate) - decided
            )
    fig["client_revert"] = client
    return fig


def canary_targets(canaries: list[dict[str, Any]], rows: TargetRows) -> None:
    """Rows per canary: its outcome, its failed requests and (v5) the revert times."""
    for c in canaries:
        who = c["name"].split()[0]
        gate = c["journal"]["gate_failure"]
        rows.add(
            f"{who}_outcome",
            c["outcome"],
            OUTCOME[c["expected"]],
            c["as_expected"],
            gate["message"] if gate else f"{len(c['stages'])} stages journaled",
        )
        if c["target_version"] == "5":
            rows.add(
                f"{who}_failed_requests",
                c["failed"],
                None,
                None,
                f"reported: {c['to_candidate']} requests to the candidate, error rate "
                f"{c['candidate_error_rate']}; {c['failed_with_hot_input']} of the failures had "
                "input[0,0,0,0] > 1",
            )
            rev = c["revert_seconds"]
            rows.add(
                f"{who}_revert_ms_daemon_mean",
                rev["mean_ms"],
                None,
                None,
                f"hotswap_revert_seconds: {rev['count']} observed, bucket {bucket(rev)}",
            )
            cl = c["client_revert"]
            rows.add(
                f"{who}_first_failure_to_last_candidate_answer_ms",
                cl.get("first_failure_to_last_candidate_answer_ms"),
                None,
                None,
                f"next v1 200 after the first failure: "
                f"{cl.get('first_failure_to_next_v1_200_ms')} ms",
            )
        else:
            rows.add(
                f"{who}_failed_requests",
                c["failed"],
                0,
                c["failed"] == 0,
                f"{c['requests']} requests, {c['to_candidate']} to the candidate",
            )


def print_canaries(result: dict[str, Any]) -> None:
    """The report's head and a section per canary (the rollback and the checks follow)."""
    cfg, can = result["config"], result["canary"]
    print()
    print(
        f"canary under load: concurrency {cfg['concurrency']}, batch {cfg['batch']}, "
        f"{cfg['protocol']} tensors, random standard-normal images, "
        f"{result['machine']['cpu_count']} CPUs"
    )
    print(
        f"{can['requests']} requests ({can['hot_requests']} with input[0,0,0,0] > 1), "
        f"{can['failed']} failed {can['failures_by_kind'] or ''}, {can['throughput_rps']} req/s; "
        f"v1 steady p50/p99 {fmt(can['latency']['steady_v1']['p50_ms'])}/"
        f"{fmt(can['latency']['steady_v1']['p99_ms'])} ms; serving at the end: "
        f"v{can['served_at_end']}"
    )
    for c in can["canaries"]:
        j, cl = c["journal"], c["client_revert"]
        verdict = "as expected" if c["as_expected"] else "NOT AS EXPECTED"
        print()
        print(
            f"{c['name']}: {c['outcome']} ({verdict}; expected {c['expected']}), "
            f"YAML written at {c['write_s']:.2f} s"
        )
        detail_line("write -> first stage begins (ms)", fmt(j["write_to_first_stage_ms"]))
        for st in c["stages"]:
            lat = st["client_latency"]
            p99 = ", ".join(f"v{v} {fmt(s['p99_ms'])}" for v, s in lat.items())
            daemon = st.get("daemon_figures") or {}
            cand = daemon.get("candidate") or {}
            act = daemon.get("active") or {}
            detail_line(
                f"stage {st.get('stage') or '?'} ({fmt(st.get('weight'))}%) "
                f"{st['begin_s']:.2f}-{st['end_s']:.2f} s: {st['result']}",
                f"client p99 ms {p99}; candidate share {fmt(st['client_share_to_candidate'])}",
            )
            if daemon:
                detail_line(
                    "    daemon's figures",
                    f"candidate {cand.get('requests')} req / {cand.get('errors')} err / p99 "
                    f"{fmt(cand.get('p99_ms'))} ms; active {act.get('requests')} req / p99 "
                    f"{fmt(act.get('p99_ms'))} ms",
                )
            if st.get("verdict"):
                detail_line("    verdict", st["verdict"])
        detail_line(
            "requests / failed / to the candidate",
            f"{c['requests']} / {c['failed']} / {c['to_candidate']} "
            f"(candidate error rate {fmt(c['candidate_error_rate'])})",
        )
        detail_line("answered by version", c["answered_by_version"])
        if j["gate_failed_s"] is not None:
            rev = c["revert_seconds"]
            detail_line(
                "revert, daemon: hotswap_revert_seconds",
                revert_text(rev),
            )
            detail_line(
                "revert, journal: gate failed -> revert done",
                fmt(ms(j["revert_done_s"] - j["gate_failed_s"]) if j["revert_done_s"] else None)
                + " ms",
            )
            detail_line(
                "revert, client: gate failed -> next v1 200",
                f"{fmt(cl.get('gate_failed_to_next_v1_200_ms'))} ms (journal time of the "
                f"failed record); last candidate answer at "
                f"{fmt(cl.get('gate_failed_to_last_candidate_answer_ms'))} ms, "
                f"{cl.get('to_candidate_started_after_gate_failed')} requests to it started after",
            )
        if "first_failure_s" in cl:
            detail_line(
                "client: first failure -> next v1 200",
                f"{fmt(cl['first_failure_to_next_v1_200_ms'])} ms; -> last candidate answer "
                f"{fmt(cl['first_failure_to_last_candidate_answer_ms'])} ms",
            )
