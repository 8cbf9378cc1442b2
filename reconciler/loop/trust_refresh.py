"""The trust dir, re-read on every pass: the policy and credentials.yaml.

A broken file keeps the last good one in force (a typo must not stop verification, nor let
everything through); its error is logged and journaled once, not on every pass. The warnings
that matter to whoever runs the device (unsigned models allowed, a retired key, no key at all)
come at the first pass and whenever the policy is readable again.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from reconciler.core.names import Event, Phase
from reconciler.ops.context import Operations
from reconciler.ops.credentials import CredentialsError, load_credentials
from reconciler.state.journal import Journal
from reconciler.trust.policy import TrustConfigError, load_policy

log = structlog.get_logger("hotswap.controller")


class TrustRefresher:
    def __init__(self, trust_dir: Path, journal: Journal, ctx: Operations) -> None:
        self.trust_dir = trust_dir
        self.journal = journal
        self.ctx = ctx
        self._trust_error: str | None = None
        self._credentials_error: str | None = None

    def refresh(self, first: bool) -> None:
        """Re-read both; `first`: the daemon's first pass (the warnings are said then)."""
        self._refresh_credentials()
        try:
            self.ctx.policy = load_policy(self.trust_dir)
        except TrustConfigError as e:
            if e.message != self._trust_error:
                log.error("trust.invalid", trust_dir=str(self.trust_dir), error=e.message)
                self.journal.append("-", Event.TRUST, Phase.FAILED, detail={"message": e.message})
            self._trust_error = e.message
            return
        if self._trust_error is not None or first:
            self._warn()
        self._trust_error = None

    def _warn(self) -> None:
        policy, where = self.ctx.policy, str(self.trust_dir)
        if policy.allow_unsigned:
            log.warning(
                "trust.ALLOW-UNSIGNED", trust_dir=where, note="unsigned models will be served"
            )
        for why in policy.retired_keys:
            log.warning("trust.retired-key", trust_dir=where, note=why)
        if not policy.keys and policy.roots is None and not policy.allow_unsigned:
            log.warning(
                "trust.no-keys", trust_dir=where,
                note="no model can be verified until a publisher key (*.pub) or root (*.crt) is"
                " installed here",
            )  # fmt: skip

    def _refresh_credentials(self) -> None:
        """Re-read credentials.yaml; a broken one keeps the last good (its errors name no secret)."""
        try:
            self.ctx.credentials = load_credentials(self.trust_dir)
        except CredentialsError as e:
            if e.message != self._credentials_error:
                log.error("credentials.invalid", trust_dir=str(self.trust_dir), error=e.message)
                self.journal.append("-", Event.TRUST, Phase.FAILED, detail={"message": e.message})
            self._credentials_error = e.message
            return
        self._credentials_error = None
