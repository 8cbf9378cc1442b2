"""The build step: precision transform + optimised ONNX in the artifact cache, keyed by
everything that makes an artifact incompatible, and refused if damaged."""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reconciler.core.buildkey import build_key
from reconciler.core.desired import HealthSpec, RetentionSpec, RolloutSpec, ShapeRange
from reconciler.core.errors import InvalidInput, RuntimeFailure, TransientError
from reconciler.ops.artifacts import ArtifactCache
from reconciler.state.atomic import TEMP_SUFFIX
from reconciler.verify.model import VerifiedModel, verify
from runtime.backends.base import BackendError
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.fsutil import sha256_file
from tests.support.units import golden, model_path, spec_from_doc

BACKEND = OnnxRuntimeBackend()


def verified(kit: Any, tmp_path: Path, precision: str = "fp32") -> VerifiedModel:
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired", precision=precision)
    return verify(spec, model_path(kit, "1"))


def build(kit: Any, tmp_path: Path, precision: str) -> tuple[ArtifactCache, str, Path]:
    cache = ArtifactCache(tmp_path / "artifacts")
    v = verified(kit, tmp_path, precision)
    key = build_key(v.spec, BACKEND.version)
    return cache, key, cache.build(v, key, BACKEND)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    return BACKEND.load(path, threads=2).infer({"input": x})["logits"]


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_fp32_build_is_loadable_and_matches_golden(kit: Any, tmp_path: Path) -> None:
    cache, key, path = build(kit, tmp_path, "fp32")
    assert cache.keys() == frozenset({key})
    assert cache.open(key) == path
    meta = json.loads((path.parent / "meta.json").read_text())
    assert meta["key"] == key and meta["sha256"] == sha256_file(path)
    assert meta["precision"] == "fp32" and meta["backend_version"] == BACKEND.version
    assert sorted(p.name for p in path.parent.iterdir()) == ["meta.json", "model.onnxruntime"]
    assert no_temp_files(cache.root)
    g = golden(kit, "1")
    np.testing.assert_allclose(run(path, g["input"]), g["logits"], atol=1e-4)


def test_int8_build_quantises_and_stays_close(kit: Any, tmp_path: Path) -> None:
    _, _, fp32 = build(kit, tmp_path / "a", "fp32")
    cache, key, int8 = build(kit, tmp_path / "b", "int8")
    assert cache.open(key) == int8
    assert json.loads((int8.parent / "meta.json").read_text())["precision"] == "int8"
    # weights really went to int8: the artifact is far smaller than the fp32 one
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    g = golden(kit, "1")
    got, want = run(int8, g["input"]), g["logits"]
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want)) > 1e-4  # quantised, so not bit-for-bit fp32...
    cosine = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    )
    assert np.all(cosine > 0.99), cosine  # ...but the same function
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def test_fp16_on_cpu_is_refused_as_invalid_input(kit: Any, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts")
    v = verified(kit, tmp_path, "fp16")
    key = build_key(v.spec, BACKEND.version)
    with pytest.raises(InvalidInput) as info:
        cache.build(v, key, BACKEND)
    assert info.value.reason == "precision-unsupported"
    assert info.value.terminal
    assert "fp16" in str(info.value)
    assert cache.keys() == frozenset()
    assert no_temp_files(cache.root)
    with pytest.raises(RuntimeFailure):
        cache.open(key)


def flip_byte(path: Path, offset: int) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_damaged_artifact_is_refused_and_discarded(kit: Any, tmp_path: Path, where: str) -> None:
    cache, key, path = build(kit, tmp_path, "fp32")
    size = path.stat().st_size
    flip_byte(path, {"start": 0, "middle": size // 2, "end": size - 1}[where])
    with pytest.raises(RuntimeFailure) as info:
        cache.open(key)
    assert info.value.reason == "artifact-damaged"
    assert not path.parent.exists()
    keys = cache.keys()
    assert key not in keys


def test_an_artifact_without_readable_meta_is_refused(kit: Any, tmp_path: Path) -> None:
    cache, key, path = build(kit, tmp_path, "fp32")
    (path.parent / "meta.json").write_text("{not json")
    with pytest.raises(RuntimeFailure, match="damaged"):
        cache.open(key)
    assert not path.parent.exists()


def test_an_artifact_under_another_key_is_refused(kit: Any, tmp_path: Path) -> None:
    cache, _, path = build(kit, tmp_path, "fp32")
    other = "f" * 64
    path.parent.rename(cache.root / other)  # right bytes, wrong key (a copy under another name)
    assert cache.keys() == frozenset({other})
    with pytest.raises(RuntimeFailure):
        cache.open(other)
    assert cache.keys() == frozenset()


def test_remove(kit: Any, tmp_path: Path) -> None:
    cache, key, path = build(kit, tmp_path, "fp32")
    cache.remove(key)
    assert cache.keys() == frozenset() and not path.parent.exists()
    cache.remove(key)  # already gone: fine


# -- the build key ---------------------------------------------------------------------------


def test_build_key_changes_with_every_compatibility_field(kit: Any, tmp_path: Path) -> None:
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired")
    base = build_key(spec, "1.32.0")
    rng = ShapeRange((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224))
    variants = {
        "precision": build_key(dataclasses.replace(spec, precision="int8"), "1.32.0"),
        "shapes": build_key(dataclasses.replace(spec, shapes=(("input", rng),)), "1.32.0"),
        "no shapes": build_key(dataclasses.replace(spec, shapes=()), "1.32.0"),
        "backend version": build_key(spec, "1.33.0"),
        "backend unavailable": build_key(spec, None),
        "sha256": build_key(dataclasses.replace(spec, sha256="0" * 64), "1.32.0"),
        "backend": build_key(dataclasses.replace(spec, backend="tensorrt"), "1.32.0"),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants), variants


def test_build_key_ignores_what_does_not_change_the_artifact(kit: Any, tmp_path: Path) -> None:
    """Relabelling, health, rollout and retention settings reuse the cached build."""
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired")
    base = build_key(spec, "1.32.0")
    assert build_key(spec, "1.32.0") == base
    for changed in (
        dataclasses.replace(spec, version="9"),
        dataclasses.replace(spec, source="https://registry.example/classifier/1/model.onnx"),
        dataclasses.replace(spec, health=HealthSpec(warmup_iterations=1, atol=0.5)),
        dataclasses.replace(spec, rollout=RolloutSpec(strategy="canary")),
        dataclasses.replace(spec, retention=RetentionSpec(keep_standby=False)),
        dataclasses.replace(spec, file="desired/other.yaml"),
    ):
        assert build_key(changed, "1.32.0") == base


class _FullDisk:
    """A backend whose write hits ENOSPC, as a full disk or a tiny filesystem would."""

    name = "onnxruntime"
    version = OnnxRuntimeBackend.version

    def build(self, model: Path, dest: Path, options: Any) -> None:
        dest.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))


def test_full_disk_during_build_is_transient_leaves_nothing_and_retry_succeeds(
    kit: Any, tmp_path: Path
) -> None:
    v = verified(kit, tmp_path)
    cache = ArtifactCache(tmp_path / "artifacts")
    key = build_key(v.spec, OnnxRuntimeBackend.version)
    with pytest.raises(TransientError) as info:
        cache.build(v, key, _FullDisk())
    assert info.value.reason == "disk-full"
    assert "no space left" in str(info.value)
    built = cache.keys()
    assert key not in built
    assert no_temp_files(tmp_path / "artifacts")
    assert not any((tmp_path / "artifacts").rglob("model.*"))
    # space is back: the same build goes through
    path = cache.build(v, key, OnnxRuntimeBackend())
    built = cache.keys()
    assert key in built and cache.open(key) == path


def test_backend_failure_on_a_nearly_full_disk_counts_as_disk_full(
    kit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failing(_FullDisk):
        def build(self, model: Path, dest: Path, options: Any) -> None:
            raise BackendError("onnxruntime could not write the model", reason="build-failed")

    v = verified(kit, tmp_path)
    cache = ArtifactCache(tmp_path / "artifacts")
    key = build_key(v.spec, OnnxRuntimeBackend.version)
    monkeypatch.setattr(
        "reconciler.ops.artifacts.shutil.disk_usage", lambda _: shutil._ntuple_diskusage(10, 10, 0)
    )
    with pytest.raises(TransientError) as info:
        cache.build(v, key, Failing())
    assert info.value.reason == "disk-full"
    monkeypatch.undo()
    with pytest.raises(RuntimeFailure) as other:  # with space, the same failure is the model's
        cache.build(v, key, Failing())
    assert other.value.reason == "build-failed"
