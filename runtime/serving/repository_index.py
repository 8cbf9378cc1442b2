"""Triton's repository index (`POST /v2/repository/index`, gRPC `RepositoryIndex`).

Every model the device knows: the version serving now as READY, and the desired version that
is not serving yet as LOADING or UNAVAILABLE with the control plane's reason (a quarantine's
message shows here), from `Repository.conditions`. A model whose desired version serves has one
entry; one that serves v1 while v2 is quarantined has two. Both protocols render this list
(`name`, `version`, `state`, `reason`: `RepositoryIndexResponse.ModelIndex`'s fields).
"""

from __future__ import annotations

from typing import Any

from runtime.serving.slot import Repository


def repository_index(repo: Repository, ready_only: bool = False) -> list[dict[str, Any]]:
    conditions = repo.conditions.snapshot()
    entries: list[dict[str, Any]] = []
    for name in sorted(set(repo.names()) | set(conditions)):
        slot = repo.get(name)
        active = slot.active if slot is not None else None
        if active is not None:
            entries.append(
                {"name": name, "version": active.version, "state": "READY", "reason": ""}
            )
        cond = conditions.get(name)
        if ready_only or cond is None or (active is not None and cond.version == active.version):
            continue
        entries.append(
            {"name": name, "version": cond.version, "state": cond.state, "reason": cond.reason}
        )
    return entries
