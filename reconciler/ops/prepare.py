"""Preparing a deployment before anything is loaded: fetch, verify, build.

The fetch, verify and build steps come here (through `Operations`), and so do warm and restore
for the verified, built artifact they load. Verification is an in-memory proof (a
`VerifiedModel`, kept per model here): build and load accept nothing else, so whatever needs an
artifact goes through `artifact()`, which verifies and builds again when the proof is missing.
Downloads, verification and builds report their progress into `StepProgress` (`steps`), which
the controller's status writer puts into `status.json`; a download also draws its bar on the
daemon's terminal, if it has one.

A stored blob or build artifact found damaged is handed to `StoreRepair` (set aside, journaled,
counted) and raised as a repair; what is fetched or built again is reported to it as repaired.
`intact_artifact` is how restore keeps serving while the blob is fetched again.

Hashing, checking and building keep a core busy: the steps run on the niced `background` pool.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import IntegrityError, TransientError
from reconciler.core.steps import Detail
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.download import fetch
from reconciler.fetch.progress import terminal_bar
from reconciler.fetch.ratelimit import TokenBucket
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.authorization import Authorizer
from reconciler.ops.backends import Backends
from reconciler.ops.background import Background, heavy
from reconciler.ops.progress import StepProgress
from reconciler.ops.repair import StoreRepair
from reconciler.state.records import BuildDone, FetchDone
from reconciler.state.store import Store
from reconciler.state.store_records import ARTIFACT, BLOB
from reconciler.verify.model import VerifiedModel, verify


class Preparer:
    def __init__(
        self,
        store: Store,
        artifacts: ArtifactCache,
        authorizer: Authorizer,
        backends: Backends,
        background: Background,
        repair: StoreRepair,
        steps: StepProgress | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.store = store
        self.rate_limit = rate_limit  # the device's download rate limit, shared by downloads
        self.repair = repair
        self.artifacts = artifacts
        self.authorizer = authorizer
        self.backends = backends
        self.background = background
        # Downloads in flight: model -> (bytes, total), as `status.json`'s `fetch` has shown
        # them since 0.1.0; `steps` has the long steps' progress with rate and ETA.
        self._progress: dict[str, tuple[int, int | None]] = {}
        self.steps = steps or StepProgress()
        self._verified: dict[str, VerifiedModel] = {}
        self.credentials = Credentials()  # <trust>/credentials.yaml, set with the policy

    def downloads(self) -> dict[str, tuple[int, int | None]]:
        return dict(self._progress)

    @heavy
    def fetch(self, spec: ModelSpec) -> Detail:
        path = self.download(spec)
        return FetchDone(blob=path.name, bytes=path.stat().st_size)

    def download(self, spec: ModelSpec) -> Path:
        """The blob of `spec` in the store, fetched with progress; at most the signed size."""

        def progress(done: int, total: int | None) -> None:
            self._progress[spec.name] = (done, total)
            bar(done, total)
            self.steps.report(spec.name, done, total)

        # Metadata before bytes: the signed manifest says how big the model may be.
        auth = self.authorizer.authorize(spec)
        policy = self.authorizer.policy
        cap = min(auth.size, policy.max_model_bytes) if auth.size else policy.max_model_bytes
        with (
            self.steps.step(spec.name, "fetch", unit="bytes"),
            terminal_bar(f"{spec.name} v{spec.version}") as bar,
        ):
            try:
                path = fetch(
                    spec,
                    self.store,
                    max_bytes=cap,
                    allow_http=policy.allow_http,
                    progress=progress,
                    credentials=self.credentials,
                    rate_limit=self.rate_limit,
                )
            finally:
                self._progress.pop(spec.name, None)
        self.repair.repaired(spec, BLOB, spec.sha256, path.stat().st_size)
        return path

    @heavy
    def verify(self, spec: ModelSpec) -> Detail:
        path = self.store.path(spec.sha256)
        if not path.is_file() and spec.sha256 in self.repair.pending_blobs():
            path = self.download(spec)  # set aside as damaged: the repair is to fetch it again
        if not path.is_file():
            raise TransientError(
                f"verify {spec.name} v{spec.version}: blob {spec.sha256[:12]} is not in the store",
                reason="blob-missing",
            )
        auth = self.authorizer.authorize(spec)
        policy = self.authorizer.policy
        try:
            with self.steps.step(spec.name, "verify", phase="sha256, onnx check, interface"):
                self._verified[spec.name] = verify(
                    spec,
                    path,
                    allowed_domains=policy.allowed_domains,
                    max_bytes=policy.max_model_bytes,
                )
        except IntegrityError as e:
            if e.reason != "sha256-mismatch":
                raise
            # The store only ever holds bytes whose hash matched when they came in: a mismatch
            # now is damage to the local copy (bit-rot, a torn write), not a verdict on the
            # version. Set it aside; the repair fetches it again, checked as on first fetch.
            message = (
                f"{e.message}; the damaged copy in the store was set aside and is fetched again"
            )
            self.repair.set_aside_blob(spec, path, message)
            raise IntegrityError(message, reason="store-damaged") from e
        checks = ["signature" if auth.signed else "UNSIGNED", "sha256", "onnx", "interface"]
        return {"sha256": spec.sha256, "checks": checks, "authorization": auth.to_json()}

    def verified(self, spec: ModelSpec) -> VerifiedModel:
        """The proof for exactly this deployment, verifying again when it is missing or stale."""
        v = self._verified.get(spec.name)
        if v is None or v.spec.digest != spec.digest:
            self.verify(spec)
            v = self._verified[spec.name]
        return v

    @heavy
    def build(self, spec: ModelSpec, key: str) -> Detail:
        backend = self.backends.get(spec.backend)
        verified = self.verified(spec)
        # the TensorRT builder reports its phases here (`reconciler.ops.progress.build_progress`)
        with self.steps.step(spec.name, "build", unit="steps"):
            path = self.artifacts.build(verified, key, backend)
        self.repair.repaired(spec, ARTIFACT, key, path.stat().st_size)
        return BuildDone(build_key=key, artifact=str(path), bytes=path.stat().st_size)

    def artifact(self, spec: ModelSpec, key: str) -> Path:
        """The verified, built artifact for `spec`, its own sha256 checked (once per load)."""
        self.verified(spec)
        if key not in self.artifacts.keys():  # noqa: SIM118 - keys() scans the disk
            self.build(spec, key)
        return self._open(spec, key)

    def intact_artifact(self, spec: ModelSpec, key: str) -> Path | None:
        """The artifact built for `spec`, its sha256 checked, without the blob's proof: what
        restore serves from while a damaged or missing blob is fetched again. The key names
        the blob's sha256 and the artifact was written only after a build from verified bytes,
        so its own hash is the proof. None when there is none; a damaged one is set aside and
        raised as a repair, like any other."""
        if key not in self.artifacts.keys():  # noqa: SIM118 - keys() scans the disk
            return None
        return self._open(spec, key)

    def _open(self, spec: ModelSpec, key: str) -> Path:
        def set_aside(directory: Path, message: str) -> None:
            self.repair.set_aside_artifact(spec, key, directory, message)

        return self.artifacts.open(key, set_aside)
