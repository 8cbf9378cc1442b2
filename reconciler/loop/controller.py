"""The control loop: level-triggered reconciliation of desired state against the runtime.

Every pass re-reads desired state from one snapshot of the (possibly symlinked) directory,
observes the runtime and store, plans from scratch and hands each model's steps to a worker.
Work is keyed by model: a model with work in flight is skipped until it finishes, so two passes
never run the same model's steps concurrently, while different models proceed independently.
File events only wake the loop early; a jittered periodic resync catches whatever they miss.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from pathlib import Path

import structlog

from reconciler.core.desired import Desired, ModelSpec
from reconciler.core.device import DeviceIdentity
from reconciler.core.observed import Observed
from reconciler.core.outcome import Outcome
from reconciler.core.plan import plan
from reconciler.core.steps import AnyStep, Rollout
from reconciler.loop.conditions import publish_conditions
from reconciler.loop.crashloop import quarantine_crash_loops
from reconciler.loop.executor import Executor
from reconciler.loop.load_errors import LoadErrorReporter
from reconciler.loop.quarantine import Quarantine
from reconciler.loop.readiness import Readiness
from reconciler.loop.schedule import Schedule
from reconciler.loop.sdnotify import Notifier
from reconciler.loop.trust_refresh import TrustRefresher
from reconciler.operator.channel import requests_dir
from reconciler.operator.handler import OperatorRequests
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.ops.probe import ProbeSettings
from reconciler.source.commits import CommitGate
from reconciler.source.watch import DesiredWatcher
from reconciler.source.window import closed_windows
from reconciler.state.atomic import sweep_temp_files
from reconciler.state.crashpoint import crashpoint
from reconciler.state.journal import Journal
from reconciler.state.journal_open import JournalHealth
from reconciler.state.status import write_snapshot
from reconciler.state.summary import status_line
from runtime.serving.metrics import Metrics
from runtime.serving.slot import Repository

log = structlog.get_logger("hotswap.controller")

STOP_TIMEOUT_S = 8.0  # how long `stop` waits for the steps in flight


class Controller:
    """Built once, by the daemon's wiring (`reconciler.cli.daemon`), with every setting.

    Settings are keyword arguments rather than one settings object because the step
    context below takes only its share of them and lives in a lower layer (ops), which
    may not import a type defined here; keyword-only, so each caller names what it sets.
    Nothing is configured by assigning attributes after construction. `on_status` is told
    after every status write (the fleet reporter); it must not block.
    """

    def __init__(
        self,
        desired_dir: Path,
        state_dir: Path,
        journal: Journal,
        repo: Repository,
        *,
        resync_s: float = 30.0,
        workers: int = 2,
        threads: int | None = None,
        memory_budget: int | None = None,
        metrics: Metrics | None = None,
        trust_dir: Path | None = None,
        strict_readiness: bool = False,
        backends: Backends | None = None,
        device: DeviceIdentity | None = None,
        download_rate_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: ProbeSettings | None = None,
        notifier: Notifier | None = None,  # systemd's: STATUS= per status write, WATCHDOG=1
        journal_health: JournalHealth | None = None,
        on_status: Callable[[], None] | None = None,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self._on_status = on_status
        self.desired_dir = desired_dir
        self.state_dir = state_dir
        self.journal = journal
        self.repo = repo
        self.resync_s = resync_s
        self.notifier = notifier or Notifier(None)
        self.device = device  # id and labels (status.json; a reporter takes the same)
        metrics = self.metrics = metrics or Metrics()
        self.ctx = Operations(
            state_dir,
            journal,
            repo,
            threads=threads,
            memory_budget=memory_budget,
            backends=backends,  # None: the backends this machine has
            clock=clock,
            on_progress=self.write_status,  # long steps' progress for `hotswap status`
            on_rollout_event=self.judge_now,  # a candidate failed a request
            on_store_damaged=lambda model, kind: metrics.store_damaged.labels(model, kind).inc(),
            probe=probe,  # limits of a new model's first run, in a child process
            download_rate_limit=download_rate_limit,  # bytes/s, all downloads together
        )
        self.quarantine = Quarantine()  # written by the executor only
        self.executor = Executor(self.ctx, metrics, self.quarantine)
        lift = self.executor.lift_quarantine  # `hotswap retry`; the operator's requests:
        self.operator = OperatorRequests(self.ctx, state_dir, lift_quarantine=lift)
        self.trust_dir = trust_dir or state_dir / "trust"
        self.trust = TrustRefresher(self.trust_dir, journal, self.ctx)
        self.readiness = Readiness(strict=strict_readiness)
        self.journal_health = journal_health  # what the start found; shown in status
        self.schedule = Schedule(clock)
        self._clock = clock
        self._wall_clock = wall_clock  # update windows are local time of day, not monotonic
        self._init_state()
        self._make_threads(workers)

    def _init_state(self) -> None:
        """What the loop keeps between passes, as it is before the first."""
        self.commits = CommitGate(self.trust_dir)  # the trust dir may require signed commits
        self.restored = False
        self.desired: Desired | None = None
        self.planned: Desired | None = None  # desired with the operator's overrides applied
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the status writer's
        self._closed = False  # stopped: status.json is no longer written
        self._window_opens_in: float | None = None  # seconds until a closed window opens
        self.load_errors = LoadErrorReporter(self.journal)
        self.passes = 0

    def _make_threads(self, workers: int) -> None:
        """The model workers, the loop thread and the watcher; `start()` starts the last two."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotswap-model")
        self._in_flight: set[Future[None]] = set()  # the workers' runs, for a bounded stop
        self._in_flight_lock = threading.Lock()
        self._loop_thread = threading.Thread(
            target=self._loop, name="hotswap-reconcile", daemon=True
        )
        self._watcher = DesiredWatcher(
            self.desired_dir,
            self.wake,
            ignore=[self.state_dir],
            extra=[requests_dir(self.state_dir)],
        )

    # -- lifecycle -------------------------------------------------------------------------
    def recover(self, restore: bool = True) -> None:
        """Before anything else: remove torn temp files, then serve the last promoted versions
        (unless the journal that names them failed its verification)."""
        for leftover in sweep_temp_files(self.state_dir):
            log.warning("recover.removed-temp", path=str(leftover))
        self.refresh_trust()
        if restore:
            quarantine_crash_loops(self.journal)  # before any step of this boot is begun
            self.readiness.served_before(self.executor.restore_all())
        self.operator.load(trusted=restore)
        self.restored = True
        self.write_status()

    def start(self) -> None:
        self._watcher.start()
        self._loop_thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop within `timeout_s` whatever a step is doing: a probe in flight is killed (its
        step ends `failed`, `stopping`), then the steps in flight are waited for. False when one
        was still running at the deadline: the caller must then exit without waiting for it."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._wake.set()
        self.ctx.stopping()
        self._watcher.stop()
        self._loop_thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._in_flight_lock:
            in_flight = list(self._in_flight)
        _, running = wait_for_futures(in_flight, timeout=max(0.1, deadline - time.monotonic()))
        with self._lock:  # no status write is half done from here on, and none starts
            self._closed = True
        if running:
            log.error("shutdown.steps-still-running", count=len(running), waited_s=timeout_s)
            return False
        self.ctx.shutdown()
        return True

    def _track(self, future: Future[None]) -> None:
        def untrack(done: Future[None]) -> None:
            with self._in_flight_lock:
                self._in_flight.discard(done)

        with self._in_flight_lock:
            self._in_flight.add(future)
        future.add_done_callback(untrack)

    def wake(self) -> None:
        self._wake.set()

    def judge_now(self, model: str) -> None:
        """A candidate failed a request: judge its rollout stage at once, not when it is due."""
        self.schedule.look_now(model)
        self._wake.set()

    def ready(self) -> bool:
        """`/v2/health/ready` (reconciler.loop.readiness says when)."""
        desired = self.desired
        if not self.restored or desired is None:
            return False

        def serving(name: str) -> bool:
            slot = self.repo.get(name)
            return slot is not None and slot.active is not None

        return self.readiness.ready(desired.models, serving)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            crashpoint("loop:pass")  # `=block` wedges the loop: the watchdog tests
            try:
                self.reconcile_once()
            except Exception:
                log.exception("reconcile.pass-failed")
            self.notifier.watchdog()  # a pass completed: the loop is alive
            # Jitter spreads resyncs of a fleet so devices do not hit a registry in lockstep.
            timeout = self.resync_s * random.uniform(0.9, 1.1)
            due = self.schedule.next_due()
            if due is not None:  # a rollout stage to look at again, or a backoff that ends
                timeout = min(timeout, max(0.0, due - self._clock()))
            if self._window_opens_in is not None:  # an update window that opens: swap then
                timeout = min(timeout, self._window_opens_in + 0.5)
            self._idle(timeout)

    def _idle(self, timeout: float) -> None:
        """Wait for a wake-up or `timeout`, pinging the watchdog each time a slice of the wait
        completes: an idle loop is a live one, and only a loop that stops coming back here (or
        to the end of a pass) lets the watchdog fire."""
        every = self.notifier.ping_every_s
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            woken = self._wake.wait(timeout=max(0.0, min(left, every or left)))
            self.notifier.watchdog()
            if woken or left <= (every or left):
                return

    def reconcile_once(self) -> list[AnyStep]:
        pass_started = time.monotonic()
        self.refresh_trust()
        desired = self.commits.read(self.desired_dir)  # read_desired, or only signed commits
        self.desired = desired
        # the server answers 503 (not 404) for these while none of their versions is loaded
        self.repo.declare({*desired.models, *desired.held_models()})
        self.load_errors.report(desired.errors)
        for model in self.operator.take(desired):  # a retry starts over, without backoff
            self.schedule.retry_now(model)
        # What is planned: desired state with the operator's overrides (`hotswap rollback`).
        planned = self.operator.effective(desired)
        self.planned = planned
        specs = [*planned.models.values(), *desired.models.values()]
        self.ctx.pin(specs)
        # a candidate still being probed that is no longer wanted is abandoned, not waited for
        self.ctx.abandon_unwanted({m: s.digest for m, s in planned.models.items()})
        seen = self.schedule.finishes()  # before observing: a run ending after is not in it
        observed = self._with_windows(planned, self.observe())
        steps = plan(planned, observed)
        self.passes += 1
        by_model: dict[str, list[AnyStep]] = {}
        for step in steps:
            by_model.setdefault(step.model, []).append(step)
        now = time.monotonic()
        for model, model_steps in by_model.items():
            resuming = self.executor.waiting_on(model) == model_steps[0]
            if not self.schedule.claim(model, resuming, seen):
                continue
            # a rollout stage looked at again is routine: only new work is worth an info line
            (log.debug if resuming else log.info)(
                "reconcile.dispatch",
                model=model,
                steps=[str(s) for s in model_steps],
                planned_in_ms=round((now - pass_started) * 1000, 1),
            )
            future = self._pool.submit(
                self._work, model, model_steps, planned.models.get(model), desired.revision
            )
            self._track(future)
        self.write_status()
        self.metrics.last_pass.set(time.time())  # moves on every pass: a stuck loop shows
        return steps

    def _work(
        self, model: str, steps: list[AnyStep], spec: ModelSpec | None, revision: str | None
    ) -> None:
        outcome: Outcome | None = None
        try:
            outcome = self.executor.run(model, steps, spec, revision)
        except Exception:
            log.exception("reconcile.worker-crashed", model=model)
        finally:
            self.schedule.finished(model, outcome)
            self.write_status()
            # Plan again now: the next steps if it finished or failed, and if it waits, so the
            # loop sleeps until the new due time rather than the one it computed before.
            self.wake()

    def _with_windows(self, planned: Desired, observed: Observed) -> Observed:
        """`observed` with the models whose update window is closed now; never an operator's
        rollback, nor a rollout already under way (it finishes rather than stalls midway)."""
        under_way = {m for m in planned.models if isinstance(self.executor.waiting_on(m), Rollout)}
        closed, self._window_opens_in = closed_windows(
            planned.models.values(),
            self._wall_clock(),
            exempt={*self.operator.overrides, *under_way},
        )
        return dataclasses.replace(observed, closed_windows=closed)

    def observe(self) -> Observed:
        """The runtime and store as the planner sees them, quarantines included."""
        held = self.quarantine.snapshot()
        return self.ctx.observe(held.digests, held.errors)

    def refresh_trust(self) -> None:
        """Re-read the trust dir's policy and credentials (loop/trust_refresh)."""
        self.trust.refresh(first=self.passes == 0)

    def write_status(self) -> None:
        with self._lock:
            if self._closed:  # a step abandoned at shutdown must not leave a temp file
                return
            publish_conditions(self.repo, self.planned, self.quarantine.snapshot())
            try:
                body = write_snapshot(
                    self.state_dir,
                    self.desired,
                    self.observe(),
                    self.ctx.describe(),
                    self.ready(),
                    progress=self.ctx.download_progress(),
                    overrides=self.operator.snapshot(),
                    reasons=self.quarantine.snapshot().reasons,
                    passes=self.passes,
                    store=self.ctx.store_health(),
                    desired_commit=self.commits.verdict_json(),
                    steps=self.ctx.step_progress(),
                    journal=self.journal_health.to_json() if self.journal_health else None,
                    device=self.device.to_json() if self.device else None,
                )
            except OSError as e:
                log.warning("status.write-failed", error=str(e))
                return
            self.notifier.status(status_line(body))
        if self._on_status is not None:
            self._on_status()

    def busy(self) -> bool:
        return self.schedule.busy()
