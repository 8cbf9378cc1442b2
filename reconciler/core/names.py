"""The closed vocabularies of the journal and the plan: step names, phases, events, strategies.

They are written to disk and shown to operators, so each member's value is a stable string that
never changes once released. `str(member)` and f-strings give the value (on every Python from
3.10, where `(str, Enum)` members format differently across versions), and a member compares
equal to its string, so records written by earlier releases read back as the same names.
"""

from __future__ import annotations

from enum import Enum


class Name(str, Enum):
    """A `str` enum whose `str()` is its value on every supported Python."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class StepName(Name):
    """What the planner asks for, in the order an update runs."""

    FETCH = "fetch"
    VERIFY = "verify"
    BUILD = "build"
    WARM = "warm"
    HEALTH_CHECK = "health-check"
    ROLLOUT = "rollout"
    SWAP = "swap"
    RETIRE = "retire"
    REVERT = "revert"
    UNLOAD = "unload"
    RESTORE = "restore"  # at startup: serve the last promoted version again


class Event(Name):
    """Journal records that are not steps of a plan."""

    DESIRED = "desired"  # a desired-state file that could not be used (phase failed)
    JOURNAL = "journal"  # the journal's own integrity (phase failed: the chain is broken)
    OVERRIDE = "override"  # an operator's rollback set or cleared
    RETRY = "retry"  # an operator's `hotswap retry`
    TRUST = "trust"  # the device trust policy could not be read
    STORE_DAMAGED = "store-damaged"  # a stored blob or build artifact failed its sha256
    REFETCHED = "refetched"  # ... and was fetched or built again


class Phase(Name):
    BEGIN = "begin"  # durable before the step acts
    DONE = "done"
    FAILED = "failed"


class Strategy(Name):
    IMMEDIATE = "immediate"
    CANARY = "canary"
    SHADOW = "shadow"
