"""Shared fixtures: the example models built once per session, and a real daemon process.

Tests drive the daemon exactly as an operator would: desired-state files written atomically
(as git and editors do), the V2 HTTP API, the CLI, and signals — SIGKILL included. The helpers
behind these fixtures live in tests/support/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, trust
from tests.support.kit import Kit, make_kit
from tests.support.mosquitto import Mosquitto

# A machine's own /etc/hotswap/config.yaml must not change what the tests (and the daemons and
# commands they start) do: an empty HOTSWAP_CONFIG reads no config file.
os.environ["HOTSWAP_CONFIG"] = ""


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return make_kit(tmp_path_factory.mktemp("kit"))


@pytest.fixture
def daemon(tmp_path: Path, kit: Kit) -> Iterator[Callable[..., Daemon]]:
    """Factory: `daemon()` gives a Daemon on tmp desired/ and state/ dirs (not yet started),
    on a device that trusts the kit's publisher key."""
    made: list[Daemon] = []

    def make(desired: Path | None = None, state: Path | None = None) -> Daemon:
        d = Daemon(
            desired or tmp_path / "desired",
            state or tmp_path / "state",
            tmp_path / f"daemon-{len(made)}.log",
        )
        d.desired.mkdir(parents=True, exist_ok=True)
        trust(d.state, kit)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test-fast` leaves out every test that runs a daemon process."""
    for item in items:
        uses_daemon = "daemon" in getattr(item, "fixturenames", ())
        if uses_daemon or item.path.parent.name in ("e2e", "crash"):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto on 127.0.0.1 and a free port, stopped by its pid at the end."""
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()
