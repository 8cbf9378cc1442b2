"""What the daemon under test says about itself: its JSON log, its journal, its /metrics and
its model metadata, each read as figures on the load's time line.

Called by swap_windows.add_detection (the log's `reconcile.dispatch` lines: when the daemon
saw a new desired version), canary_under_load and rollback_to_standby (the journal's rollout,
revert, override and swap records, `hotswap_revert_seconds` and
`hotswap_inference_requests_total` from GET /metrics, GET /v2/models/classifier for the version
serving). Everything is read from outside, as an operator or a dashboard would, and read-only
(the journal through reconciler.state.journal with readonly=True), so the bench measures the daemon
without changing what it does; a reading that fails is retried or reported, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from example_kit import MODEL
from reporting import fmt, log, ms

POLL_S = 0.1  # journal / model metadata polling while a canary or a rollback runs


def parse_iso(ts: str) -> float:
    # structlog writes e.g. 2024-05-01T12:00:00.123456Z; Python 3.10 does not accept the "Z".
    if ts.endswith("Z"):
        ts = ts[:-1] + "+00:00"
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def dispatch_times(log_path: Path) -> list[tuple[float, list[str], float | None]]:
    """(wall time, planned steps, planned_in_ms) of every `reconcile.dispatch` log line."""
    out: list[tuple[float, list[str], float | None]] = []
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if '"reconcile.dispatch"' not in line:
            continue
        try:
            rec = json.loads(line)
            if rec.get("event") == "reconcile.dispatch" and rec.get("model") == MODEL:
                planned = rec.get("planned_in_ms")
                out.append(
                    (
                        parse_iso(rec["timestamp"]),
                        list(rec.get("steps") or []),
                        float(planned) if isinstance(planned, (int, float)) else None,
                    )
                )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out)


class JournalWatch:
    """The daemon's journal (state/journal.db), read-only through reconciler.state.journal, as dicts
    with `t_s` = seconds since the load started (the journal's UTC time on our time line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0_wall = 0.0

    def since(self, seq: int) -> list[dict[str, Any]]:
        from reconciler.state.journal import Journal

        try:
            journal = Journal(self.path, readonly=True)
        except Exception:  # not written yet: nothing to read
            return []
        out = []
        try:
            for rec in journal.records(MODEL):
                if rec.seq > seq:
                    out.append(
                        {
                            "seq": rec.seq,
                            "t_s": round(parse_iso(rec.time) - self.t0_wall, 4),
                            "time": rec.time,
                            "step": rec.step,
                            "phase": rec.phase,
                            "from_version": rec.from_version,
                            "to_version": rec.to_version,
                            "detail": rec.details,
                        }
                    )
        except Exception as e:  # sqlite busy or a schema change: read again at the next poll
            log(f"journal read failed ({e!r}); retrying")
        finally:
            journal.close()
        return out

    def last_seq(self) -> int:
        records = self.since(0)
        return records[-1]["seq"] if records else 0


def find_record(
    records: list[dict[str, Any]], step: str, phase: str, to_version: str | None = None
) -> dict[str, Any] | None:
    """The first journal record of `step` in `phase` (and to `to_version`, if given)."""
    return next(
        (r for r in records if r["step"] == step and r["phase"] == phase
         and (to_version is None or r["to_version"] == to_version)),
        None,
    )  # fmt: skip


def record_time(
    records: list[dict[str, Any]], step: str, phase: str, to_version: str | None = None
) -> float | None:
    """find_record()'s time in seconds since the load started, None without one."""
    rec = find_record(records, step, phase, to_version)
    return None if rec is None else rec["t_s"]


_METRIC_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_METRIC_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: httpx.Client) -> Samples:
    """GET /metrics as (name, labels, value) samples; empty if the daemon does not answer."""
    try:
        text = client.get("/metrics").text
    except httpx.HTTPError:
        return []
    samples: Samples = []
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            labels = dict(_METRIC_LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())
    )


def revert_histogram(before: Samples, after: Samples) -> dict[str, Any]:
    """The reverts `hotswap_revert_seconds` observed between two scrapes: their count, mean
    (sum/count) and the histogram bucket they fall in (le bounds, in seconds)."""
    name = "hotswap_revert_seconds"
    present = any(n.startswith(name) for n, _, _ in after)
    count = metric_sum(after, f"{name}_count", model=MODEL) - metric_sum(
        before, f"{name}_count", model=MODEL
    )
    total = metric_sum(after, f"{name}_sum", model=MODEL) - metric_sum(
        before, f"{name}_sum", model=MODEL
    )
    les = sorted({float(lab["le"]) for n, lab, _ in after if n == f"{name}_bucket" and "le" in lab})
    cumulative = [
        (
            le,
            sum(
                v
                for n, lab, v in after
                if n == f"{name}_bucket" and lab.get("model") == MODEL and float(lab["le"]) == le
            )
            - sum(
                v
                for n, lab, v in before
                if n == f"{name}_bucket" and lab.get("model") == MODEL and float(lab["le"]) == le
            ),
        )
        for le in les
    ]
    out: dict[str, Any] = {
        "metric_present": present,
        "count": int(count),
        "mean_ms": ms(total / count) if count > 0 else None,
        "bucket_s": None,
    }
    if count > 0:
        # the bucket of the fastest and of the slowest revert: (previous le, first le with 1 /
        # with all of them]; the same bucket when there is one revert
        lo_i = next((i for i, (_, c) in enumerate(cumulative) if c >= 1), None)
        hi_i = next((i for i, (_, c) in enumerate(cumulative) if c >= count), None)
        if lo_i is not None and hi_i is not None:
            lo = cumulative[lo_i - 1][0] if lo_i > 0 else 0.0
            out["bucket_s"] = [lo, cumulative[hi_i][0]]
    return out


def requests_by_version(before: Samples, after: Samples) -> dict[str, dict[str, int]]:
    """Server-side `hotswap_inference_requests_total` between two scrapes, by version and code."""
    name = "hotswap_inference_requests_total"
    out: dict[str, dict[str, int]] = {}
    keys = {
        (lab.get("version", "?"), lab.get("code", "?"))
        for n, lab, _ in after
        if n == name and lab.get("model") == MODEL
    }
    for version, code in sorted(keys):
        d = metric_sum(after, name, model=MODEL, version=version, code=code) - metric_sum(
            before, name, model=MODEL, version=version, code=code
        )
        if d:
            out.setdefault(version, {})[code] = int(d)
    return out


def served_version(client: httpx.Client) -> str | None:
    """The active version, from GET /v2/models/{model} ("versions"): during a canary stage it
    is still the old one; after a promotion it is the new one."""
    try:
        r = client.get(f"/v2/models/{MODEL}")
        versions = r.json().get("versions") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return str(versions[0]) if isinstance(versions, list) and versions else None


def bucket(rev: dict[str, Any]) -> str:
    b = rev.get("bucket_s")
    return "-" if not b else f"({b[0]:g}, {b[1]:g}] s"


def revert_text(rev: dict[str, Any]) -> str:
    """revert_histogram()'s figures in one line of a report."""
    return f"mean {fmt(rev['mean_ms'])} ms over {rev['count']}, bucket {bucket(rev)}" + (
        "" if rev["metric_present"] else " (metric not exposed)"
    )
