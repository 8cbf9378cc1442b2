"""May these bytes be served here? The signed manifest judged against the device trust policy.

Fetch (to cap the download at the signed size), verify, load (to record who authorised the
instance) and the swap back to a standby all ask; the answer is cached per model, keyed by the
desired digest *and* the policy, so one deployment reads its manifest once, while a changed
policy (a key removed, a min_version raised) judges it again. At startup and on a revert the
executor seeds the cache from the journal (`seed`): serving a version promoted before must not
wait for the registry to be reachable.

The policy itself comes from the device's trust dir, never from desired state; the controller
hands in a new one (`policy`) whenever it re-reads that dir.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Callable
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import TransientError
from reconciler.fetch.download import fetch_bytes, manifest_location, signature_location
from reconciler.trust.policy import Authorization, TrustPolicy, authorize

log = structlog.get_logger("hotswap.authorization")

ReadDocument = Callable[..., bytes]  # (url, *, allow_http) -> bytes, as fetch_bytes


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Authorizer:
    def __init__(
        self,
        policy: TrustPolicy | None = None,
        read_document: ReadDocument = fetch_bytes,
        now: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.policy = policy or TrustPolicy(keys={})
        self._read = read_document
        self._now = now
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, Authorization]] = {}  # model -> (key, authorization)

    def _key(self, spec: ModelSpec) -> str:
        return spec.digest + json.dumps(self.policy.to_json(), sort_keys=True)

    def _cached(self, spec: ModelSpec) -> Authorization | None:
        with self._lock:
            entry = self._cache.get(spec.name)
        return entry[1] if entry and entry[0] == self._key(spec) else None

    def _remember(self, spec: ModelSpec, auth: Authorization) -> None:
        with self._lock:
            self._cache[spec.name] = (self._key(spec), auth)

    def authorize(self, spec: ModelSpec) -> Authorization:
        """The judgement for this deployment under today's policy; raises IntegrityError."""
        cached = self._cached(spec)
        if cached is not None:
            return cached
        url = manifest_location(spec)
        manifest = self._document(url)
        signature = self._document(signature_location(spec)) if manifest is not None else None
        auth = authorize(
            self.policy,
            name=spec.name,
            version=spec.version,
            sha256=spec.sha256,
            manifest=manifest,
            signature=signature,
            now=self._now(),
        )
        if not auth.signed:
            log.warning(
                "verify.UNSIGNED",
                model=spec.name,
                version=spec.version,
                note="accepted only because the device trust policy sets allow_unsigned",
            )
        self._remember(spec, auth)
        return auth

    def seed(self, spec: ModelSpec, recorded: dict[str, Any] | None) -> None:
        """Take the authorization the journal recorded when `spec` was promoted."""
        if isinstance(recorded, dict):
            known = {f.name for f in dataclasses.fields(Authorization)}
            self._remember(spec, Authorization(**{k: v for k, v in recorded.items() if k in known}))

    def _document(self, url: str) -> bytes | None:
        """A manifest or signature, or None when the registry has none (not when it is down)."""
        try:
            return self._read(url, allow_http=self.policy.allow_http)
        except TransientError as e:
            if e.reason == "source-missing":
                return None
            raise
