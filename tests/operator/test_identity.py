"""Who asked, as an operator request records it: the person behind `sudo`, with their uid."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.operator import channel
from reconciler.operator.identity import requesting_user


def test_under_sudo_the_person_is_recorded_with_their_uid() -> None:
    env = {"SUDO_USER": "alice", "SUDO_UID": "1000", "USER": "root"}
    assert requesting_user(env, euid=lambda: 0, login=lambda: "root") == "alice (uid 1000) via sudo"


def test_sudo_variables_are_not_believed_unless_root() -> None:
    env = {"SUDO_USER": "mallory", "SUDO_UID": "0"}
    assert requesting_user(env, euid=lambda: 1001, login=lambda: "bob") == "bob"


def test_no_passwd_entry_names_the_uid() -> None:
    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found")

    assert requesting_user({}, euid=lambda: 4242, login=no_user) == "uid 4242"


def test_the_request_file_carries_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel, "requesting_user", lambda: "alice (uid 1000) via sudo")
    request, _ = channel.submit(tmp_path, "retry", "classifier", reason="fixed the key")
    assert request.user == "alice (uid 1000) via sudo"
