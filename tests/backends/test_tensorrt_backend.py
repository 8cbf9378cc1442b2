"""The TensorRT backend against a fake `tensorrt` module (no GPU): build options per TensorRT
version, profiles, parser errors, the child-process build, the timing cache, cache keys,
engine refusal at load, and the execution buffer logic."""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.backends.base import BackendError, BuildOptions
from runtime.backends.tensorrt import (
    DeviceInfo,
    TensorRTBackend,
    _build_engine,
    compat_key,
    engine_cache_key,
    read_artifact,
)
from tests.support import fake_tensorrt
from tests.support.fake_tensorrt import FakeDeviceMemory
from tests.support.trt_models import DEVICE, SHAPES, backend, make_model


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Any:
    def _install(version: str = "10.3.0", behaviour: str = "") -> Any:
        fake = fake_tensorrt.make(version, behaviour)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return _install


def build_in_process(
    be: TensorRTBackend,
    model: Path,
    dest: Path,
    options: BuildOptions,
    cache: Path | None = None,
) -> list[tuple[Any, ...]]:
    """The child's entry point, run here so the fake's call records are visible."""
    q: queue.Queue[tuple[Any, ...]] = queue.Queue()
    _build_engine(
        str(model), str(dest), be.child_options(model, options), str(cache) if cache else None, q
    )
    messages = []
    while not q.empty():
        messages.append(q.get())
    last = messages[-1]
    if last[0] == "error":
        raise BackendError(last[2], reason=last[1])
    return messages


def names(fake: Any, call: str) -> list[tuple[Any, ...]]:
    return [c for c in fake.calls if c[0] == call]


# --- build options per TensorRT version ----------------------------------------------------


@pytest.mark.parametrize(("version", "flags"), [("8.6.1", 1), ("10.3.0", 0), ("11.0.0", 0)])
def test_explicit_batch_only_before_10(install: Any, tmp_path: Path, version: str, flags: int):
    fake = install(version)
    build_in_process(
        backend(), make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions(shapes=SHAPES)
    )
    assert names(fake, "create_network") == [("create_network", flags)]


@pytest.mark.parametrize(
    ("version", "flag"), [("8.6.1", "FP16"), ("10.3.0", "FP16"), ("11.0.0", None)]
)
def test_fp16_flag_only_where_it_exists(
    install: Any, tmp_path: Path, version: str, flag: str | None
):
    fake = install(version)
    messages = build_in_process(
        backend(), make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions("fp16", SHAPES)
    )
    assert names(fake, "set_flag") == ([("set_flag", flag)] if flag else [])
    notes = [m for m in messages if m[0] == "note"]
    assert bool(notes) == (flag is None)
    if notes:
        assert "strongly typed" in notes[0][1]


def test_int8_needs_qdq(install: Any, tmp_path: Path):
    fake = install("10.3.0")
    with pytest.raises(BackendError) as e:
        backend().build(
            make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions("int8", SHAPES)
        )
    assert e.value.reason == "precision-unsupported"
    assert "Q" in str(e.value) and "10.1" in str(e.value)
    build_in_process(
        backend(),
        make_model(tmp_path / "q.onnx", qdq=True),
        tmp_path / "e",
        BuildOptions("int8", SHAPES),
    )
    assert names(fake, "set_flag") == [("set_flag", "INT8")]


def test_profile_and_workspace(install: Any, tmp_path: Path):
    fake = install()
    build_in_process(
        backend(workspace_bytes=123 << 20),
        make_model(tmp_path / "m.onnx"),
        tmp_path / "e",
        BuildOptions(shapes=SHAPES),
    )
    assert names(fake, "set_shape") == [("set_shape", "x", (1, 4), (4, 4), (8, 4))]
    assert len(names(fake, "add_optimization_profile")) == 1
    assert names(fake, "set_memory_pool_limit") == [
        ("set_memory_pool_limit", "WORKSPACE", 123 << 20)
    ]


@pytest.mark.parametrize(
    ("shapes", "dims", "needle"),
    [
        ({}, ("N", 4), "'x' has dynamic dims"),
        ({"x": ((1, 3), (1, 3), (1, 3))}, ("N", 4), "fixed at 4"),
        ({"x": ((2, 4), (1, 4), (8, 4))}, ("N", 4), "min <= opt <= max"),
        ({"x": ((1,), (1,), (1,))}, ("N", 4), "rank"),
        ({"x": ((1, 4), (1, 4), (1, 4)), "z": ((1,), (1,), (1,))}, ("N", 4), "not inputs"),
    ],
)
def test_profile_validation(install: Any, tmp_path: Path, shapes: Any, dims: Any, needle: str):
    install()
    model = make_model(tmp_path / "m.onnx", dims=dims)
    with pytest.raises(BackendError) as e:
        build_in_process(backend(), model, tmp_path / "e", BuildOptions(shapes=shapes))
    assert e.value.reason == "build-failed"
    assert needle in str(e.value)


def test_static_model_needs_no_profile(install: Any, tmp_path: Path):
    fake = install()
    build_in_process(
        backend(), make_model(tmp_path / "m.onnx", dims=(2, 4)), tmp_path / "e", BuildOptions()
    )
    assert names(fake, "add_optimization_profile") == []


def test_parser_errors_are_all_listed(install: Any, tmp_path: Path):
    install()
    model = make_model(tmp_path / "m.onnx", extra_ops=("UnsupportedA", "UnsupportedB"))
    with pytest.raises(BackendError) as e:
        build_in_process(backend(), model, tmp_path / "e", BuildOptions(shapes=SHAPES))
    assert e.value.reason == "build-failed"
    assert "2 error(s)" in str(e.value)
    assert "UnsupportedA" in str(e.value) and "UnsupportedB" in str(e.value)


def test_no_engine_is_build_failed(install: Any, tmp_path: Path):
    install(behaviour="build-none")
    with pytest.raises(BackendError) as e:
        build_in_process(
            backend(), make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions(shapes=SHAPES)
        )
    assert e.value.reason == "build-failed"


def test_timing_cache_persisted_and_reused(install: Any, tmp_path: Path):
    fake = install()
    cache = tmp_path / "cache" / "timing.cache"
    model = make_model(tmp_path / "m.onnx")
    build_in_process(backend(), model, tmp_path / "e1", BuildOptions(shapes=SHAPES), cache)
    assert cache.read_bytes() == b"timing:1"
    build_in_process(backend(), model, tmp_path / "e2", BuildOptions(shapes=SHAPES), cache)
    assert [c[1] for c in names(fake, "create_timing_cache")] == [b"", b"timing:1"]
    assert cache.read_bytes() == b"timing:2"
    cache.write_bytes(b"garbage")  # a corrupt cache costs time, not the build
    messages = build_in_process(
        backend(), model, tmp_path / "e3", BuildOptions(shapes=SHAPES), cache
    )
    assert any(m[0] == "note" and "unusable" in m[1] for m in messages)
    assert cache.read_bytes() == b"timing:1"
    assert [p.name for p in cache.parent.iterdir()] == ["timing.cache"]  # no temp files left


def test_default_timing_cache_is_beside_the_engine_cache(install: Any, tmp_path: Path):
    install()
    path = backend().timing_cache_path(tmp_path / "artifacts" / "key" / "model.tensorrt.tmp")
    assert path.parent == tmp_path / "artifacts" / ".tensorrt-timing"


# --- the child-process build ----------------------------------------------------------------


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch, install: Any) -> Any:
    def _set(version: str = "10.3.0", behaviour: str = "") -> None:
        install(version)  # the parent's compat key and load use the same version
        monkeypatch.setenv("HOTSWAP_FAKE_TRT_VERSION", version)
        monkeypatch.setenv("HOTSWAP_FAKE_TRT_BEHAVIOUR", behaviour)

    return _set


def test_child_build_then_load_and_infer(child_env: Any, tmp_path: Path):
    child_env("10.3.0")
    progress: list[tuple[str, int, int]] = []
    mem = FakeDeviceMemory()
    be = backend(
        mem, trt_module="tests.support.fake_tensorrt", progress=lambda *p: progress.append(p)
    )
    dest = tmp_path / "art" / "k" / "model.tensorrt"
    dest.parent.mkdir(parents=True)
    be.build(make_model(tmp_path / "m.onnx"), dest, BuildOptions(shapes=SHAPES))
    header, _ = read_artifact(dest)
    assert header["compat"] == compat_key("10.3.0", DEVICE)
    assert header["shapes"] == {"x": [[1, 4], [4, 4], [8, 4]]}
    assert ("Building engine", 2, 2) in progress
    assert (tmp_path / "art" / ".tensorrt-timing").is_dir()
    session = be.load(dest)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(session.infer({"x": x})["y"], 2 * x)
    session.release()


def test_child_crash_is_build_crashed(child_env: Any, tmp_path: Path):
    child_env("10.3.0", "crash")
    be = backend(trt_module="tests.support.fake_tensorrt")
    with pytest.raises(BackendError) as e:
        be.build(make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions(shapes=SHAPES))
    assert e.value.reason == "build-crashed"
    assert "exit 3" in str(e.value)


def test_child_hang_is_build_timeout(child_env: Any, tmp_path: Path):
    child_env("10.3.0", "hang")
    be = backend(trt_module="tests.support.fake_tensorrt", build_timeout_s=3)
    start = time.monotonic()
    with pytest.raises(BackendError) as e:
        be.build(make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions(shapes=SHAPES))
    assert e.value.reason == "build-timeout"
    assert time.monotonic() - start < 15


def test_child_build_error_keeps_its_reason(child_env: Any, tmp_path: Path):
    child_env("8.6.1")
    be = backend(trt_module="tests.support.fake_tensorrt")
    with pytest.raises(BackendError) as e:
        be.build(make_model(tmp_path / "m.onnx"), tmp_path / "e", BuildOptions())
    assert e.value.reason == "build-failed"
    assert "'x' has dynamic dims" in str(e.value)


# --- cache keys and refusal at load ---------------------------------------------------------


def test_compat_key_changes_with_each_field():
    base = compat_key("10.3.0", DEVICE)
    assert compat_key("10.3.1", DEVICE) != base
    for change in (
        {"gpu_name": "NVIDIA H100"},
        {"compute_capability": "9.0"},
        {"cuda_runtime": "13"},
    ):
        assert compat_key("10.3.0", dataclasses.replace(DEVICE, **change)) != base
    assert compat_key("10.3.0", dataclasses.replace(DEVICE, cuda_driver="999")) == base
    assert {"os", "arch"} <= set(base)


def test_engine_cache_key_changes_with_each_field():
    compat = compat_key("10.3.0", DEVICE)
    opts = BuildOptions("fp32", SHAPES)
    base = engine_cache_key("a" * 64, opts, compat, {"workspace_bytes": 1})
    variants = [
        engine_cache_key("b" * 64, opts, compat, {"workspace_bytes": 1}),
        engine_cache_key("a" * 64, BuildOptions("fp16", SHAPES), compat, {"workspace_bytes": 1}),
        engine_cache_key(
            "a" * 64,
            BuildOptions("fp32", {"x": ((1, 4), (4, 4), (16, 4))}),
            compat,
            {"workspace_bytes": 1},
        ),
        engine_cache_key("a" * 64, opts, compat_key("10.4.0", DEVICE), {"workspace_bytes": 1}),
        engine_cache_key("a" * 64, opts, compat, {"workspace_bytes": 2}),
    ]
    assert len({base, *variants}) == 6


@pytest.fixture
def artifact(install: Any, tmp_path: Path) -> Path:
    install("10.3.0")
    dest = tmp_path / "model.tensorrt"
    build_in_process(backend(), make_model(tmp_path / "m.onnx"), dest, BuildOptions(shapes=SHAPES))
    return dest


@pytest.mark.parametrize(
    ("version", "device", "field"),
    [
        ("10.4.0", DEVICE, "tensorrt"),
        ("10.3.0", dataclasses.replace(DEVICE, gpu_name="NVIDIA H100"), "gpu"),
        ("10.3.0", dataclasses.replace(DEVICE, compute_capability="9.0"), "compute_capability"),
        ("10.3.0", dataclasses.replace(DEVICE, cuda_runtime="13"), "cuda_runtime_major"),
    ],
)
def test_load_refuses_engine_with_any_key_field_changed(
    artifact: Path, install: Any, version: str, device: DeviceInfo, field: str
):
    fake = install(version)
    with pytest.raises(BackendError) as e:
        backend(device=device).load(artifact)
    assert e.value.reason == "engine-mismatch"
    assert field in str(e.value)
    assert names(fake, "deserialize_cuda_engine") == []  # never handed to TensorRT


def test_load_refuses_tampered_engine(artifact: Path):
    data = bytearray(artifact.read_bytes())
    data[-2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(BackendError) as e:
        backend().load(artifact)
    assert e.value.reason == "load-failed" and "sha256" in str(e.value)


def test_load_of_undeserializable_engine_fails(artifact: Path, install: Any):
    install("10.3.0", "deserialize-none")
    with pytest.raises(BackendError) as e:
        backend().load(artifact)
    assert e.value.reason == "load-failed"
    assert "another TensorRT/GPU" in str(e.value)


def test_not_an_engine(tmp_path: Path, install: Any):
    install()
    (tmp_path / "x").write_bytes(b"hello")
    with pytest.raises(BackendError) as e:
        backend().load(tmp_path / "x")
    assert e.value.reason == "load-failed"


# --- execution ------------------------------------------------------------------------------


def test_io_and_buffers_sized_for_max_profile(artifact: Path, install: Any):
    fake = install("10.3.0")
    mem = FakeDeviceMemory()
    session = backend(mem).load(artifact)
    assert [(t.name, t.datatype, t.shape) for t in session.inputs] == [("x", "FP32", (-1, 4))]
    assert [(t.name, t.datatype, t.shape) for t in session.outputs] == [("y", "FP32", (-1, 4))]
    x = np.ones((2, 4), dtype=np.float32)
    out = session.infer({"x": x})["y"]
    assert out.shape == (2, 4)  # sized from the context, not the buffer
    np.testing.assert_array_equal(out, 2 * x)
    assert mem.allocs == [8 * 4 * 4, 8 * 4 * 4]  # input and output at the max profile (8, 4)
    ctx = fake.last_engine.contexts[0]
    assert set(ctx.addresses) == {"x", "y"} and ctx.executions == 1
    # the largest batch fits; one beyond the profile is refused before TensorRT runs
    np.testing.assert_array_equal(session.infer({"x": np.ones((8, 4), np.float32)})["y"], 2)
    with pytest.raises(BackendError) as e:
        session.infer({"x": np.ones((9, 4), np.float32)})
    assert e.value.reason == "bad-shape"
    with pytest.raises(BackendError) as e:
        session.infer({"x": np.ones((2, 5), np.float32)})
    assert e.value.reason == "bad-shape"
    assert len(fake.last_engine.contexts) == 1  # sequential callers reuse one context
    session.release()
    assert len(mem.freed) == 2 and mem.streams_destroyed == 1
    with pytest.raises(BackendError):
        session.infer({"x": x})


def test_concurrent_callers_get_different_contexts(artifact: Path, install: Any):
    fake = install("10.3.0")
    barrier = threading.Barrier(2, timeout=5)

    class Meeting(FakeDeviceMemory):
        def synchronize(self, stream: Any) -> None:
            barrier.wait()  # both calls in flight at once, or this times out

    session = backend(Meeting(), max_contexts=2).load(artifact)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def call(n: int) -> None:
        try:
            results.append(session.infer({"x": np.full((n, 4), n, np.float32)})["y"])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call, args=(n,)) for n in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert sorted(r.shape for r in results) == [(1, 4), (3, 4)]
    for r in results:
        np.testing.assert_array_equal(r, 2 * r.shape[0])
    assert len(fake.last_engine.contexts) == 2
    session.release()


def test_contexts_are_capped(artifact: Path, install: Any):
    fake = install("10.3.0")
    session = backend(max_contexts=1).load(artifact)
    threads = [
        threading.Thread(target=session.infer, args=({"x": np.ones((2, 4), np.float32)},))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(fake.last_engine.contexts) == 1
    assert fake.last_engine.contexts[0].executions == 4


# --- optional import ------------------------------------------------------------------------


def test_backends_import_without_tensorrt(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    import runtime.backends as backends

    assert "tensorrt" not in backends.available_backends()
    assert "onnxruntime" in backends.available_backends()
    with pytest.raises(BackendError) as e:
        backends.get_backend("tensorrt")
    assert e.value.reason == "backend-unavailable"
    assert "hotswap[tensorrt]" in str(e.value)


def test_available_with_tensorrt_only_where_a_gpu_answers(
    install: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("10.16.0")
    import runtime.backends as backends
    import runtime.backends.tensorrt.backend as trt_backend  # where the backend looks it up

    def no_gpu() -> DeviceInfo:
        raise BackendError("no CUDA device", reason="cuda-error")

    monkeypatch.setattr(trt_backend, "cuda_device_info", no_gpu)
    assert "tensorrt" not in backends.available_backends()
    monkeypatch.setattr(trt_backend, "cuda_device_info", lambda: DEVICE)
    assert backends.available_backends()["tensorrt"].startswith("10.16.0+")


def test_the_control_planes_build_key_changes_with_the_device_and_builder_settings(
    install: Any,
) -> None:
    """An engine built for another GPU or setting is rebuilt by plan, not refused at load."""
    from reconciler.core.buildkey import build_key
    from reconciler.core.desired import ModelSpec

    install("10.3.0")
    spec = ModelSpec(name="m", version="1", source="/m.onnx", sha256="a" * 64, backend="tensorrt")
    base = build_key(spec, backend().cache_identity)
    assert base == build_key(spec, backend().cache_identity)
    for other in (
        backend(device=dataclasses.replace(DEVICE, gpu_name="NVIDIA H100")),
        backend(device=dataclasses.replace(DEVICE, compute_capability="9.0")),
        backend(workspace_bytes=2 << 30),
    ):
        assert build_key(spec, other.cache_identity) != base
    install("10.4.0")
    assert build_key(spec, backend().cache_identity) != base


def test_configured_settings_reach_the_backend_and_its_cache_identity(
    install: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.backends as backends
    import runtime.backends.tensorrt.backend as trt_backend  # where the backend looks it up

    install("10.3.0")
    monkeypatch.setattr(trt_backend, "cuda_device_info", lambda: DEVICE)
    monkeypatch.setattr(backends, "_OPTIONS", {})
    default = backends.available_backends()["tensorrt"]
    backends.configure("tensorrt", workspace_bytes=2 << 30, build_timeout_s=60.0)
    made = backends.get_backend("tensorrt")
    assert made.workspace_bytes == 2 << 30 and made.build_timeout_s == 60.0
    assert backends.available_backends()["tensorrt"] != default


def test_memory_need_is_the_engine_plus_activations_per_context(
    child_env: Any, tmp_path: Path
) -> None:
    child_env("10.3.0")
    be = backend(FakeDeviceMemory(), trt_module="tests.support.fake_tensorrt", max_contexts=3)
    dest = tmp_path / "art" / "k" / "model.tensorrt"
    dest.parent.mkdir(parents=True)
    be.build(make_model(tmp_path / "m.onnx"), dest, BuildOptions(shapes=SHAPES))
    header, _ = read_artifact(dest)
    assert header["device_memory"] == 4096
    assert be.memory_need(dest) == dest.stat().st_size + 3 * 4096
