"""The quarantine: set by the executor on a terminal failure, ended by a swap, an unload or an
operator's retry, rebuilt from the journal at startup; everyone else reads plain data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reconciler.core.errors import IntegrityError, TransientError
from reconciler.loop.executor import Executor
from reconciler.loop.quarantine import Quarantine
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.state.journal import Journal
from runtime.serving.slot import Repository
from tests.support.units import plain_spec as spec

V2 = spec("2")


@dataclass(frozen=True)
class Scripted:
    """A step that does what the test says: raise an error, or report done."""

    name: ClassVar[str] = "verify"
    model: str
    error: Exception | None = None

    def done(self, observed: Any) -> bool:
        return False

    def apply(self, ctx: Any) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {}


@dataclass(frozen=True)
class ScriptedSwap(Scripted):
    name: ClassVar[str] = "swap"


@dataclass(frozen=True)
class ScriptedUnload(Scripted):
    name: ClassVar[str] = "unload"


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.db")
    ops = Operations(tmp_path / "state", journal, Repository(), backends=Backends(identities={}))
    yield Executor(ops, quarantine=Quarantine())
    ops.shutdown()
    journal.close()


def _run(executor: Executor, step: Scripted) -> None:
    executor.run("classifier", [step], V2, None)


def test_a_terminal_failure_quarantines_the_desired_digest(executor: Executor) -> None:
    _run(executor, Scripted("classifier", IntegrityError("bad signature", reason="bad-signature")))
    held = executor.quarantine.snapshot()
    assert held.digests == {"classifier": V2.digest}
    assert held.errors == {"classifier": "bad signature"}
    observed = executor.ctx.observe(held.digests, held.errors).model("classifier")
    assert (observed.failed_digest, observed.last_error) == (V2.digest, "bad signature")


def test_a_transient_failure_is_only_noted(executor: Executor) -> None:
    _run(executor, Scripted("classifier", TransientError("registry down")))
    assert "classifier" not in executor.quarantine
    assert executor.quarantine.last_error("classifier") == "registry down"


@pytest.mark.parametrize("ending", [ScriptedSwap, ScriptedUnload])
def test_a_swap_or_an_unload_ends_it(executor: Executor, ending: type[Scripted]) -> None:
    _run(executor, Scripted("classifier", IntegrityError("bad signature")))
    _run(executor, ending("classifier"))
    assert executor.quarantine.snapshot().digests == {}
    assert executor.quarantine.last_error("classifier") is None


def test_the_operators_retry_lifts_it_and_says_what_it_was(executor: Executor) -> None:
    _run(executor, Scripted("classifier", IntegrityError("bad signature")))
    assert executor.lift_quarantine("classifier") == (V2.digest, "bad signature")
    assert executor.lift_quarantine("classifier") is None


def test_it_survives_a_restart_through_the_journal(executor: Executor) -> None:
    _run(executor, Scripted("classifier", IntegrityError("bad signature")))
    again = Executor(executor.ctx, quarantine=Quarantine())
    again.restore_all()
    assert again.quarantine.get("classifier") == (V2.digest, "bad signature")


def test_a_snapshot_is_plain_data_that_later_changes_do_not_touch() -> None:
    quarantine = Quarantine()
    quarantine.quarantine("classifier", V2.digest, "NaN")
    snapshot = quarantine.snapshot()
    quarantine.clear("classifier")
    quarantine.note_error("detector", "timeout")
    assert dict(snapshot.digests) == {"classifier": V2.digest}
    assert dict(snapshot.errors) == {"classifier": "NaN"}
    with pytest.raises(TypeError):
        snapshot.digests["detector"] = "x"
