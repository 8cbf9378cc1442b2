"""Invalid desired files, told once: journaled and logged when an error first appears, not on
every pass while the file stays broken (a pass every few seconds would flood both)."""

from __future__ import annotations

import structlog

from reconciler.core.desired import LoadError
from reconciler.core.names import Event, Phase
from reconciler.state.journal import Journal

log = structlog.get_logger("hotswap.controller")


class LoadErrorReporter:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._reported: frozenset[tuple[str, str]] = frozenset()

    def report(self, errors: tuple[LoadError, ...]) -> None:
        """This pass's errors; those already told are skipped, a fixed one is forgotten (so it
        is told again should it come back)."""
        current = frozenset((e.file, e.message) for e in errors)
        for err in errors:
            if (err.file, err.message) in self._reported:
                continue
            log.error("desired.invalid", file=err.file, line=err.line, field=err.field,
                      model=err.model, error=err.message)  # fmt: skip
            self.journal.append(
                err.model or err.file, Event.DESIRED, Phase.FAILED, detail=err.to_json()
            )
        self._reported = current
