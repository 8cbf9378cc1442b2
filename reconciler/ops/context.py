"""Operations: every side effect a step may have, composed from the pieces of `reconciler.ops`.

Steps say which operation they need (`reconciler.core.steps.StepContext` is the protocol);
`Operations` implements it by handing each one to the piece that owns that concern:

    backends       the inference backends here, loaded once, and the build keys they imply
    authorization  the signed manifest against the device trust policy, cached per digest+policy
    prepare        fetch (with progress), verify, build; the verified-model proofs
    memory         what fits, making room, the sequential-swap bookkeeping
    instances      load, warm, health-check, swap, revert, restore, unload
    rollout        canary and shadow stages; how far each candidate got
    retention      retire: what is expired, never what is loaded or pinned
    observe        the Observed the planner sees

It is called `Operations`, not `StepContext`, because it is more than the protocol the steps see:
the loop also observes through it, restores at startup, pins what desired state wants and hands
it the trust policy — and one name for two different things (a protocol and its implementation)
made every import ambiguous. The constructor is the one place the pieces are wired together;
settings (memory budget, clock, callbacks to the controller) come in as its arguments. Only the
executor calls the step operations, and it journals each one before it acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reconciler.core.desired import ModelSpec
from reconciler.core.observed import Observed
from reconciler.core.steps import Detail, Wait
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.download import fetch_bytes
from reconciler.fetch.ratelimit import TokenBucket
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.authorization import Authorizer
from reconciler.ops.backends import Backends
from reconciler.ops.background import Background
from reconciler.ops.instances import Instances
from reconciler.ops.memory import MemoryPlanner
from reconciler.ops.observe import NOTHING, Observer
from reconciler.ops.prepare import Preparer
from reconciler.ops.probe import Prober, ProbeSettings
from reconciler.ops.progress import StepProgress
from reconciler.ops.repair import StoreRepair
from reconciler.ops.retention import Retention
from reconciler.ops.rollout import RolloutProgress, Rollouts
from reconciler.state.damaged import DamagedFiles
from reconciler.state.journal import Journal
from reconciler.state.store import Store
from reconciler.trust.policy import TrustPolicy
from runtime.serving.slot import Repository


class Operations:
    """The step context (reconciler.core.steps.StepContext): what every step operation needs.

    Settings: `policy`: the device's trust policy (from its trust dir, never from desired state).
    `memory_budget`: bytes all loaded instances may use (None: the device's own limit).
    `clock`: monotonic seconds, for rollout stages and the sequential-swap window.
    `on_progress()`: a long step advanced (at most twice a second), for the status writer.
    `on_rollout_event(model)`: a candidate in a rollout stage failed a request.
    `on_store_damaged(model, kind)`: a stored blob or artifact was found damaged (metric).
    `probe`: the limits of a new model's first run in a child (reconciler.ops.probe).
    `download_rate_limit`: bytes/s all model downloads may take together (None: no cap).
    """

    def __init__(
        self,
        state_dir: Path,
        journal: Journal,
        repo: Repository,
        *,
        threads: int | None = None,
        policy: TrustPolicy | None = None,
        memory_budget: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        backends: Backends | None = None,
        store: Store | None = None,
        artifacts: ArtifactCache | None = None,
        on_progress: Callable[[], None] | None = None,
        on_rollout_event: Callable[[str], None] | None = None,
        on_store_damaged: Callable[[str, str], None] | None = None,
        probe: ProbeSettings | None = None,
        download_rate_limit: int | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.journal = journal
        self.repo = repo
        self.store = store or Store(state_dir / "store")
        self.artifacts = artifacts or ArtifactCache(state_dir / "artifacts")
        # hashing, checking, building, warm-up: at nice 10
        self.background = Background()
        self.backends = backends or Backends()
        self.authorizer = Authorizer(policy, read_document=self._read_document)
        self.repair = StoreRepair(journal, DamagedFiles(state_dir / "damaged"), on_store_damaged)
        self.steps = StepProgress(on_progress, clock)
        self.prepare = Preparer(
            self.store,
            self.artifacts,
            self.authorizer,
            self.backends,
            self.background,
            self.repair,
            self.steps,
            TokenBucket(download_rate_limit) if download_rate_limit else None,
        )
        self.memory = MemoryPlanner(repo, memory_budget, clock)
        self.rollout_progress = RolloutProgress()
        self.rollouts = Rollouts(repo, self.rollout_progress, clock, on_rollout_event)
        self.prober = Prober(journal, probe)
        self.instances = Instances(
            repo,
            journal,
            self.prepare,
            self.authorizer,
            self.backends,
            self.memory,
            self.rollout_progress,
            self.background,
            threads,
            self.prober,
        )
        self.retention = Retention(self.store, self.artifacts, repo, journal, self.backends)
        self.observer = Observer(
            repo, self.store, self.artifacts, self.backends, self.rollout_progress, self.repair
        )

    # -- the steps (reconciler.core.steps.StepContext) ----------------------------------------
    def fetch(self, spec: ModelSpec) -> Detail:
        return self.prepare.fetch(spec)

    def verify(self, spec: ModelSpec) -> Detail:
        return self.prepare.verify(spec)

    def build(self, spec: ModelSpec, key: str) -> Detail:
        return self.prepare.build(spec, key)

    def warm(self, spec: ModelSpec, key: str) -> Detail:
        return self.instances.warm(spec, key)

    def health_check(self, spec: ModelSpec) -> Detail:
        return self.instances.health_check(spec)

    def rollout(self, spec: ModelSpec, stage: int) -> Detail | Wait:
        return self.rollouts.rollout(spec, stage)

    def swap(self, spec: ModelSpec) -> Detail:
        return self.instances.swap(spec)

    def retire(self, model: str, keep_standby: bool, keep_versions: int) -> Detail:
        return self.retention.retire(model, keep_standby, keep_versions)

    def revert(self, model: str, reason: str) -> Detail:
        return self.instances.revert(model, reason)

    def unload(self, model: str) -> Detail:
        return self.instances.unload(model)

    # -- for the loop ------------------------------------------------------------------------
    def observe(
        self, quarantined: Mapping[str, str] = NOTHING, last_errors: Mapping[str, str] = NOTHING
    ) -> Observed:
        return self.observer.observe(quarantined, last_errors)

    def describe(self) -> dict[str, Any]:
        """The repository as the status snapshot shows it."""
        return self.observer.describe()

    def store_health(self) -> dict[str, dict[str, Any]]:
        """model -> damaged copies found and repairs in progress, for the status snapshot."""
        return self.repair.describe()

    def restore(self, spec: ModelSpec) -> Detail:
        return self.instances.restore(spec)

    def seed_authorization(self, spec: ModelSpec, recorded: dict[str, Any] | None) -> None:
        self.authorizer.seed(spec, recorded)

    def in_sequential_swap(self, model: str) -> bool:
        return self.memory.in_sequential_swap(model)

    def pin(self, specs: list[ModelSpec]) -> None:
        """What these deployments need is never garbage-collected (set on every pass)."""
        self.retention.pin(specs)

    def download_progress(self) -> dict[str, tuple[int, int | None]]:
        return self.prepare.downloads()

    def step_progress(self) -> dict[str, dict[str, Any]]:
        """model -> its long step in progress (`StepProgressRecord` as JSON), for status."""
        return {model: r.to_json() for model, r in self.steps.snapshot().items()}

    @property
    def policy(self) -> TrustPolicy:
        return self.authorizer.policy

    @policy.setter
    def policy(self, policy: TrustPolicy) -> None:
        self.authorizer.policy = policy

    @property
    def credentials(self) -> Credentials:
        """Per-host secrets and TLS for sources (`<trust>/credentials.yaml`), set by the loop."""
        return self.prepare.credentials

    @credentials.setter
    def credentials(self, credentials: Credentials) -> None:
        self.prepare.credentials = credentials

    def _read_document(self, url: str, *, allow_http: bool = False) -> bytes:
        return fetch_bytes(url, allow_http=allow_http, credentials=self.prepare.credentials)

    def abandon_unwanted(self, wanted: Mapping[str, str]) -> list[str]:
        """Kill the probes of deployments no longer wanted (model -> desired digest)."""
        return self.prober.abandon_unwanted(wanted)

    def stopping(self) -> None:
        """The daemon is stopping: cut short what may run long (a probe in flight)."""
        self.prober.stop()

    def shutdown(self) -> None:
        self.prober.stop()
        self.background.shutdown()
