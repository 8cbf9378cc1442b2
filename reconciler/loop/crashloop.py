"""The boot-count fallback: a version the daemon keeps dying in is quarantined at startup.

A model can crash native code in the serving process (a TensorRT engine at its first run, an
ONNX Runtime kernel the probe did not reach): the daemon dies, systemd starts it again, and the
plan would run the same step of the same version again, for ever. As RAUC and Mender count
boots of a new slot and fall back when it never boots to the end, the controller's `recover`
calls `quarantine_crash_loops` before anything is begun: a step that runs the model
(`queries.RUNS_THE_MODEL`) begun and never ended at `CRASH_LOOP_BOOTS` boots in a row
quarantines its desired digest with reason `crash-loop` (a terminal `failed` record, which
also ends the step left open; the quarantine is then reloaded as any other). Fewer boots write
nothing: a single power cut is recovered as before, without a failure on record. The restore
of the last promoted version counts too; the executor then does not restore a quarantined one.
"""

from __future__ import annotations

import structlog

from reconciler.core.names import Phase
from reconciler.core.reasons import CRASH_LOOP, CRASH_LOOP_BOOTS, Next
from reconciler.state import queries
from reconciler.state.journal import Journal
from reconciler.state.records import StepFailed

log = structlog.get_logger("hotswap.crashloop")


def quarantine_crash_loops(
    journal: Journal, boots: int = CRASH_LOOP_BOOTS
) -> list[queries.Interrupted]:
    """Journal a `crash-loop` quarantine for each deployment interrupted `boots` times in a
    row in the same step; returns those quarantined."""
    looped = []
    for found in queries.interrupted(journal.records()).values():
        begun = found.last
        where = f"{found.step} {found.model} v{begun.to_version}"
        if found.boots < boots:
            log.warning("recover.step-interrupted", step=where, boots=found.boots, limit=boots)
            continue
        message = (
            f"{where}: the daemon died in this step at {found.boots} starts in a row; the version"
            " is quarantined so that it cannot keep the device in a crash loop"
        )
        record = StepFailed(
            CRASH_LOOP, message, True, {"boots": found.boots, "begun_seq": begun.seq},
            next=str(Next.QUARANTINE),
        )  # fmt: skip
        journal.append(
            found.model, found.step, Phase.FAILED, detail=record,
            from_version=begun.from_version, to_version=begun.to_version,
            desired_digest=found.digest, revision=begun.revision,
        )  # fmt: skip
        log.error("recover.crash-loop", step=where, boots=found.boots, digest=found.digest[:12])
        looped.append(found)
    return looped
