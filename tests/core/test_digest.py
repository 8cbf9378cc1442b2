"""The desired digest: a fixed list of fields in 0.1.0's encoding, so digests in journals and
quarantines stay valid, and a field added later changes only the digests of specs that use it."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from reconciler.core.desired import (
    DIGEST_FIELDS,
    NOT_DIGESTED,
    BatchingSpec,
    Gates,
    HealthSpec,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
    ShapeRange,
    TensorSpec,
)
from tests.support.units import plain_spec

# Fields ModelSpec gained after 0.1.0, each at a default that keeps a spec's digest.
ADDED_SINCE_0_1_0 = {"batching"}


def digest_0_1_0(spec: ModelSpec) -> str:
    """How 0.1.0 computed it: every field it had but `file`, as `asdict` gives them."""
    body = dataclasses.asdict(spec)
    body.pop("file")
    body["rollout"].pop("window")  # a field 0.1.0's RolloutSpec did not have (never digested)
    for name in ADDED_SINCE_0_1_0:
        assert body.pop(name) is None, "a spec that uses a later field is not a 0.1.0 spec"
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(encoded.encode()).hexdigest()


FULL = plain_spec(
    "3",
    backend="tensorrt",
    precision="fp16",
    manifest="/registry/m.json",
    shapes=(("input", ShapeRange((1, 3), (2, 3), (8, 3))),),
    inputs=(TensorSpec("input", "FP32", (-1, 3)),),
    outputs=(TensorSpec("logits", "FP32", (-1, 10)),),
    health=HealthSpec(5, "/g.npz", 1e-4, 0.0, 250.0),
    rollout=RolloutSpec(
        "canary", "revert", (RolloutStage(10, 30.0, "30s"),), Gates(0.02, 1.5, 5, 0.1, 0.9)
    ),
    retention=RetentionSpec(False, 2),
)


def test_todays_fields_keep_0_1_0s_encoding() -> None:
    for spec in (plain_spec("1"), FULL):
        assert spec.digest == digest_0_1_0(spec)
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    assert names == set(DIGEST_FIELDS) | set(NOT_DIGESTED) | ADDED_SINCE_0_1_0


def test_batching_changes_the_digest_only_of_specs_that_use_it() -> None:
    batched = dataclasses.replace(FULL, batching=BatchingSpec(8, 0.002, "2ms", (4, 8)))
    assert batched.digest != FULL.digest
    assert dataclasses.replace(batched, batching=None).digest == FULL.digest
    other = dataclasses.replace(FULL, batching=BatchingSpec(4))
    assert other.digest not in (FULL.digest, batched.digest)


def test_where_it_was_read_is_not_part_of_it() -> None:
    assert dataclasses.replace(FULL, file="/elsewhere.yaml").digest == FULL.digest


def test_a_field_added_later_joins_the_digest_only_when_it_is_not_its_default() -> None:
    Later = dataclasses.make_dataclass(
        "Later", [("priority", int, dataclasses.field(default=0))], bases=(ModelSpec,), frozen=True
    )
    fields = {f.name: getattr(FULL, f.name) for f in dataclasses.fields(ModelSpec)}
    assert Later(**fields).digest == FULL.digest
    assert Later(**fields, priority=1).digest != FULL.digest


def test_a_nested_field_added_later_likewise() -> None:
    @dataclasses.dataclass(frozen=True)
    class LaterHealth(HealthSpec):
        max_memory_mb: float | None = None

    same = dataclasses.replace(FULL, health=LaterHealth(5, "/g.npz", 1e-4, 0.0, 250.0))
    assert same.digest == FULL.digest
    used = dataclasses.replace(same, health=dataclasses.replace(same.health, max_memory_mb=64.0))
    assert used.digest != FULL.digest


def test_every_digested_field_matters() -> None:
    assert plain_spec("1").digest != plain_spec("1", precision="fp16").digest
    assert plain_spec("1").digest != plain_spec("1", retention=RetentionSpec(True, 5)).digest


def test_an_update_window_is_never_part_of_it() -> None:
    from reconciler.core.desired import UpdateWindow

    rollout = dataclasses.replace(FULL.rollout, window=UpdateWindow(120, 240, None, "02:00-04:00"))
    assert dataclasses.replace(FULL, rollout=rollout).digest == FULL.digest == digest_0_1_0(FULL)
