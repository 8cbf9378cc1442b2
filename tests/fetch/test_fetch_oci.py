"""OCI registries as model sources, against a real registry (Debian's docker-registry, CNCF
distribution) on 127.0.0.1 with htpasswd auth: push a package, pull it back through the same
store loop as HTTP, and the failures that matter: a wrong password, a dropped blob resumed with
Range, a digest that does not match, a registry that is down.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import IntegrityError, InvalidInput, TransientError
from reconciler.fetch.credentials import Credentials, HostAccess, Secret
from reconciler.fetch.download import beside, fetch, fetch_bytes, manifest_location
from reconciler.fetch.oci_push import ARTIFACT_TYPE, EMPTY_TYPE, Pushed, push_package
from reconciler.state.store import Store
from tests.support.daemon import free_port
from tests.support.oci_registry import CutProxy, OciRegistry, registry_available
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.skipif(registry_available() is not None, reason=str(registry_available()))

MODEL = os.urandom(3 * (1 << 20) + 777)
SHA = hashlib.sha256(MODEL).hexdigest()
FAST = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)
NO_SLEEP = {"sleep": lambda _s: None, "timeout": FAST}


def access(host: str, password: str) -> Credentials:
    entry = HostAccess(host, username="publisher", password=Secret(password), plain_http=True)
    return Credentials({host: entry}, source="credentials.yaml")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    with OciRegistry(tmp_path_factory.mktemp("oci")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(registry: OciRegistry, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    package = tmp_path_factory.mktemp("package")
    (package / "model.onnx").write_bytes(MODEL)
    (package / "manifest.json").write_text('{"name": "classifier", "version": "5"}\n')
    (package / "manifest.json.sig").write_text("signature bytes\n")
    creds = access(registry.host, registry.password)
    target = f"oci://{registry.host}/models/classifier:5"
    return push_package(package, target, credentials=creds, allow_http=True, timeout=FAST)


def spec_for(source: str, sha256: str = SHA) -> ModelSpec:
    return ModelSpec(name="classifier", version="5", source=source, sha256=sha256)


def test_a_pushed_package_is_an_oras_style_artifact(registry: OciRegistry, pushed: Pushed) -> None:
    url = f"{registry.url}/v2/models/classifier/manifests/5"
    answer = httpx.get(
        url,
        auth=(registry.user, registry.password),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert answer.status_code == 200
    assert "sha256:" + hashlib.sha256(answer.content).hexdigest() == pushed.digest
    manifest = json.loads(answer.content)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == EMPTY_TYPE and manifest["config"]["size"] == 2
    titles = {x["annotations"]["org.opencontainers.image.title"] for x in manifest["layers"]}
    assert titles == {"model.onnx", "manifest.json", "manifest.json.sig"}
    assert pushed.layers["model.onnx"] == f"sha256:{SHA}"


def test_push_then_pull_through_the_store_with_progress(
    registry: OciRegistry, pushed: Pushed, tmp_path: Path
) -> None:
    store, seen = Store(tmp_path / "store"), []
    creds = access(registry.host, registry.password)
    spec = spec_for(pushed.reference)
    path = fetch(
        spec,
        store,
        allow_http=True,
        credentials=creds,
        progress=lambda d, t: seen.append((d, t)),
        **NO_SLEEP,
    )
    assert path.read_bytes() == MODEL and seen[-1] == (len(MODEL), len(MODEL))
    manifest = fetch_bytes(manifest_location(spec), allow_http=True, credentials=creds)
    assert json.loads(manifest)["version"] == "5"
    sig = fetch_bytes(manifest_location(spec) + ".sig", allow_http=True, credentials=creds)
    assert sig == b"signature bytes\n"
    with pytest.raises(TransientError) as missing:  # a file the package does not have
        fetch_bytes(beside(spec.source, "nope.txt"), allow_http=True, credentials=creds)
    assert missing.value.reason == "source-missing"
    by_tag = pushed.reference.partition("@")[0]  # a tag alone: the sha256 still pins the model
    other = Store(tmp_path / "other")
    assert fetch(spec_for(by_tag), other, allow_http=True, credentials=creds).read_bytes() == MODEL


def test_a_wrong_password_is_one_clear_refusal_not_a_retry_storm(
    registry: OciRegistry, pushed: Pushed, tmp_path: Path
) -> None:
    wrong = "not-the-password-123"
    digest = pushed.digest
    before = len(registry.requests(digest))
    store = Store(tmp_path / "store")
    with pytest.raises(TransientError) as info:
        fetch(spec_for(pushed.reference), store, allow_http=True, credentials=access(
            registry.host, wrong), **NO_SLEEP)  # fmt: skip
    assert info.value.reason == "auth-failed"
    assert "refused the credentials" in info.value.message
    assert wrong not in str(info.value) and wrong not in repr(info.value.__cause__)
    # one request without credentials (the challenge), one with them: then the answer
    assert len(registry.requests(digest)) - before == 2
    assert store.blobs() == frozenset() and store.partials() == {}
    plain = Credentials({registry.host: HostAccess(registry.host, plain_http=True)})
    with pytest.raises(TransientError) as anonymous:  # no username: the 401 stands
        fetch(spec_for(pushed.reference), store, allow_http=True, credentials=plain, **NO_SLEEP)
    assert anonymous.value.reason == "source-missing"


def test_plain_http_needs_the_trust_policy_opt_in(registry: OciRegistry, pushed: Pushed) -> None:
    creds = access(registry.host, registry.password)
    with pytest.raises(InvalidInput) as info:
        fetch(spec_for(pushed.reference), Store(Path("/nonexistent")), credentials=creds)
    assert info.value.reason == "http-not-allowed"


def test_a_blob_cut_mid_way_resumes_with_range(
    registry: OciRegistry, pushed: Pushed, tmp_path: Path
) -> None:
    with CutProxy(registry.port, f"/blobs/sha256:{SHA}".encode(), after=1 << 20) as proxy:
        host = f"127.0.0.1:{proxy.port}"
        source = pushed.reference.replace(registry.host, host)
        store = Store(tmp_path / "store")
        path = fetch(
            spec_for(source), store, allow_http=True, credentials=access(host, registry.password)
        )
        assert proxy.cut == 1
    assert path.read_bytes() == MODEL
    blob_gets = registry.requests(f"/blobs/sha256:{SHA}")
    assert any('" 206 ' in line for line in blob_gets), blob_gets  # the resume asked a Range


def test_a_sha256_the_artifact_does_not_hold_is_refused(
    registry: OciRegistry, pushed: Pushed, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    creds = access(registry.host, registry.password)
    other = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(IntegrityError) as info:
        fetch(spec_for(pushed.reference, other), store, allow_http=True, credentials=creds)
    assert info.value.reason == "sha256-mismatch" and "no layer with" in info.value.message
    assert store.blobs() == frozenset() and store.partials() == {}
    unknown = pushed.reference.partition("@")[0] + "@sha256:" + "0" * 64
    with pytest.raises(TransientError) as missing:
        fetch(spec_for(unknown), store, allow_http=True, credentials=creds, **NO_SLEEP)
    assert missing.value.reason == "source-missing"


def test_bytes_that_do_not_match_their_digest_leave_nothing_in_the_store(
    tmp_path: Path,
) -> None:
    """A registry whose storage was tampered with: its own copy of the blob is changed."""
    with OciRegistry(tmp_path / "reg") as registry:
        package = tmp_path / "package"
        package.mkdir()
        (package / "model.onnx").write_bytes(MODEL)
        creds = access(registry.host, registry.password)
        ref = f"oci://{registry.host}/models/tampered:1"
        pushed = push_package(package, ref, credentials=creds, allow_http=True)
        blob = registry.blob_file(f"sha256:{SHA}")
        blob.write_bytes(MODEL[:100] + bytes([MODEL[100] ^ 1]) + MODEL[101:])
        store = Store(tmp_path / "store")
        with pytest.raises(IntegrityError) as info:
            fetch(spec_for(pushed.reference), store, allow_http=True, credentials=creds)
    assert info.value.reason == "sha256-mismatch"
    assert store.blobs() == frozenset() and store.partials() == {}


def test_a_registry_that_is_down_is_retried_then_transient(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    source = f"oci://{host}/models/classifier:5"
    store, sleeps = Store(tmp_path / "store"), []
    with pytest.raises(TransientError) as info:
        fetch(
            spec_for(source),
            store,
            allow_http=True,
            credentials=access(host, "pw"),
            sleep=sleeps.append,
            timeout=FAST,
        )
    assert info.value.reason == "fetch-failed" and not info.value.terminal
    assert len(sleeps) == 3 and store.blobs() == frozenset()


def test_bearer_token_auth_against_the_registry(tmp_path: Path) -> None:
    """401 Bearer realm=... -> a token from the realm with the basic login -> the retry."""
    with (
        TokenServer(tmp_path / "tokens", "publisher", "token-login-pw") as tokens,
        OciRegistry(tmp_path / "reg", token=tokens) as registry,
    ):
        package = tmp_path / "package"
        package.mkdir()
        (package / "model.onnx").write_bytes(MODEL)
        creds = access(registry.host, "token-login-pw")
        ref = f"oci://{registry.host}/models/tokened:1"
        pushed = push_package(package, ref, credentials=creds, allow_http=True, timeout=FAST)
        assert any("push" in scope for scope in tokens.issued), tokens.issued
        store = Store(tmp_path / "store")
        path = fetch(spec_for(pushed.reference), store, allow_http=True, credentials=creds)
        assert path.read_bytes() == MODEL
        assert "repository:models/tokened:pull" in tokens.issued
        with pytest.raises(TransientError) as info:  # a wrong login: the token service says no
            fetch(spec_for(pushed.reference), Store(tmp_path / "s2"), allow_http=True,
                  credentials=access(registry.host, "wrong-login"), **NO_SLEEP)  # fmt: skip
        assert info.value.reason == "auth-failed" and tokens.refused == 1
        assert "wrong-login" not in str(info.value)
