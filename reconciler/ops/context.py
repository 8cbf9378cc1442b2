"""The step context: every side effect a step may have, in one place.

Steps say which operation they need (`reconciler.core.steps.StepContext` is the protocol); this class
does the I/O: the store and fetch, verification against the device trust policy, the build
cache, loading, warm-up and health checks of candidates, and the swap in the runtime's slots.
It also observes: `observe()` is the runtime and store as the planner sees them. Only the
executor calls these operations, and it journals each one before it acts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.buildkey import build_key
from reconciler.core.desired import ModelSpec, spec_from_json, spec_to_json
from reconciler.core.errors import HotswapError, RuntimeFailure, TransientError
from reconciler.core.gates import POLL_S, judge
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.core.steps import Detail, Wait
from reconciler.fetch.download import fetch, fetch_bytes, manifest_location
from reconciler.fetch.transports import ProgressBar
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.background import Background, heavy
from reconciler.state.crashpoint import crashpoint
from reconciler.state.journal import Journal
from reconciler.state.store import Store
from reconciler.trust.policy import Authorization, TrustPolicy, authorize
from reconciler.verify.health import health_check, warm_up
from reconciler.verify.model import VerifiedModel, verify
from runtime.backends import Backend, available_backends, get_backend
from runtime.serving.slot import Instance, Repository
from runtime.serving.traffic import Split

log = structlog.get_logger("hotswap.context")


def _info(inst: Instance | None, healthy_default: bool = True) -> InstanceInfo | None:
    if inst is None:
        return None
    m = inst.meta
    return InstanceInfo(
        version=inst.version,
        sha256=m.get("sha256", ""),
        build_key=m.get("build_key", ""),
        digest=m.get("digest", ""),
        healthy=inst.healthy or healthy_default,
        source_file=m.get("source_file", ""),
        stages_passed=int(m.get("stages_passed", 0)),
    )


def _matches(inst: Instance, spec: ModelSpec, key: str) -> bool:
    return inst.meta.get("build_key") == key and inst.meta.get("digest") == spec.digest


class StepContext:
    def __init__(
        self,
        state_dir: Path,
        journal: Journal,
        repo: Repository,
        threads: int | None = None,
        policy: TrustPolicy | None = None,
        *,
        memory_budget: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[], None] | None = None,
        on_rollout_event: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = state_dir
        # The device's trust policy: from the device's trust dir, never from desired state.
        self.policy = policy or TrustPolicy(keys={})
        self._authorized: dict[str, tuple[str, Authorization]] = {}  # model -> (digest, auth)
        self.store = Store(state_dir / "store")
        self.artifacts = ArtifactCache(state_dir / "artifacts")
        self.journal = journal
        self.repo = repo
        self.threads = threads
        self.background = Background()  # hashing, checking, building, warm-up: at nice 10
        self._backends: dict[str, Backend] = {}
        self._backend_versions = tuple(sorted(available_backends().items()))
        self._verified: dict[str, VerifiedModel] = {}
        self._lock = threading.Lock()
        self.failures: dict[str, tuple[str, str]] = {}  # model -> (desired digest, message)
        self.last_error: dict[str, str] = {}
        # What the current desired state of every model needs: never garbage-collected.
        self.pinned_blobs: frozenset[str] = frozenset()
        self.pinned_keys: frozenset[str] = frozenset()
        # Downloads in flight: model -> (bytes, total); `on_progress` (the controller's status
        # writer) is called at most once a second while they run.
        self.progress: dict[str, tuple[int, int | None]] = {}
        self.on_progress = on_progress
        # Memory all loaded instances may use (bytes; None: no limit but the device's own).
        # When a candidate cannot be loaded beside the active version, the swap is sequential.
        self.memory_budget = memory_budget
        self._sequential: dict[str, float] = {}  # model -> when its active version was unloaded
        self.clock = clock  # rollout stage timing (tests inject)
        # Called when a candidate in a rollout stage fails a request, so the controller judges
        # the stage at once instead of at its next poll.
        self.on_rollout_event = on_rollout_event  # (model)

    # -- observation -----------------------------------------------------------------------
    def observe(self) -> Observed:
        models: dict[str, ModelObserved] = {}
        for name in set(self.repo.names()) | set(self.failures):
            slot = self.repo.get(name)
            failed = self.failures.get(name)
            models[name] = ModelObserved(
                name=name,
                active=_info(slot.active) if slot else None,
                candidate=_info(slot.candidate, healthy_default=False) if slot else None,
                standby=_info(slot.standby) if slot else None,
                failed_digest=failed[0] if failed else None,
                last_error=self.last_error.get(name),
            )
        return Observed(
            models=models,
            blobs=self.store.blobs(),
            artifacts=self.artifacts.keys(),
            backend_versions=self._backend_versions,
        )

    def backend(self, name: str) -> Backend:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = get_backend(name)
            return self._backends[name]

    def key_for(self, spec: ModelSpec) -> str:
        return build_key(spec, dict(self._backend_versions).get(spec.backend))

    # -- step operations ---------------------------------------------------------------------
    @heavy
    def fetch(self, spec: ModelSpec) -> Detail:
        path = self._fetch(spec)
        return {"blob": path.name, "bytes": path.stat().st_size}

    def _fetch(self, spec: ModelSpec) -> Path:
        bar = ProgressBar(f"{spec.name} v{spec.version}")
        written = [float("-inf")]  # this download's first report is shown at once

        def progress(done: int, total: int | None) -> None:
            self.progress[spec.name] = (done, total)
            bar(done, total)
            now = time.monotonic()
            if self.on_progress and now - written[0] >= 1.0:
                written[0] = now
                self.on_progress()

        # Metadata before bytes: the signed manifest says how big the model may be.
        auth = self.authorize(spec)
        cap = (
            min(auth.size, self.policy.max_model_bytes)
            if auth.size
            else self.policy.max_model_bytes
        )
        try:
            return fetch(
                spec,
                self.store,
                max_bytes=cap,
                allow_http=self.policy.allow_http,
                progress=progress,
            )
        finally:
            self.progress.pop(spec.name, None)
            bar.close()

    @heavy
    def verify(self, spec: ModelSpec) -> Detail:
        path = self.store.path(spec.sha256)
        if not path.is_file():
            raise TransientError(
                f"verify {spec.name} v{spec.version}: blob {spec.sha256[:12]} is not in the store",
                reason="blob-missing",
            )
        auth = self.authorize(spec)
        self._verified[spec.name] = verify(
            spec,
            path,
            allowed_domains=self.policy.allowed_domains,
            max_bytes=self.policy.max_model_bytes,
        )
        checks = ["signature" if auth.signed else "UNSIGNED", "sha256", "onnx", "interface"]
        return {"sha256": spec.sha256, "checks": checks, "authorization": auth.to_json()}

    def _authorization_key(self, spec: ModelSpec) -> str:
        # A changed trust policy (a key removed, a min_version raised) judges again.
        return spec.digest + json.dumps(self.policy.to_json(), sort_keys=True)

    def authorize(self, spec: ModelSpec) -> Authorization:
        """Check the signed manifest against the device trust policy (cached per digest and
        policy, so verify and build of one deployment read the manifest once)."""
        cached = self._authorized.get(spec.name)
        if cached and cached[0] == self._authorization_key(spec):
            return cached[1]
        url = manifest_location(spec)
        manifest = self._document(url)
        signature = self._document(url + ".sig") if manifest is not None else None
        auth = authorize(
            self.policy,
            name=spec.name,
            version=spec.version,
            sha256=spec.sha256,
            manifest=manifest,
            signature=signature,
            now=dt.datetime.now(dt.timezone.utc),
        )
        if not auth.signed:
            log.warning(
                "verify.UNSIGNED",
                model=spec.name,
                version=spec.version,
                note="accepted only because the device trust policy sets allow_unsigned",
            )
        self._authorized[spec.name] = (self._authorization_key(spec), auth)
        return auth

    def seed_authorization(self, spec: ModelSpec, recorded: dict[str, Any] | None) -> None:
        if isinstance(recorded, dict):
            known = {f.name for f in dataclasses.fields(Authorization)}
            auth = Authorization(**{k: v for k, v in recorded.items() if k in known})
            self._authorized[spec.name] = (self._authorization_key(spec), auth)

    def _document(self, url: str) -> bytes | None:
        """A manifest or signature, or None when the registry has none (not when it is down)."""
        try:
            return fetch_bytes(url, allow_http=self.policy.allow_http)
        except TransientError as e:
            if e.reason == "source-missing":
                return None
            raise

    def _verified_for(self, spec: ModelSpec) -> VerifiedModel:
        v = self._verified.get(spec.name)
        if v is None or v.spec.digest != spec.digest:
            self.verify(spec)
            v = self._verified[spec.name]
        return v

    @heavy
    def build(self, spec: ModelSpec, key: str) -> Detail:
        path = self.artifacts.build(self._verified_for(spec), key, self.backend(spec.backend))
        return {"build_key": key, "artifact": str(path), "bytes": path.stat().st_size}

    def _artifact(self, spec: ModelSpec, key: str) -> Path:
        """The verified, built artifact for `spec`, its own sha256 checked (once per load)."""
        self._verified_for(spec)
        if key not in self.artifacts.keys():  # noqa: SIM118 - keys() scans the disk
            self.build(spec, key)
        return self.artifacts.open(key)

    def _load(self, spec: ModelSpec, key: str, artifact: Path | None = None) -> Instance:
        artifact = artifact or self._artifact(spec, key)
        verified = self._verified_for(spec)
        backend = self.backend(spec.backend)
        need = self._memory_need(backend, artifact)
        try:
            session = backend.load(artifact, threads=self.threads)
        except HotswapError:
            raise
        except Exception as e:
            raise RuntimeFailure(
                f"load {spec.name} v{spec.version}: {e}", reason="load-failed"
            ) from e
        meta = {
            "sha256": spec.sha256,
            "build_key": key,
            "digest": spec.digest,
            "source_file": spec.file,
            "backend": spec.backend,
            "precision": spec.precision,
            "platform": {"tensorrt": "tensorrt_plan"}.get(spec.backend, f"{spec.backend}_onnx"),
            "authorization": self.authorize(spec).to_json(),  # cached by verify: no I/O
            "interface": [t.name for t in verified.inputs + verified.outputs],
            "memory": need,
        }
        return Instance(spec.name, spec.version, session, meta)

    @heavy
    def warm(self, spec: ModelSpec, key: str) -> Detail:
        artifact = self._artifact(spec, key)
        sequential = self._make_room(spec, artifact)
        inst = self._load(spec, key, artifact)
        try:
            warm_up(spec, inst.session)
        except BaseException:
            inst.retire()
            raise
        self.repo.slot(spec.name).set_candidate(inst)
        detail: dict[str, Any] = {
            "iterations": spec.health.warmup_iterations,
            "memory": inst.meta["memory"],
        }
        if sequential:
            detail["sequential"] = True
        return detail

    # -- memory: side by side when both versions fit, else one after the other ---------------
    def _memory_need(self, backend: Backend, artifact: Path) -> int:
        """Bytes an instance of `artifact` will hold: the backend's own figure when it has one
        (a TensorRT engine's device memory), else twice the artifact (weights plus arena), a
        deliberately generous estimate for ONNX Runtime on CPU."""
        estimate = getattr(backend, "memory_need", None)
        return int(estimate(artifact)) if estimate else 2 * artifact.stat().st_size

    def _resident(self) -> int:
        total = 0
        for name in self.repo.names():
            slot = self.repo.get(name)
            for inst in (slot.active, slot.candidate, slot.standby) if slot else ():
                if inst is not None:
                    total += int(inst.meta.get("memory", 0))
        return total

    def _free_memory(self, backend: Backend) -> int | None:
        limits = []
        if self.memory_budget is not None:
            limits.append(self.memory_budget - self._resident())
        probe = getattr(backend, "memory_free", None)
        free = probe() if probe else None
        if free is not None:
            limits.append(int(free))
        return min(limits) if limits else None

    def _make_room(self, spec: ModelSpec, artifact: Path) -> bool:
        """Make room for the candidate; True when that meant unloading the active version.

        Order: the standby goes first (it only speeds up a revert); only when the candidate
        still does not fit beside the active version is the active one unloaded — a sequential
        swap, with the model unavailable until the candidate is proven (or the old version is
        reloaded by the revert). A candidate that would not fit even alone is refused with the
        active version untouched.
        """
        backend = self.backend(spec.backend)
        need = self._memory_need(backend, artifact)
        free = self._free_memory(backend)
        slot = self.repo.slot(spec.name)
        if free is None or need <= free:
            return False
        if slot.standby is not None:
            slot.drop_standby()
            free = self._free_memory(backend)
            if free is None or need <= free:
                return False
        active = slot.active
        reclaimable = int(active.meta.get("memory", 0)) if active else 0
        if active is None or need > free + reclaimable:
            raise RuntimeFailure(
                f"warm {spec.name} v{spec.version}: needs about {need} bytes of memory, and only"
                f" {free + reclaimable} would be free even with the active version unloaded"
                " (raise --memory-budget or free memory)",
                reason="memory-budget",
            )
        if spec.rollout.stages:
            # A canary or shadow compares the two versions on live traffic: unloading the
            # serving one first would leave nothing to compare with, and no service meanwhile.
            raise RuntimeFailure(
                f"warm {spec.name} v{spec.version}: a {spec.rollout.strategy} needs both versions"
                f" loaded (about {need} bytes more), and they do not fit together; use strategy"
                " immediate for a sequential swap, or raise --memory-budget",
                reason="rollout-no-room",
            )
        log.warning(
            "swap.sequential",
            model=spec.name,
            unloading=active.version,
            candidate=spec.version,
            need=need,
            free=free,
            note="both versions do not fit: the model is unavailable until the candidate is proven",
        )
        self._sequential[spec.name] = time.monotonic()
        slot.deactivate()
        return True

    def in_sequential_swap(self, model: str) -> bool:
        return model in self._sequential

    def _unavailable_ms(self, model: str) -> float | None:
        started = self._sequential.pop(model, None)
        return None if started is None else round((time.monotonic() - started) * 1000, 1)

    @heavy
    def health_check(self, spec: ModelSpec) -> Detail:
        slot = self.repo.slot(spec.name)
        cand = slot.candidate
        if cand is None or cand.meta.get("digest") != spec.digest:
            raise RuntimeFailure(
                f"health-check {spec.name} v{spec.version}: no candidate loaded",
                reason="no-candidate",
            )
        report = health_check(spec, cand.session)
        cand.healthy = True
        return report.to_json()

    # -- rollout stages (canary, shadow) ---------------------------------------------------
    def rollout(self, spec: ModelSpec, stage: int) -> Detail | Wait:
        """Start stage `stage` (shift or mirror its share of traffic), or judge it.

        A failed gate sends all traffic back to the active version *before* the failure is
        journaled: that is the safe direction, and it is what makes a revert one pointer change
        within milliseconds of the decision. A crash between the two leaves a stage that began
        and never ended, which the next start simply runs again (the candidate is not loaded
        after a restart, so it is warmed, checked and canaried from stage 1)."""
        slot = self.repo.slot(spec.name)
        cand = slot.candidate
        rollout = spec.rollout
        where = f"{rollout.strategy} {spec.name} v{spec.version} stage {stage + 1}/{len(rollout.stages)}"
        if cand is None or cand.meta.get("digest") != spec.digest or not cand.healthy:
            raise RuntimeFailure(
                f"{where}: no health-checked candidate loaded", reason="no-candidate"
            )
        if slot.active is None:
            raise RuntimeFailure(
                f"{where}: a {rollout.strategy} needs the serving version loaded beside the"
                " candidate, and both do not fit in memory (use strategy immediate for this"
                " model, or raise --memory-budget)",
                reason="rollout-no-room",
            )
        current = rollout.stages[stage]
        split = slot.split
        if split is None or split.digest != spec.digest or split.stage != stage:
            gates = rollout.gates
            compare = rollout.strategy == "canary" and (
                gates.max_output_divergence is not None or gates.min_top1_agreement is not None
            )
            split = Split(
                rollout.strategy,
                stage,
                current.weight,
                spec.digest,
                compare,
                clock=self.clock,
                error_budget=(rollout.gates.max_error_rate, rollout.gates.min_requests),
            )
            if self.on_rollout_event is not None:
                split.on_candidate_error = functools.partial(self.on_rollout_event, spec.name)
            slot.start_split(split)
            log.info(
                "rollout.stage",
                model=spec.name,
                version=spec.version,
                stage=stage + 1,
                weight=current.weight,
                duration=current.duration,
                strategy=rollout.strategy,
            )
            return Wait(min(current.duration_s, POLL_S), f"{where} started")
        figures = split.snapshot()
        verdict = judge(
            rollout.strategy, current, rollout.gates, figures, self.clock() - split.started
        )
        if verdict.outcome == "wait":
            return Wait(verdict.after_s, f"{where}: {verdict.why}")
        if verdict.outcome == "fail":
            # An error gate may have stopped the split routing to the candidate already, at the
            # failing request itself (`tripped_at`); every other gate is decided here.
            tripped = split.tripped
            decided = time.perf_counter()
            # a shadow never sent traffic to the candidate: there is no revert to time
            slot.end_split(decided_at=decided if rollout.strategy == "canary" else None)
            back_ms = 0.0 if tripped else round((time.perf_counter() - decided) * 1000, 3)
            serving = slot.active.version if slot.active else None
            raise RuntimeFailure(
                f"{where}: {verdict.why}; all traffic back to v{serving}",
                reason="rollout-gate",
                detail={
                    "stage": stage + 1,
                    "figures": figures,
                    "traffic_back_ms": back_ms,
                    "stopped_at_failing_request": tripped,
                },
            )
        cand.meta["stages_passed"] = stage + 1
        return {
            "stage": stage + 1,
            "of": len(rollout.stages),
            "weight": current.weight,
            "verdict": verdict.why,
            "figures": figures,
        }

    def swap(self, spec: ModelSpec) -> Detail:
        slot = self.repo.slot(spec.name)
        old = slot.active.version if slot.active else None
        key = self.key_for(spec)
        standby = slot.standby
        if slot.candidate is None and standby is not None and _matches(standby, spec, key):
            # Going back to the version kept warm: one pointer change, no load, no warm-up —
            # but still under today's trust policy (a key revoked or a min_version raised since).
            self.authorize(spec)
            new = slot.promote_standby(spec.retention.keep_standby, decided_at=time.perf_counter())
        else:
            cand = slot.candidate
            judged = int(cand.meta.get("stages_passed", 0)) if cand else 0
            if judged < len(spec.rollout.stages):
                # The planner never asks for this; the check makes "never promoted unjudged" a
                # property of the swap itself, not of every path that might reach it.
                raise RuntimeFailure(
                    f"swap {spec.name} v{spec.version}: the candidate passed {judged} of"
                    f" {len(spec.rollout.stages)} {spec.rollout.strategy} stages",
                    reason="rollout-unjudged",
                )
            new = slot.promote_candidate(spec.retention.keep_standby)
        crashpoint("swap:flipped")
        self.failures.pop(spec.name, None)
        self.last_error.pop(spec.name, None)
        unavailable = self._unavailable_ms(spec.name)
        return {
            **(
                {"sequential": True, "unavailable_ms": unavailable}
                if unavailable is not None
                else {}
            ),
            "promoted": new.version,
            "previous": old,
            "build_key": new.meta["build_key"],
            "spec": spec_to_json(spec),
            # who authorised it (key id, manifest digest); the git commit is the record's revision
            "authorization": new.meta.get("authorization"),
        }

    def retire(self, model: str, keep_standby: bool, keep_versions: int) -> Detail:
        slot = self.repo.slot(model)
        if not keep_standby:
            slot.drop_standby()
        old_blobs, old_keys = self._expired(model, keep_versions)
        for sha in old_blobs:
            self.store.path(sha).unlink(missing_ok=True)
        for key in old_keys:
            self.artifacts.remove(key)
        self.store.clean_partials(keep=self.pinned_blobs)  # week-old abandoned downloads
        return {"removed_blobs": sorted(old_blobs), "removed_artifacts": sorted(old_keys)}

    def _expired(self, model: str, keep_versions: int) -> tuple[set[str], set[str]]:
        """This model's blobs and artifacts beyond retention.

        Only what this model's own history brought in is considered, so retiring one model
        never touches another's files; anything loaded anywhere, or wanted by the current
        desired state of any model (`pinned`, set by the controller each pass), is kept.
        """
        seen_blobs: set[str] = set()
        seen_keys: set[str] = set()
        promoted: list[tuple[str, str]] = []  # (sha256, build key), most recently promoted last
        for rec in self.journal.records(model):
            detail = rec.details
            if rec.phase != "done":
                continue
            if rec.step == "fetch":
                seen_blobs.add(detail.get("blob", ""))
            elif rec.step == "build":
                seen_keys.add(detail.get("build_key", ""))
            elif rec.step == "swap":
                entry = (detail.get("spec", {}).get("sha256", ""), detail.get("build_key", ""))
                if entry in promoted:
                    promoted.remove(entry)
                promoted.append(entry)
        keep_blobs, keep_keys = set(self.pinned_blobs), set(self.pinned_keys)
        for sha, key in promoted[-keep_versions:]:
            keep_blobs.add(sha)
            keep_keys.add(key)
        for name in self.repo.names():
            slot = self.repo.get(name)
            for inst in (slot.active, slot.candidate, slot.standby) if slot else ():
                if inst is not None:
                    keep_blobs.add(inst.meta.get("sha256", ""))
                    keep_keys.add(inst.meta.get("build_key", ""))
        return seen_blobs - keep_blobs - {""}, seen_keys - keep_keys - {""}

    def revert(self, model: str, reason: str) -> Detail:
        slot = self.repo.get(model)
        dropped = slot.drop_candidate() if slot else None
        detail: dict[str, Any] = {"dropped": dropped.version if dropped else None, "reason": reason}
        if model in self._sequential:
            # The active version was unloaded to make room: bring the last promoted one back.
            promoted = self.journal.last_promoted().get(model)
            if promoted is not None:
                spec = spec_from_json(promoted.details["spec"])
                self.seed_authorization(spec, promoted.details.get("authorization"))
                self.restore(spec)
                detail["resumed"] = spec.version
            detail["unavailable_ms"] = self._unavailable_ms(model)
        detail["serving"] = slot.active.version if slot and slot.active else None
        return detail

    def unload(self, model: str) -> Detail:
        self.repo.remove(model)
        self.failures.pop(model, None)
        self.last_error.pop(model, None)
        return {}

    def restore(self, spec: ModelSpec) -> Detail:
        """Serve a previously promoted version again (startup): verify, build if needed, load, activate."""
        if not self.store.has(spec.sha256):
            self._fetch(spec)
        key = self.key_for(spec)
        inst = self._load(spec, key)
        inst.healthy = True
        self.repo.slot(spec.name).activate(inst)
        return {"restored": spec.version, "build_key": key}
