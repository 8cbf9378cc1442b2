"""Property-based tests of the three places hostile bytes enter: desired state, the V2 request
body, and the journal file on disk.

- the desired-state loader returns a ModelSpec or a LoadError for anything, never raises;
- the V2 request path answers every body (JSON or binary, any header) with a 200 or a 4xx
  carrying {"error": ...}, never a 500, and the model answers correctly afterwards;
- flipping any byte of journal.db is caught by `hotswap journal --verify` whenever a record
  changed, and never makes it crash.

Each property is sized to run in a few seconds (the file in about 15 s on two cores).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import runtime.serving.handlers
import runtime.serving.v2
from reconciler.cli import main as cli
from reconciler.core.desired import LoadError, ModelSpec
from reconciler.source.load import load_file
from reconciler.state.journal import Journal
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.serving.server import create_app
from runtime.serving.slot import Instance, Repository
from tests.support.kit import REPO, Kit
from tests.support.units import golden, model_path

HEADER = "Inference-Header-Content-Length"
INFER = "/v2/models/classifier/infer"


def fast(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


# -- desired state: structured mutation of a valid document ----------------------------------

VALID_DOC: dict[str, Any] = {
    "apiVersion": "hotswap/v1",
    "kind": "ModelDeployment",
    "metadata": {"name": "classifier", "labels": {"team": "vision"}},
    "spec": {
        "model": {
            "version": "3",
            "source": "../registry/classifier/3/model.onnx",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
        "runtime": {
            "backend": "onnxruntime",
            "precision": "fp32",
            "shapes": {
                "input": {"min": [1, 3, 224, 224], "opt": [4, 3, 224, 224], "max": [8, 3, 224, 224]}
            },
        },
        "interface": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}],
        },
        "health": {
            "warmup": {"iterations": 5},
            "golden": "golden.npz",
            "atol": 1e-4,
            "max_latency_ms": 250,
        },
        "rollout": {
            "strategy": "canary",
            "steps": [{"weight": 10, "for": "30s"}, {"weight": 50, "for": "1.5m"}],
            "gates": {"max_error_rate": 0.01, "max_p99_latency_ratio": 1.5, "min_requests": 50},
            "on_failure": "revert",
        },
        "retention": {"keep_standby": True, "keep_versions": 3},
    },
}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into the document (the root excluded)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()  # fmt: skip
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


PATHS = sorted(_paths(VALID_DOC), key=str)


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc: Any = copy.deepcopy(VALID_DOC)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add-sibling"]))
            if action == "replace":
                parent[path[-1]] = draw(json_values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=6))] = draw(json_values)
            else:
                parent.append(draw(json_values))
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # an earlier mutation removed or replaced this path (with null, say)
    if draw(st.booleans()):
        doc = draw(st.sampled_from([doc, [doc], {"spec": doc}, None, 3, "text"]))
    return doc


def _load(tmp_path: Path, content: bytes) -> ModelSpec | LoadError:
    path = tmp_path / "desired" / "classifier.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    result = load_file(path, "desired/classifier.yaml")
    assert isinstance(result, (ModelSpec, LoadError)), result
    return result


def test_the_unmutated_document_loads(tmp_path: Path) -> None:
    assert isinstance(_load(tmp_path, yaml.safe_dump(VALID_DOC).encode()), ModelSpec)


@fast(200)
@given(doc=mutated_docs())
def test_mutated_desired_documents_never_raise(tmp_path: Path, doc: Any) -> None:
    result = _load(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))  # fmt: skip
    if isinstance(result, LoadError):
        assert result.message.startswith("desired/classifier.yaml"), result.message


@fast(150)
@given(
    at=st.integers(0, 2000),
    cut=st.integers(0, 40),
    insert=st.text(max_size=20)
    | st.sampled_from(["\n  ", ": ", "- ", "{", "&a ", "*a", "!!python/object:os.system "]),
)
def test_spliced_desired_text_never_raises(tmp_path: Path, at: int, cut: int, insert: str) -> None:
    text = yaml.safe_dump(VALID_DOC, sort_keys=False)
    at = at % (len(text) + 1)
    spliced = text[:at] + insert + text[at + cut :]
    _load(tmp_path, spliced.encode("utf-8", "surrogatepass"))


# -- the V2 request path -----------------------------------------------------------------------


class App:
    """The ASGI app in-process (httpx.ASGITransport), called synchronously through a portal."""

    def __init__(self, portal: Any, app: Any) -> None:
        self.portal = portal
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://hotswap.test")

    async def apost(self, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        # latin-1, as HTTP/1.1 carries header bytes (httpx would encode a str as ASCII)
        raw = [(k.encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
        return await self.http.post(INFER, content=content, headers=raw)

    def post(self, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.portal.call(self.apost, content, headers)

    def post_all(self, requests: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
        """All at once, as concurrent requests on the app's worker pool."""

        async def run() -> list[httpx.Response]:
            results: list[httpx.Response | None] = [None] * len(requests)

            async def one(i: int) -> None:
                results[i] = await self.apost(*requests[i])

            async with anyio.create_task_group() as tg:
                for i in range(len(requests)):
                    tg.start_soon(one, i)
            return [r for r in results if r is not None]

        return self.portal.call(run)


@pytest.fixture(scope="module")
def app(kit: Kit) -> Iterator[App]:
    session = OnnxRuntimeBackend().load(model_path(kit, "1"), threads=2)
    repo = Repository()
    repo.slot("classifier").activate(Instance("classifier", "1", session, healthy=True))
    with anyio.from_thread.start_blocking_portal() as portal:
        client = App(portal, create_app(repo, lambda: True, workers=4))
        yield client
        portal.call(client.http.aclose)


def good_request(kit: Kit, binary: bool = False) -> tuple[bytes, dict[str, str], np.ndarray]:
    g = golden(kit, "1")
    x = g["input"][:1].astype(np.float32)
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    if not binary:
        tensor["data"] = x.ravel().tolist()
        return json.dumps({"inputs": [tensor]}).encode(), {}, g["logits"][:1]
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    head = json.dumps({"inputs": [tensor]}).encode()
    return head + x.tobytes(), {HEADER: str(len(head))}, g["logits"][:1]


def assert_correct(r: httpx.Response, expected: np.ndarray) -> None:
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    got = np.asarray(out["data"], np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def assert_client_error(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code != 200:
        assert 400 <= r.status_code < 500
        assert set(r.json()) == {"error"} and r.json()["error"], r.text


# header values as a client can send them: digits, signs, spaces, other scripts' digits (the
# latin-1 superscripts are digits to str.isdigit() but not to int())
header_values = st.one_of(
    st.integers(-5, 10**12).map(str),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12),
    st.sampled_from(["", " 12", "12 ", "+12", "0x10", "1e3", "\u00b2", "\u00b9\u00b2", "-0"]),
)


@st.composite
def v2_binary_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A JSON header that claims binary tensors, followed by bytes that may or may not fit."""
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["input", "logits"]) | st.text(max_size=5)),
        "datatype": draw(st.sampled_from(["FP32", "FP16", "INT64", "BYTES", "BOOL"])),
        "shape": draw(st.lists(st.integers(-1, 300) | st.sampled_from([2**31, 2**62]), max_size=5)),
        "parameters": {"binary_data_size": draw(st.integers(-4, 700_000) | json_values)},
    }
    if draw(st.booleans()):
        tensor["data"] = draw(json_values)
    request: dict[str, Any] = {"inputs": [tensor] * draw(st.integers(0, 2))}
    if draw(st.booleans()):
        request["outputs"] = [{"name": "logits", "parameters": {"binary_data": draw(json_values)}}]
        request["parameters"] = {"binary_data_output": draw(json_values)}
    head = json.dumps(request).encode()
    tail = draw(st.binary(max_size=64))
    if draw(st.booleans()):  # a tail of exactly the right size for a 1x3x224x224 FP32 input
        tail = bytes(4 * 3 * 224 * 224)
    length = draw(st.just(str(len(head))) | header_values)
    return head + tail, {HEADER: length, "content-type": "application/octet-stream"}


@fast(150)
@given(body=v2_binary_bodies())
def test_binary_bodies_with_any_header_never_give_a_500(app: App, body: tuple[bytes, dict[str, str]]) -> None:  # fmt: skip
    assert_client_error(app.post(*body))


@fast(150)
@given(raw=st.binary(max_size=300), length=st.none() | header_values)
def test_arbitrary_bytes_never_give_a_500(app: App, raw: bytes, length: str | None) -> None:
    headers = {} if length is None else {HEADER: length}
    assert_client_error(app.post(raw, headers))


@fast(150)
@given(payload=json_values)
def test_arbitrary_json_never_gives_a_500(app: App, payload: Any) -> None:
    assert_client_error(app.post(json.dumps(payload).encode(), {"content-type": "application/json"}))  # fmt: skip


def test_the_model_answers_correctly_after_the_fuzzing(app: App, kit: Kit) -> None:
    # runs after the properties above (pytest keeps file order); the session is shared
    for binary in (False, True):
        content, headers, expected = good_request(kit, binary)
        assert_correct(app.post(content, headers), expected)


# -- serving limits ----------------------------------------------------------------------------


def test_body_over_the_limit_is_refused_without_reading_it(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.serving.handlers, "MAX_BODY_BYTES", 10_000)
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no content-length to refuse early
        for _ in range(1000):
            sent.append(1)
            yield b" " * 4096

    r = app.post(chunks())
    assert r.status_code == 413, r.text
    assert "exceeds 10000 bytes" in r.json()["error"]
    assert len(sent) <= 4, f"the server read {len(sent)} chunks of 4 KiB past a 10 kB limit"

    # a declared length over the limit is refused before the first byte is read
    sent.clear()
    r = app.post(chunks(), {"content-length": "4096000"})
    assert r.status_code == 413 and "4096000 bytes exceeds 10000" in r.json()["error"]
    assert len(sent) <= 1


def test_unicode_digits_in_length_headers_are_client_errors(app: App, kit: Kit) -> None:
    content, _, _ = good_request(kit, binary=True)
    for value in ("\u00b2", "\u00b9\u00b3"):  # '²'.isdigit() is True, int('²') raises
        assert_client_error(app.post(content, {HEADER: value}))
        assert app.post(content, {HEADER: value}).status_code == 400
        assert_client_error(app.post(content, {"content-length": value}))


def test_element_count_over_the_limit_is_refused_before_allocating(app: App) -> None:
    # 10^12 x 3 x 224 x 224 FP32 would be 600 PB; the count is checked before any data is read
    huge = {"name": "input", "datatype": "FP32", "shape": [10**12, 3, 224, 224], "data": [0.0]}
    r = app.post(json.dumps({"inputs": [huge]}).encode())
    assert r.status_code == 400 and "exceed the limit" in r.json()["error"], r.text
    binary = dict(huge, parameters={"binary_data_size": 4})
    del binary["data"]
    head = json.dumps({"inputs": [binary]}).encode()
    r = app.post(head + b"\0" * 4, {HEADER: str(len(head))})
    assert r.status_code == 400 and "exceed the limit" in r.json()["error"], r.text


def test_element_limit_applies_to_an_otherwise_valid_request(
    app: App, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.serving.v2, "MAX_ELEMENTS", 1000)
    content, headers, _ = good_request(kit)
    r = app.post(content, headers)
    assert r.status_code == 400 and "150528 elements exceed the limit of 1000" in r.json()["error"]


def _tensor_json(**tensor: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", **tensor}]}).encode()


FULL_SHAPE = [1, 3, 224, 224]
BAD_REQUESTS: list[tuple[bytes, dict[str, str]]] = [
    (b"{", {}),
    (b"\xff\xfe" * 50, {}),
    (b"[" * 50_000 + b"]" * 50_000, {}),
    (_tensor_json(shape=[10**12, 3, 224, 224], data=[]), {}),
    (_tensor_json(shape=FULL_SHAPE, data=[1.0]), {}),
    (_tensor_json(shape=FULL_SHAPE, data=[1], datatype="INT64"), {}),
    (_tensor_json(shape=FULL_SHAPE, data=["x"] * 10), {}),
    (_tensor_json(shape=FULL_SHAPE, parameters={"binary_data_size": 10**9}), {HEADER: "10"}),
    (b'{"inputs": []}xxxx', {HEADER: "99999"}),
    (b'{"inputs": []}', {HEADER: "\u00b2"}),
]


def test_a_flood_of_bad_requests_never_changes_the_good_answers(app: App, kit: Kit) -> None:
    goods = [good_request(kit, binary=b) for b in (False, True)]
    batch: list[tuple[bytes, dict[str, str]]] = []
    expect: list[np.ndarray | None] = []
    for round_ in range(4):
        for i, bad in enumerate(BAD_REQUESTS):
            batch.append(bad)
            expect.append(None)
            if i % 3 == round_ % 3:
                content, headers, expected = goods[(i + round_) % 2]
                batch.append((content, headers))
                expect.append(expected)
    responses = app.post_all(batch)
    assert len(responses) == len(batch)
    assert sum(e is not None for e in expect) >= 8
    for r, want in zip(responses, expect, strict=True):
        if want is None:
            assert_client_error(r)
            assert r.status_code >= 400, r.text[:200]
        else:
            assert_correct(r, want)


# -- the journal file ----------------------------------------------------------------------------

Rows = list[tuple[Any, ...]] | str


@pytest.fixture(scope="module")
def pristine_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Rows]:
    path = tmp_path_factory.mktemp("journal-src") / "journal.db"
    j = Journal(path)
    steps = ["fetch", "verify", "build", "warm", "health-check", "swap", "retire"]
    for i in range(20):
        j.append(
            "classifier" if i % 3 else "detector",
            steps[i % len(steps)],
            ["begin", "done", "failed"][i % 3],
            from_version=str(i) if i % 4 else None,
            to_version=str(i + 1),
            desired_digest=f"{i:064x}",
            detail={"i": i, "message": "ünïcode " + "x" * (i * 5)},
        )
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into journal.db itself
    j.close()
    # the journal's head (journal.head) is a file of its own; no -wal or -shm is left
    assert sorted(p.name for p in path.parent.iterdir()) == ["journal.db", "journal.head"]
    raw = path.read_bytes()
    rows = read_rows(path)
    assert isinstance(rows, list) and len(rows) == 20
    return raw, rows


def read_rows(path: Path) -> Rows:
    """Every row as SQLite returns it, or what SQLite said when it could not."""
    try:
        con = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in con.execute("SELECT * FROM records ORDER BY seq")]
        finally:
            con.close()
    except (sqlite3.Error, UnicodeDecodeError) as e:
        return f"unreadable: {e}"


def run_verify(state: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["journal", "--verify", "--state-dir", str(state)])
    return rc, out.getvalue(), err.getvalue()


def flipped(tmp_path: Path, raw: bytes, offset: int, mask: int) -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    for leftover in state.iterdir():  # -shm from the previous example's read-only open
        leftover.unlink()
    damaged = bytearray(raw)
    damaged[offset] ^= mask
    (state / "journal.db").write_bytes(bytes(damaged))
    return state


def check_flip(tmp_path: Path, pristine: tuple[bytes, Rows], offset: int, mask: int) -> None:
    raw, before = pristine
    state = flipped(tmp_path, raw, offset, mask)
    rc, out, err = run_verify(state)  # an exception here fails the test: it must never raise
    after = read_rows(state / "journal.db")
    assert "Traceback" not in out + err
    if rc == 0:
        assert "hash chain intact" in out
        assert after == before, f"byte {offset} ^ {mask:#x} changed the records but verified ok"
    else:
        assert rc == 1, (rc, out, err)
        assert err.startswith("journal BROKEN"), err
    if after != before:
        assert rc == 1


# page headers (8-12 bytes at the start of each 4 KiB page; 100 bytes later on page 1) and the
# cell pointer arrays right after them are where one flipped byte does the most structural harm
_STRUCTURE = st.builds(
    lambda page, at: page * 4096 + (100 if page == 0 else 0) + at,
    st.integers(0, 3),
    st.integers(0, 40),
)


@fast(200)
@given(data=st.data())
def test_any_flipped_journal_byte_is_caught_or_harmless(
    tmp_path: Path, pristine_journal: tuple[bytes, Rows], data: st.DataObject
) -> None:
    raw = pristine_journal[0]
    offset = data.draw(st.integers(0, len(raw) - 1) | _STRUCTURE | st.integers(0, 99), "offset")
    assume(offset < len(raw))
    mask = data.draw(st.integers(1, 255), "xor mask")
    check_flip(tmp_path, pristine_journal, offset, mask)


def _offset_of(raw: bytes, needle: bytes) -> int:
    at = raw.find(needle)
    assert at >= 0, needle
    return at


KNOWN_CORRUPTIONS: dict[str, tuple[bytes | None, int, int, str]] = {
    # case: (bytes to find (None: the file start), offset from there, xor mask, message part)
    "magic": (None, 0, 0x01, "file is not a database"),
    "schema-column-name": (b"desired_digest TEXT", 3, 0x80, "SQLite cannot read the journal"),
    "text-not-utf8": (b'"message":"', 11, 0x80, "SQLite cannot read the journal"),
    "detail-digit": (b'{"i":7,', 5, 0x01, "record hash does not match"),
    # record header: header size, seq (NULL: the rowid), time (text of 32: 0x4d), model (text
    # of 10: 0x21); 0x20 makes the model a 10-byte blob
    "text-becomes-blob": (b"\x00\x4d\x21", 2, 0x01, "column model holds a bytes"),
}


@pytest.mark.parametrize("case", sorted(KNOWN_CORRUPTIONS))
def test_known_corruptions_are_reported_not_raised(
    tmp_path: Path, pristine_journal: tuple[bytes, Rows], case: str
) -> None:
    raw = pristine_journal[0]
    needle, delta, mask, fragment = KNOWN_CORRUPTIONS[case]
    start = 0 if needle is None else raw.find(needle)
    assert start >= 0, needle
    state = flipped(tmp_path, raw, start + delta, mask)
    rc, out, err = run_verify(state)
    assert rc == 1, (out, err)
    assert err.startswith("journal BROKEN") and fragment in err, err
    assert "Traceback" not in err
    # printing the journal fails cleanly too (or prints what SQLite can still read)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["journal", "--state-dir", str(state)]) in (0, 1)
        assert cli.main(["journal", "--json", "--state-dir", str(state)]) in (0, 1)


def test_a_root_page_pointing_at_a_leaf_is_caught(
    tmp_path: Path, pristine_journal: tuple[bytes, Rows]
) -> None:
    """One flipped bit in sqlite_master's rootpage can make the table start at one of its own
    leaves: SQLite then reads an intact, shorter chain (the hash chain alone cannot tell a
    shorter journal from a complete one). The integrity check sees the orphaned pages."""
    raw, before = pristine_journal
    entry = b"tablerecordsrecords"  # type, name, tbl_name; the rootpage byte follows
    at = raw.find(entry) + len(entry)
    assert raw[at] == 2, raw[at]
    shortened = 0
    for page in range(3, len(raw) // 4096 + 1):
        state = flipped(tmp_path, raw, at, 2 ^ page)
        rows = read_rows(state / "journal.db")
        shortened += isinstance(rows, list) and 0 < len(rows) < len(before)
        rc, _, err = run_verify(state)
        assert rc == 1 and "SQLite integrity check" in err, err
    assert shortened, "no leaf page held a prefix of the records"


def test_cli_subprocess_reports_a_corrupt_journal_without_a_traceback(
    tmp_path: Path, pristine_journal: tuple[bytes, Rows]
) -> None:
    state = flipped(tmp_path, pristine_journal[0], 0, 0x01)
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "journal", "--verify", "--state-dir", str(state)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("journal BROKEN: SQLite cannot read the journal"), result.stderr
    assert "Traceback" not in result.stderr
