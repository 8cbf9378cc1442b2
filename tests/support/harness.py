"""An in-process device for loop tests: the real planner, executor, operations and journal, with a
fake backend, a local signed registry and an injected clock — no daemon, no threads of its own.

`Device.converge(*specs)` does what the controller's passes do, synchronously: plan against what
is observed, run each model's steps through the executor, honour `Wait` by moving the clock on,
and stop when nothing is left to do (or after `max_passes`). A test then reads the journal,
the slots and the quarantine. It runs in milliseconds, so every failure path can have a case.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.desired import Desired, ModelSpec
from reconciler.core.plan import plan
from reconciler.loop.executor import Executor
from reconciler.loop.quarantine import Quarantine
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.ops.probe import ProbeSettings
from reconciler.source.window import closed_windows
from reconciler.state.journal import Journal, Record
from reconciler.trust.policy import load_policy
from runtime.serving.metrics import Metrics
from runtime.serving.slot import Repository
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend
from tests.support.tiny_models import TinyRegistry


@dataclass
class Device:
    root: Path
    registry: TinyRegistry
    backend: FakeBackend = field(default_factory=FakeBackend)
    clock: FakeClock = field(default_factory=FakeClock)
    backends: Backends | None = None  # None: the fake backend only
    probe: ProbeSettings | None = None
    # the wall clock update windows are judged by (None: no model waits for its window)
    wall: dt.datetime | None = None

    def __post_init__(self) -> None:
        self.state = self.root / "state"
        trust = self.state / "trust"
        trust.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.registry.public_key, trust / "publisher.pub")
        self.journal = Journal(self.state / "journal.db")
        self.repo = Repository()
        self.metrics = Metrics()
        self.ops = Operations(
            self.state,
            self.journal,
            self.repo,
            policy=load_policy(trust),
            clock=self.clock,
            backends=self.backends
            or Backends({"fake": self.backend}, {"fake": self.backend.cache_identity}),
            on_store_damaged=lambda m, kind: self.metrics.store_damaged.labels(m, kind).inc(),
            probe=self.probe,
        )
        self.quarantine = Quarantine()
        self.executor = Executor(self.ops, self.metrics, self.quarantine)
        self.outcomes: list[Any] = []  # what each executor run came to, in order

    @classmethod
    def create(cls, root: Path) -> Device:
        return cls(root, TinyRegistry.create(root / "publisher"))

    def restart(self) -> Device:
        """The same device after a power cut: a new process over the same state directory
        (and the same registry), which restores from the journal before anything else."""
        self.close()
        again = Device(
            self.root, self.registry, FakeBackend(self.backend.version), self.clock,
            self.backends, self.probe,
        )  # fmt: skip
        again.executor.restore_all()
        return again

    def traffic(self, requests: int, model: str = "m", candidate_fails: bool = False) -> None:
        """Requests as the server routes and counts them (no HTTP): during a canary stage its
        share goes to the candidate, which fails each one when `candidate_fails`."""
        slot = self.repo.slot(model)
        for i in range(requests):
            with slot.acquire(f"req-{self.clock.now}-{i}") as inst:
                ok = not (candidate_fails and inst is slot.candidate)
                slot.record(inst, ok, 0.001)

    def spec(self, version: str, name: str = "m", **fields: Any) -> ModelSpec:
        return self.registry.spec(name, version, **fields)

    def observe(self) -> Any:
        held = self.quarantine.snapshot()
        return self.ops.observe(held.digests, held.errors)

    def converge(
        self,
        *specs: ModelSpec,
        max_passes: int = 12,
        each_pass: Callable[[], None] | None = None,
    ) -> list[Any]:
        """Plan and run until nothing is left to do; returns this call's outcomes.
        `each_pass()` runs before every pass after the first (e.g. to send traffic)."""
        desired = Desired(models={s.name: s for s in specs})
        self.ops.pin(list(specs))
        start = len(self.outcomes)
        for n in range(max_passes):
            if n and each_pass is not None:
                each_pass()
            observed = self.observe()
            if self.wall is not None:  # as the controller does, from its wall clock
                closed, _ = closed_windows(desired.models.values(), self.wall)
                observed = dataclasses.replace(observed, closed_windows=closed)
            steps = plan(desired, observed)
            if not steps:
                break
            by_model: dict[str, list[Any]] = {}
            for step in steps:
                by_model.setdefault(step.model, []).append(step)
            for model, model_steps in by_model.items():
                outcome = self.executor.run(model, model_steps, desired.models.get(model), None)
                self.outcomes.append(outcome)
                after = getattr(outcome, "requeue_after", None) or getattr(outcome, "after_s", None)
                if after:
                    self.clock.advance(after)
        return self.outcomes[start:]

    def records(self, **match: Any) -> list[Record]:
        """Journal records whose columns equal `match` (step, phase, to_version, model...)."""
        return [
            r for r in self.journal.records() if all(getattr(r, k) == v for k, v in match.items())
        ]

    def serving(self, model: str = "m") -> str | None:
        slot = self.repo.get(model)
        return slot.active.version if slot and slot.active else None

    def close(self) -> None:
        self.ops.shutdown()
        self.journal.close()


def device(root: Path) -> Iterator[Device]:
    d = Device.create(root)
    try:
        yield d
    finally:
        d.close()
