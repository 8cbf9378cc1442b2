"""The authorization cache: one manifest read per deployment, judged again under a new policy."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.core.errors import IntegrityError, TransientError
from reconciler.ops.authorization import Authorizer
from reconciler.trust.policy import TrustPolicy
from tests.support.units import plain_spec as spec

ALLOW_UNSIGNED = TrustPolicy(keys={}, allow_unsigned=True, source="/trust")


class Registry:
    """Serves no manifest (an unsigned model); counts what was asked for."""

    def __init__(self, down: bool = False) -> None:
        self.reads: list[str] = []
        self.down = down

    def __call__(self, url: str, *, allow_http: bool = False) -> bytes:
        self.reads.append(url)
        if self.down:
            raise TransientError("connection refused", reason="fetch-failed")
        raise TransientError("404", reason="source-missing")


def test_one_deployment_reads_its_manifest_once() -> None:
    registry = Registry()
    auth = Authorizer(ALLOW_UNSIGNED, read_document=registry)
    first = auth.authorize(spec("2"))
    assert first.signed is False and first.unsigned_opt_in is True
    assert auth.authorize(spec("2")) is first
    assert registry.reads == ["/registry/classifier/2/manifest.json"]


def test_a_new_digest_is_judged_again() -> None:
    registry = Registry()
    auth = Authorizer(ALLOW_UNSIGNED, read_document=registry)
    auth.authorize(spec("2"))
    auth.authorize(spec("3"))
    auth.authorize(dataclasses.replace(spec("3"), precision="fp16"))  # same bytes, new digest
    assert len(registry.reads) == 3


def test_a_changed_policy_judges_again_and_can_refuse() -> None:
    registry = Registry()
    auth = Authorizer(ALLOW_UNSIGNED, read_document=registry)
    auth.authorize(spec("2"))
    auth.policy = dataclasses.replace(ALLOW_UNSIGNED, allow_unsigned=False)
    with pytest.raises(IntegrityError) as refused:
        auth.authorize(spec("2"))
    assert refused.value.reason == "unsigned"
    assert len(registry.reads) == 2
    auth.policy = dataclasses.replace(ALLOW_UNSIGNED, min_version={"classifier": "3"})
    with pytest.raises(IntegrityError) as downgrade:
        auth.authorize(spec("2"))
    assert downgrade.value.reason == "downgrade"


def test_a_seeded_authorization_needs_no_registry_until_the_policy_changes() -> None:
    registry = Registry(down=True)
    auth = Authorizer(ALLOW_UNSIGNED, read_document=registry)
    recorded = {"signed": True, "keyid": "abc", "manifest_sha256": "f" * 64, "future": 1}
    auth.seed(spec("2"), recorded)
    assert auth.authorize(spec("2")).keyid == "abc"
    assert registry.reads == []
    auth.policy = dataclasses.replace(ALLOW_UNSIGNED, allow_http=True)
    with pytest.raises(TransientError):  # judged again: the registry is down, not "no manifest"
        auth.authorize(spec("2"))
    auth.seed(spec("3"), None)  # nothing recorded: nothing seeded
    with pytest.raises(TransientError):
        auth.authorize(spec("3"))
