"""Fetching into the store over a real HTTP server on 127.0.0.1 (tests/support/fakeregistry.py) and from
local files: hashing, caps, timeouts, retries, resume, redirects, a full disk, progress.

Every server is started by its test and stopped by it; every transfer is bounded by a short read
timeout, a small size cap or a bounded fault, and backoff sleeps are injected (no real waiting).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.core.errors import IntegrityError, InvalidInput, TransientError
from reconciler.fetch.download import fetch_bytes
from reconciler.fetch.http import USER_AGENT, HttpFetcher, check_redirect
from reconciler.fetch.progress import TerminalBars
from reconciler.fetch.stream import FetchDropped
from reconciler.fetch.transports import fetch_into_store
from reconciler.state import store as store_module
from reconciler.state.status import read_snapshot
from reconciler.state.store import Store
from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, in_sync, last_seq, select, wait_records, wait_served
from tests.support.fakeregistry import Entry, FakeRegistry
from tests.support.kit import Kit

DATA = os.urandom(2 * (1 << 20) + 12345)  # several 256 KiB chunks
SHA = hashlib.sha256(DATA).hexdigest()
CAP = 8 << 20
FAST = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


def get(url: str, store: Store, sha: str = SHA, **kw: object) -> Path:
    options: dict[str, object] = {
        "max_bytes": CAP,
        "allow_http": True,
        "timeout": FAST,
        "sleep": Sleeps(),
    }
    options.update(kw)
    return fetch_into_store(url, sha, store, **options)  # type: ignore[arg-type]


def leftovers(store: Store) -> tuple[frozenset[str], dict[str, int]]:
    return store.blobs(), store.partials()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_download_lands_a_read_only_blob_with_progress_up_to_the_total(store: Store) -> None:
    seen: list[tuple[int, int | None]] = []
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        path = get(reg.url("/m.onnx"), store, progress=lambda d, t: seen.append((d, t)))
        assert [r.user_agent for r in reg.requests] == [USER_AGENT]
        assert reg.ranges("/m.onnx") == [None]
    assert path == store.path(SHA) and path.read_bytes() == DATA
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert leftovers(store) == (frozenset({SHA}), {})
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (len(DATA), len(DATA)), seen
    assert {t for _, t in seen} == {len(DATA)}


def test_progress_is_throttled_by_the_clock(store: Store) -> None:
    seen: list[tuple[int, int | None]] = []
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        get(reg.url("/m.onnx"), store, progress=lambda d, t: seen.append((d, t)), clock=lambda: 5.0)
    assert seen == [(0, len(DATA)), (len(DATA), len(DATA))]  # first and final only


def test_a_blob_already_in_the_store_needs_no_request(store: Store) -> None:
    store.put_stream(io.BytesIO(DATA), SHA, "seed")
    with FakeRegistry({}) as reg:
        assert get(reg.url("/m.onnx"), store) == store.path(SHA)
        assert reg.requests == []


def test_corrupt_bytes_fail_sha256_once_and_leave_nothing(store: Store) -> None:
    with FakeRegistry({"/m.onnx": Entry(DATA, corrupt=True)}) as reg:
        with pytest.raises(IntegrityError) as info:
            get(reg.url("/m.onnx"), store)
        assert reg.count("/m.onnx") == 1  # terminal: not retried
    assert info.value.reason == "sha256-mismatch" and info.value.terminal
    assert SHA in info.value.message and "hashes to" in info.value.message
    assert leftovers(store) == (frozenset(), {})


def test_a_truncated_file_fails_sha256(store: Store) -> None:
    with (
        FakeRegistry({"/m.onnx": Entry(DATA[:-1000])}) as reg,
        pytest.raises(IntegrityError) as info,
    ):
        get(reg.url("/m.onnx"), store)
    assert info.value.reason == "sha256-mismatch"
    assert leftovers(store) == (frozenset(), {})


def test_content_length_shorter_than_the_file_fails_sha256(store: Store) -> None:
    with (
        FakeRegistry({"/m.onnx": Entry(DATA, lie_length=-1000)}) as reg,
        pytest.raises(IntegrityError) as info,
    ):
        get(reg.url("/m.onnx"), store)
    assert info.value.reason == "sha256-mismatch"
    assert leftovers(store) == (frozenset(), {})


def test_content_length_longer_than_the_body_is_a_drop_and_the_bytes_still_count(
    store: Store,
) -> None:
    """The body ends early by the server's own count; the retry finds the .part complete."""
    with FakeRegistry({"/m.onnx": Entry(DATA, lie_length=1000)}) as reg:
        path = get(reg.url("/m.onnx"), store)
        assert reg.count("/m.onnx") == 1
    assert path.read_bytes() == DATA


def test_oversize_by_content_length_is_refused_before_the_body(store: Store) -> None:
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        with pytest.raises(IntegrityError) as info:
            get(reg.url("/m.onnx"), store, max_bytes=1 << 20)
        assert reg.count("/m.onnx") == 1
    assert info.value.reason == "size-exceeded" and str(len(DATA)) in info.value.message
    assert leftovers(store) == (frozenset(), {})


def test_an_endless_stream_is_cut_at_the_cap(store: Store) -> None:
    started = time.monotonic()
    with (
        FakeRegistry({"/m.onnx": Entry(endless=True)}) as reg,
        pytest.raises(IntegrityError) as info,
    ):
        get(reg.url("/m.onnx"), store, max_bytes=1 << 20)
    assert info.value.reason == "size-exceeded"
    assert time.monotonic() - started < 5
    assert leftovers(store) == (frozenset(), {})


def test_a_drop_mid_file_resumes_with_range(store: Store) -> None:
    cut = len(DATA) * 4 // 10
    sleeps = Sleeps()
    with FakeRegistry({"/m.onnx": Entry(DATA, drop_after=cut)}) as reg:
        path = get(reg.url("/m.onnx"), store, sleep=sleeps)
        assert reg.ranges("/m.onnx") == [None, f"bytes={cut}-"]
    assert path.read_bytes() == DATA
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= 0.5  # full jitter under the base
    assert leftovers(store) == (frozenset({SHA}), {})


def test_a_download_resumes_after_a_restart(tmp_path: Path) -> None:
    cut = len(DATA) * 4 // 10
    with FakeRegistry({"/m.onnx": Entry(DATA, drop_after=cut)}) as reg:
        first = Store(tmp_path / "store")
        with pytest.raises(TransientError) as info:
            get(reg.url("/m.onnx"), first, retries=0)
        assert info.value.reason == "fetch-failed" and not info.value.terminal
        assert leftovers(first) == (frozenset(), {SHA: cut})  # kept, and not a blob

        again = Store(tmp_path / "store")  # a new process: only the disk is shared
        path = get(reg.url("/m.onnx"), again, retries=0)
        assert reg.ranges("/m.onnx") == [None, f"bytes={cut}-"]
    assert path.read_bytes() == DATA and leftovers(again) == (frozenset({SHA}), {})


def test_a_server_ignoring_range_makes_the_download_start_over(store: Store) -> None:
    cut = len(DATA) // 3
    with FakeRegistry({"/m.onnx": Entry(DATA, drop_after=cut, ignore_range=True)}) as reg:
        path = get(reg.url("/m.onnx"), store)
        assert reg.ranges("/m.onnx") == [None, f"bytes={cut}-"]
    assert path.read_bytes() == DATA


def test_a_part_longer_than_the_file_gets_416_and_starts_over(store: Store) -> None:
    store.partial_path(SHA).parent.mkdir(parents=True)
    store.partial_path(SHA).write_bytes(DATA + b"junk")
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        path = get(reg.url("/m.onnx"), store)
        assert reg.ranges("/m.onnx") == [f"bytes={len(DATA) + 4}-", None]
    assert path.read_bytes() == DATA


def test_a_stale_prefix_is_downloaded_again_once_before_blaming_the_pin(store: Store) -> None:
    cut = len(DATA) // 2
    store.partial_path(SHA).parent.mkdir(parents=True)
    store.partial_path(SHA).write_bytes(os.urandom(cut))  # an older file under the same name
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        path = get(reg.url("/m.onnx"), store)
        assert reg.ranges("/m.onnx") == [f"bytes={cut}-", None]
    assert path.read_bytes() == DATA


def test_a_complete_part_is_renamed_without_a_request(store: Store) -> None:
    store.partial_path(SHA).parent.mkdir(parents=True)
    store.partial_path(SHA).write_bytes(DATA)  # crashed between the last write and the rename
    with FakeRegistry({}) as reg:
        assert get(reg.url("/m.onnx"), store).read_bytes() == DATA
        assert reg.requests == []


def test_a_stalled_server_times_out_and_is_retried_then_transient(store: Store) -> None:
    started = time.monotonic()
    sleeps = Sleeps()
    entry = Entry(DATA, stall=10.0, stall_after=1000, drops=99)
    with FakeRegistry({"/m.onnx": entry}) as reg:
        with pytest.raises(TransientError) as info:
            get(reg.url("/m.onnx"), store, retries=2, sleep=sleeps)
        # each stalled answer still brought 1000 bytes, kept for the next request
        assert reg.ranges("/m.onnx") == [None, "bytes=1000-", "bytes=2000-"]
    assert time.monotonic() - started < 5
    assert info.value.reason == "fetch-failed" and "timed out" in info.value.message
    assert "after 3 attempts" in info.value.message
    assert len(sleeps.calls) == 2 and sleeps.calls[1] <= 1.0  # base 0.5 s, doubled
    assert leftovers(store) == (frozenset(), {SHA: 3000})  # kept for the next attempt


def test_server_errors_are_retried_then_transient(store: Store) -> None:
    with FakeRegistry({"/m.onnx": Entry(status=503)}) as reg:
        with pytest.raises(TransientError) as info:
            get(reg.url("/m.onnx"), store, retries=3)
        assert reg.count("/m.onnx") == 4
    assert info.value.reason == "fetch-failed" and "HTTP 503" in info.value.message


def test_connection_refused_is_transient(store: Store) -> None:
    with FakeRegistry({}) as reg:
        url = reg.url("/m.onnx")
    with pytest.raises(TransientError) as info:
        get(url, store, retries=1)
    assert info.value.reason == "fetch-failed"


@pytest.mark.parametrize("status", [404, 403, 401])
def test_missing_is_source_missing_without_retries(store: Store, status: int) -> None:
    with FakeRegistry({"/m.onnx": Entry(status=status)}) as reg:
        with pytest.raises(TransientError) as info:
            get(
                reg.url("/m.onnx"),
                store,
                what="fetch classifier v2: desired/c.yaml spec.model.source",
            )
        assert reg.count("/m.onnx") == 1
        url = reg.url("/m.onnx")
    assert info.value.reason == "source-missing" and not info.value.terminal
    message = info.value.message
    assert message.startswith("fetch classifier v2: desired/c.yaml spec.model.source: ")
    assert url in message and f"HTTP {status}" in message


def test_plain_http_needs_the_opt_in(store: Store) -> None:
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        with pytest.raises(InvalidInput) as info:
            get(reg.url("/m.onnx"), store, allow_http=False)
        assert reg.requests == []
    assert info.value.reason == "http-not-allowed"
    assert "allow_http" in info.value.message and "trust policy" in info.value.message


def test_other_schemes_are_unsupported(store: Store) -> None:
    with pytest.raises(InvalidInput) as info:
        get("ftp://registry.example/m.onnx", store)
    assert info.value.reason == "source-unsupported"


def test_redirects_are_followed_on_the_same_server(store: Store) -> None:
    with FakeRegistry({"/old": Entry(redirect="/m.onnx"), "/m.onnx": Entry(DATA)}) as reg:
        assert get(reg.url("/old"), store).read_bytes() == DATA
        assert [r.path for r in reg.requests] == ["/old", "/m.onnx"]


def test_redirect_policy() -> None:
    check_redirect("https://a/m", "https://b/m", allow_http=False)
    check_redirect("http://a/m", "https://b/m", allow_http=True)
    check_redirect("http://a/m", "http://b/m", allow_http=True)
    for src, dst, allow in [
        ("https://a/m", "http://b/m", True),  # never downgrade
        ("http://a/m", "http://b/m", False),
        ("https://a/m", "file:///etc/passwd", True),
    ]:
        with pytest.raises(TransientError) as info:
            check_redirect(src, dst, allow_http=allow)
        assert info.value.reason == "redirect-refused"


def test_an_https_to_http_redirect_is_refused_by_the_client(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": "http://registry.example/m.onnx"})
        return httpx.Response(200, content=DATA)

    fetcher = HttpFetcher(allow_http=True, transport=httpx.MockTransport(handler))
    with pytest.raises(TransientError) as info:
        get("https://registry.example/m.onnx", store, fetcher=fetcher)
    fetcher.close()
    assert info.value.reason == "redirect-refused" and "down to plain http" in info.value.message
    assert leftovers(store) == (frozenset(), {})


def test_a_full_disk_frees_the_part_keeps_the_old_blob_and_later_succeeds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = b"the version being served"
    old_sha = hashlib.sha256(old).hexdigest()
    store.put_stream(io.BytesIO(old), old_sha, "v1")
    real_write = store_module._write
    written = 0

    def write_until_full(f: io.RawIOBase, data: bytes) -> None:
        nonlocal written
        if written + len(data) > 600_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(f, data)  # type: ignore[arg-type]
        written += len(data)

    monkeypatch.setattr(store_module, "_write", write_until_full)
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        with pytest.raises(TransientError) as info:
            get(reg.url("/m.onnx"), store)
        assert info.value.reason == "disk-full"
        assert "no space left on device" in info.value.message
        assert f"({len(DATA)} bytes needed" in info.value.message
        assert leftovers(store) == (frozenset({old_sha}), {})  # old blob intact, space freed
        assert store.path(old_sha).read_bytes() == old

        monkeypatch.setattr(store_module, "_write", real_write)  # space is back
        assert get(reg.url("/m.onnx"), store).read_bytes() == DATA
    assert leftovers(store) == (frozenset({old_sha, SHA}), {})


def test_other_write_errors_are_transient(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(f: object, data: bytes) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(store_module, "_write", broken)
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg, pytest.raises(TransientError) as info:
        get(reg.url("/m.onnx"), store)
    assert info.value.reason == "fetch-io-error" and leftovers(store) == (frozenset(), {})


def test_two_workers_fetching_the_same_blob_share_it(store: Store) -> None:
    results: list[Path | BaseException] = []

    def worker(url: str) -> None:
        try:
            results.append(get(url, Store(store.root.parent)))
        except BaseException as e:
            results.append(e)

    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        threads = [threading.Thread(target=worker, args=(reg.url("/m.onnx"),)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert reg.count("/m.onnx") == 1
    assert results == [store.path(SHA)] * 2


# -- local files ------------------------------------------------------------------------------
def test_local_files_and_file_urls(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(DATA)
    assert get(str(src), store).read_bytes() == DATA
    other = Store(tmp_path / "other")
    assert get(src.as_uri(), other).read_bytes() == DATA


def test_a_missing_local_file_is_source_missing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(TransientError) as info:
        get(str(tmp_path / "nope.onnx"), store)
    assert info.value.reason == "source-missing" and "does not exist" in info.value.message


def test_an_endless_local_device_is_cut_at_the_cap(store: Store) -> None:
    with pytest.raises(IntegrityError) as info:
        get("/dev/zero", store, max_bytes=1 << 20)
    assert info.value.reason == "size-exceeded"
    assert leftovers(store) == (frozenset(), {})


# -- small documents, policy, progress bar, stale partials -----------------------------------
def test_fetch_bytes_reads_small_documents_under_a_cap(tmp_path: Path) -> None:
    doc = b'{"name": "classifier"}'
    with FakeRegistry({"/manifest.json": Entry(doc), "/big": Entry(DATA)}) as reg:
        assert fetch_bytes(reg.url("/manifest.json"), allow_http=True) == doc
        with pytest.raises(IntegrityError) as info:
            fetch_bytes(reg.url("/big"), allow_http=True)
        assert info.value.reason == "size-exceeded"
        with pytest.raises(InvalidInput):
            fetch_bytes(reg.url("/manifest.json"))
    (tmp_path / "m.json").write_bytes(doc)
    assert fetch_bytes(str(tmp_path / "m.json")) == doc


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_tty() -> None:
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bars = TerminalBars(stream)
        with bars.bar("classifier v2") as bar, bars.bar("detector v7") as other:
            bar(3 << 19, 6 << 20)
            other(1 << 20, None)  # two downloads at once: two bars in one display
            bar(6 << 20, 6 << 20)
    drawn = tty.getvalue()
    last = drawn.rsplit("classifier v2", 1)[1].splitlines()[0]
    assert "6.0/6.0 MiB" in last and "100%" in last
    assert "1.5/6.0 MiB" in drawn and " 25%" in drawn and "detector v7" in drawn
    assert drawn.replace("\x1b[?25h", "").endswith("\n")  # the display stopped, cursor back
    assert pipe.getvalue() == ""


def test_clean_partials_removes_only_old_unwanted_ones(store: Store) -> None:
    old, wanted, fresh = "a" * 64, "b" * 64, "c" * 64
    store.partial_dir.mkdir(parents=True)
    for sha in (old, wanted, fresh):
        store.partial_path(sha).write_bytes(b"x")
    week_ago = time.time() - 8 * 24 * 3600
    for sha in (old, wanted):
        os.utime(store.partial_path(sha), (week_ago, week_ago))
    assert store.clean_partials(keep={wanted}) == [old]
    assert set(store.partials()) == {wanted, fresh}


def test_fetch_dropped_is_a_transient_fetch_failed() -> None:
    err = FetchDropped("x")
    assert isinstance(err, TransientError) and err.reason == "fetch-failed"


# -- the real daemon ---------------------------------------------------------------------------
def _allow_http(state: Path) -> None:
    policy = state / "trust" / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("allow_http: true\n")


def _source(url: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["spec"]["model"].update(source=url)


def test_daemon_downloads_v2_over_http_resuming_after_a_drop(kit: Kit, daemon: Any) -> None:
    """v1 from a file; v2 from the registry, which stalls at 40% (status shows the download)
    until released, then drops the connection: the daemon resumes with Range, swaps to v2."""
    d: Daemon = daemon()
    _allow_http(d.state)
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    v2 = Path(kit.doc("2")["spec"]["model"]["source"]).read_bytes()
    cut = len(v2) * 4 // 10
    entry = Entry(v2, stall=30.0, stall_after=cut)
    with FakeRegistry({"/classifier/2/model.onnx": entry}) as reg, VersionWatch(d) as watch:
        kit.write(d.desired, "2", mutate=_source(reg.url("/classifier/2/model.onnx")))

        def fetching() -> bool:
            snapshot = read_snapshot(d.state) or {}
            return bool(snapshot.get("models", {}).get("classifier", {}).get("fetch"))

        d.wait_for(fetching, 20, "the download in status.json")
        [row] = [r for r in d.status()["models"] if r["model"] == "classifier"]
        assert row["fetch"]["total"] == len(v2) and 0 <= row["fetch"]["bytes"] <= len(v2), row
        reg.release()  # the stalled answer ends: the connection closes at 40%
        wait_served(d, "2", timeout=60)
        assert reg.ranges("/classifier/2/model.onnx") == [None, f"bytes={cut}-"]
    assert set(watch.seen) <= {"1", "2"}, sorted(set(watch.seen))
    d.wait_for(lambda: in_sync(d, version="2"), 30, "v2 in sync")
    [done] = select(d.journal_records(), step="fetch", phase="done", to_version="2")
    assert done["detail"]["bytes"] == len(v2)
    assert not (d.state / "store" / "partial").exists() or not any(
        (d.state / "store" / "partial").iterdir()
    )
    out = d.cli("journal", "--verify")
    assert out.returncode == 0 and "hash chain intact" in out.stdout, out.stdout + out.stderr


def test_daemon_keeps_serving_while_a_fetch_keeps_failing(kit: Kit, daemon: Any) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(resync=0.5)
    wait_served(d, "1")
    with FakeRegistry({"/classifier/2/model.onnx": Entry(status=404)}) as reg:
        url = reg.url("/classifier/2/model.onnx")
        with VersionWatch(d) as watch:
            # plain http without the trust policy's opt-in: refused, nothing requested
            since = last_seq(d)
            kit.write(d.desired, "2", mutate=_source(url))
            refused = wait_records(
                d, "http refused", step="fetch", phase="failed", to_version="2", after_seq=since
            )
            assert {r["detail"]["reason"] for r in refused} == {"http-not-allowed"}, refused
            rec = refused[0]
            assert "allow_http" in rec["detail"]["message"]
            assert reg.requests == []

            # with the opt-in (and a new desired digest), the registry answers 404: retried later
            _allow_http(d.state)
            since = last_seq(d)
            kit.write(d.desired, "2", mutate=_source(url + "?again"))
            recs = wait_records(
                d,
                "404 twice",
                step="fetch",
                phase="failed",
                to_version="2",
                after_seq=since,
                at_least=2,
                timeout=30,
            )
            assert {r["detail"]["reason"] for r in recs} == {"source-missing"}, recs
            assert "HTTP 404" in recs[0]["detail"]["message"]
            assert "spec.model.source" in recs[0]["detail"]["message"]
        watch.assert_only("1")
        assert reg.count("/classifier/2/model.onnx") >= 2
    out = d.cli("journal", "--verify")
    assert out.returncode == 0, out.stdout + out.stderr
