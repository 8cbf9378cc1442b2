"""Prometheus metrics for both planes, on one registry served at `/metrics`.

Counters and histograms are updated where things happen (request path, executor); what is
loaded and how big the journal is are read at scrape time through callbacks, so they can never
drift from the truth. The process's own RSS, CPU seconds and open fds come from
prometheus_client's ProcessCollector (`process_*`, Linux /proc); `hotswap_build_info` says which
release runs (set by the daemon); the control plane stamps
`hotswap_reconcile_last_pass_timestamp_seconds` after every pass, so a loop that stopped
passing shows as a timestamp that no longer moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
REVERT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STEP_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class _StateCollector(Collector):
    def __init__(
        self, describe_models: Callable[[], dict[str, Any]], journal_bytes: Callable[[], int]
    ) -> None:
        self._models = describe_models
        self._journal_bytes = journal_bytes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "hotswap_model_version_info",
            "Loaded model instances (1 per instance) by model, version and role",
            labels=["model", "version", "role"],
        )
        in_flight = GaugeMetricFamily(
            "hotswap_inference_in_flight",
            "Requests running now, by model and version",
            labels=["model", "version"],
        )
        for model, roles in self._models().items():
            for role in ("active", "candidate", "standby"):
                inst = roles.get(role)
                if inst:
                    info.add_metric([model, str(inst["version"]), role], 1)
                    in_flight.add_metric([model, str(inst["version"])], inst.get("in_flight", 0))
        yield info
        yield in_flight
        size = GaugeMetricFamily("hotswap_journal_bytes", "Size of the journal files on disk")
        size.add_metric([], self._journal_bytes())
        yield size


class _JournalCollector(Collector):
    """Whether the journal passed its checks at start; `verdict` names what it found."""

    def __init__(self, verdict: Callable[[], str], trusted: Callable[[], bool]) -> None:
        self._verdict = verdict
        self._trusted = trusted

    def collect(self) -> Iterator[GaugeMetricFamily]:
        trusted = GaugeMetricFamily(
            "hotswap_journal_trusted",
            "1 when the journal verified whole at start (restored from), 0 when it was edited,"
            " shortened or unreadable (moved aside) and desired state was served instead",
        )
        trusted.add_metric([], 1 if self._trusted() else 0)
        yield trusted
        problem = GaugeMetricFamily(
            "hotswap_journal_problem",
            "1 for what the journal's checks found at start, unless ok (edited, shortened,"
            " rewritten, replaced, head-missing, head-unreadable)",
            labels=["verdict"],
        )
        if self._verdict() != "ok":
            problem.add_metric([self._verdict()], 1)
        yield problem


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hotswap_inference_requests", "Inference requests by model, served version and HTTP status",
            ["model", "version", "code"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "hotswap_inference_errors", "Failed inference requests by model and kind (client, unavailable, backend)",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "hotswap_inference_duration_seconds", "Inference latency inside the server, by model and version",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.swaps = Counter("hotswap_swaps", "Versions promoted to active", ["model"], registry=r)
        self.reverts = Counter(
            "hotswap_reverts", "Candidates dropped after a failure", ["model", "reason"], registry=r
        )
        self.revert_seconds = Histogram(
            "hotswap_revert_seconds", "Revert time: from the decision to send traffic back to the previous version to the first request routed there",
            ["model"], buckets=REVERT_BUCKETS, registry=r,
        )  # fmt: skip
        self.steps = Histogram(
            "hotswap_step_duration_seconds", "Reconcile step durations by step and outcome",
            ["step", "outcome"], buckets=STEP_BUCKETS, registry=r,
        )  # fmt: skip
        self.step_failures = Counter(
            "hotswap_step_failures", "Failed steps by step, reason and what happens next (retry, repair, budget, quarantine)",
            ["step", "reason", "next"], registry=r,
        )  # fmt: skip
        self.store_damaged = Counter(
            "hotswap_store_damaged", "Stored model blobs (kind blob) and build artifacts (kind artifact) found damaged, set aside and repaired",
            ["model", "kind"], registry=r,
        )  # fmt: skip

        self._data_plane(r)
        self.build_info = Gauge(
            "hotswap_build_info", "The hotswap release running (always 1)", ["version"], registry=r
        )
        self.last_pass = Gauge(
            "hotswap_reconcile_last_pass_timestamp_seconds",
            "Unix time the reconcile loop last finished a pass (a stuck loop stops moving it)",
            registry=r,
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds

    def _data_plane(self, r: CollectorRegistry) -> None:
        self.queue = Histogram(
            "hotswap_inference_queue_seconds", "Time a request waited before its inference ran (for a worker thread, and to be batched), by model and version",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "hotswap_inference_compute_seconds", "Backend time of the inference a request ran in (the whole batch when batched), by model and version",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "hotswap_inference_batch_size", "Rows per backend call (one observation per execution), by model and version",
            ["model", "version"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip

    def set_build(self, version: str) -> None:
        self.build_info.clear()
        self.build_info.labels(version).set(1)

    def watch_state(
        self, describe_models: Callable[[], dict[str, Any]], journal_bytes: Callable[[], int]
    ) -> None:
        self.registry.register(_StateCollector(describe_models, journal_bytes))

    def watch_journal(self, verdict: Callable[[], str], trusted: Callable[[], bool]) -> None:
        self.registry.register(_JournalCollector(verdict, trusted))
