"""What a registry or a desired file can hand the OCI code, fuzzed: a manifest body and a
reference either parse or fail with the one error their callers expect, never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.errors import InvalidInput
from reconciler.core.ociref import OciRefError, parse_oci
from reconciler.fetch.oci import parse_layers

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_layer = st.fixed_dictionaries(
    {
        "digest": st.text(max_size=12) | st.integers(),
        "size": st.integers(-2, 9) | st.text(max_size=2),
    },
    optional={"annotations": _json},
)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        _json,
        st.fixed_dictionaries(
            {"layers": st.lists(_layer | _json, max_size=3)},
            optional={"mediaType": st.text(max_size=40)},
        ),
    )
)
def test_any_manifest_body_parses_or_is_invalid_input(doc: object) -> None:
    try:
        layers = parse_layers(json.dumps(doc).encode(), "oci://r/m:1")
    except InvalidInput:
        return
    assert all(isinstance(x.size, int) and x.size >= 0 for x in layers)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60).map(lambda s: "oci://" + s))
def test_any_reference_parses_or_says_why(text: str) -> None:
    try:
        ref = parse_oci(text)
    except OciRefError as e:
        assert str(e)
        return
    assert str(ref) == text


@pytest.mark.parametrize(
    "ref",
    [
        "oci://r.example/a/b:1",
        "oci://127.0.0.1:5000/m@sha256:" + "f" * 64,
        "oci://[::1]:5000/x_y.z:v1.0-rc1",
    ],
)
def test_references_round_trip(ref: str) -> None:
    assert str(parse_oci(ref)) == ref
