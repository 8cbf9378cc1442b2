"""Fuzzing `model.sig` parsing: whatever the bytes, the device answers with an IntegrityError.

The bundle is the one file of a package an attacker controls completely before anything is
verified, and it is read by pydantic models and protobuf helpers that raise many exception
types. No input may escape as anything but a refusal with a reason; an accepted mutation may
only be one that changes nothing signed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.errors import IntegrityError
from reconciler.trust.oms import verify_bundle
from tests.support.signed import new_key, sign_files, trusting

KEY = new_key()
POLICY = trusting([KEY])
MODEL = b"the model"
BUNDLE = sign_files({"model.onnx": MODEL, "manifest.json": b"{}"}, KEY)
SIGNED = verify_bundle(BUNDLE, POLICY.keys, None, (), "trust").files
REASONS = {"bad-signature", "untrusted-key", "unsupported-signature"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _verify(data: bytes) -> Any:
    return verify_bundle(data, POLICY.keys, None, (), "trust")


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(json.loads(BUNDLE))[1:]


def test_the_unmutated_bundle_verifies() -> None:
    assert SIGNED["model.onnx"] == ("sha256", hashlib.sha256(MODEL).hexdigest())


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        _verify(data)
    assert info.value.reason in REASONS and "model.sig" in str(info.value)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_arbitrary_json_is_refused_with_a_reason(doc: Any) -> None:
    with pytest.raises(IntegrityError) as info:
        _verify(json.dumps(doc).encode())
    assert info.value.reason in REASONS


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values, delete=st.booleans())
def test_a_mutated_bundle_is_refused_or_means_the_same(
    path: tuple, value: Any, delete: bool
) -> None:
    doc = json.loads(BUNDLE)
    mutated = copy.deepcopy(doc)
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    try:
        signed = _verify(json.dumps(mutated).encode())
    except IntegrityError as e:
        assert e.reason in REASONS, e
        return
    assert signed.files == SIGNED  # e.g. the DSSE keyid, which nothing checks
