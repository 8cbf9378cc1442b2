"""Planner tests: one YAML file per case in tests/core/plan_cases/, named as the sentence it proves.

A case file has three keys:

- `desired`: `models` (compact specs: name, version, sha256, plus optional source, backend,
  precision, shapes, warmup, golden, atol, max_latency_ms, strategy, keep_standby,
  keep_versions, file), `errors` (LoadError fields: file, model) and `readable` (default true).
- `observed`: `models` (name -> active/candidate/standby {version, sha256, build_key, digest,
  healthy, source_file} and failed_digest), `blobs`, `artifacts`, `damaged` (blobs set aside
  as damaged, not fetched again) and `backend_versions`
  (default {onnxruntime: "1.32.0"}).
- `steps`: the exact `str(step)` lines `plan()` must return, in order.

Placeholders keep the files readable and independent of hashing details:

- a sha256 shorter than 64 characters is repeated to 64 ("b2" -> "b2b2...b2");
- `$key` in an instance's build_key is the build key of that model's desired spec;
  `$key@1.17.0` the same key computed as if the backend were at version 1.17.0;
- `$key:NAME` (or `$key:NAME@VERSION`) in `artifacts` is NAME's desired build key;
- `$digest` in failed_digest / digest is that model's desired digest;
- `$key` inside an expected step line is the first 12 characters of the build key of the model
  named by the line's second word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.buildkey import build_key
from reconciler.core.desired import (
    Desired,
    Gates,
    HealthSpec,
    LoadError,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
    ShapeRange,
)
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.core.plan import plan
from reconciler.core.steps import Revert, Swap, Unload
from reconciler.source.load import parse_duration

CASES = Path(__file__).parent / "plan_cases"
DEFAULT_BACKENDS = {"onnxruntime": "1.32.0"}


def sha(token: str) -> str:
    token = str(token)
    return token if len(token) == 64 else (token * 64)[:64]


def make_spec(d: dict[str, Any]) -> ModelSpec:
    name, version = d["name"], str(d["version"])
    shapes = tuple(
        (inp, ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])))
        for inp, r in sorted(d.get("shapes", {}).items())
    )
    return ModelSpec(
        name=name,
        version=version,
        source=d.get("source", f"/registry/{name}/{version}/model.onnx"),
        sha256=sha(d["sha256"]),
        backend=d.get("backend", "onnxruntime"),
        precision=d.get("precision", "fp32"),
        shapes=shapes,
        health=HealthSpec(
            warmup_iterations=d.get("warmup", 10),
            golden=d.get("golden"),
            atol=d.get("atol", 1e-3),
            max_latency_ms=d.get("max_latency_ms"),
        ),
        rollout=_rollout(d.get("rollout", {"strategy": d.get("strategy", "immediate")})),
        retention=RetentionSpec(
            keep_standby=d.get("keep_standby", True), keep_versions=d.get("keep_versions", 3)
        ),
        file=d.get("file", f"desired/{name}.yaml"),
    )


def _rollout(d: dict[str, Any]) -> RolloutSpec:
    return RolloutSpec(
        strategy=d["strategy"],
        steps=tuple(
            RolloutStage(float(s["weight"]), parse_duration(s["for"]), s["for"])
            for s in d.get("steps", [])
        ),
        gates=Gates(**d.get("gates", {})),
    )


def make_desired(d: dict[str, Any]) -> Desired:
    specs = [make_spec(m) for m in d.get("models") or []]
    errors = tuple(
        LoadError(
            file=e["file"], message=e.get("message", f"{e['file']}: invalid"), model=e.get("model")
        )
        for e in d.get("errors") or []
    )
    return Desired(
        models={s.name: s for s in specs}, errors=errors, readable=d.get("readable", True)
    )


class Resolver:
    def __init__(self, desired: Desired, backends: dict[str, str]) -> None:
        self.desired = desired
        self.backends = backends

    def spec(self, name: str) -> ModelSpec:
        assert name in self.desired.models, f"placeholder for {name!r}, which is not desired"
        return self.desired.models[name]

    def key(self, name: str, backend_version: str | None = None) -> str:
        spec = self.spec(name)
        return build_key(spec, backend_version or self.backends.get(spec.backend))

    def value(self, name: str, text: str) -> str:
        if text == "$digest":
            return self.spec(name).digest
        if text.startswith("$key:"):
            target, _, at = text[len("$key:") :].partition("@")
            return self.key(target, at or None)
        if text.startswith("$key"):
            _, _, at = text.partition("@")
            return self.key(name, at or None)
        return text

    def instance(self, name: str, d: dict[str, Any] | None) -> InstanceInfo | None:
        if d is None:
            return None
        return InstanceInfo(
            version=str(d["version"]),
            sha256=sha(d.get("sha256", "00")),
            build_key=self.value(name, d.get("build_key", "not-a-key")),
            digest=self.value(name, d.get("digest", "")),
            healthy=d.get("healthy", False),
            source_file=d.get("source_file", f"desired/{name}.yaml"),
            stages_passed=d.get("stages_passed", 0),
        )


def make_observed(d: dict[str, Any], desired: Desired) -> Observed:
    backends = d.get("backend_versions", DEFAULT_BACKENDS)
    r = Resolver(desired, backends)
    models = {
        name: ModelObserved(
            name=name,
            active=r.instance(name, m.get("active")),
            candidate=r.instance(name, m.get("candidate")),
            standby=r.instance(name, m.get("standby")),
            failed_digest=r.value(name, m["failed_digest"]) if m.get("failed_digest") else None,
        )
        for name, m in (d.get("models") or {}).items()
    }
    return Observed(
        models=models,
        blobs=frozenset(sha(b) for b in d.get("blobs") or []),
        artifacts=frozenset(r.value("", a) for a in d.get("artifacts") or []),
        backend_versions=tuple(sorted(backends.items())),
        damaged=frozenset(sha(b) for b in d.get("damaged") or []),
    )


def expected_lines(lines: list[str], desired: Desired, observed: Observed) -> list[str]:
    out = []
    for line in lines:
        if "$key" in line:
            model = line.split()[1].rstrip(":")
            spec = desired.models[model]
            line = line.replace(
                "$key", build_key(spec, observed.backend_version(spec.backend))[:12]
            )
        out.append(line)
    return out


def load_case(path: Path) -> tuple[Desired, Observed, list[str]]:
    case = yaml.safe_load(path.read_text())
    assert set(case) <= {"desired", "observed", "steps"}, f"{path.name}: unknown keys"
    desired = make_desired(case.get("desired") or {})
    observed = make_observed(case.get("observed") or {}, desired)
    return desired, observed, expected_lines(case.get("steps") or [], desired, observed)


CASE_FILES = sorted(CASES.glob("*.yaml"))


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 15


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_plan_case(path: Path) -> None:
    desired, observed, expected = load_case(path)
    assert [str(step) for step in plan(desired, observed)] == expected


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_plan_is_deterministic(path: Path) -> None:
    desired, observed, _ = load_case(path)
    first = plan(desired, observed)
    again = plan(*load_case(path)[:2])
    assert first == again
    assert [str(s) for s in first] == [str(s) for s in again]


def test_every_planned_step_that_is_not_swap_or_verify_or_retire_is_not_done() -> None:
    """`done()` steps are dropped: nothing in a plan is already finished (swap/retire/verify are
    judged when their turn comes)."""
    for path in CASE_FILES:
        desired, observed, _ = load_case(path)
        for step in plan(desired, observed):
            if step.name in ("swap", "retire", "verify"):
                continue
            assert not step.done(observed), f"{path.stem}: {step} is already done"


# -- property: plan never raises, never unloads what is desired or held -----------------------

NAMES = st.sampled_from(["a", "b", "classifier", "detector"])
SHAS = st.sampled_from(["a1", "b2", "c3"])
VERSIONS = st.sampled_from(["1", "2", "3"])


@st.composite
def specs(draw: st.DrawFn, name: str) -> ModelSpec:
    return make_spec(
        {
            "name": name,
            "version": draw(VERSIONS),
            "sha256": draw(SHAS),
            "precision": draw(st.sampled_from(["fp32", "int8", "fp16"])),
            "backend": draw(st.sampled_from(["onnxruntime", "tensorrt"])),
            "keep_standby": draw(st.booleans()),
            "file": draw(st.sampled_from([f"desired/{name}.yaml", "desired/shared.yaml"])),
        }
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Desired, Observed]:
    desired_names = draw(st.sets(NAMES))
    models = {n: draw(specs(n)) for n in sorted(desired_names)}
    errors = tuple(
        LoadError(file=f, message="bad", model=m)
        for f, m in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        ["desired/a.yaml", "desired/shared.yaml", "desired/classifier.yaml"]
                    ),
                    st.one_of(st.none(), NAMES),
                ),
                max_size=3,
            )
        )
    )
    desired = Desired(models=models, errors=errors, readable=draw(st.booleans()))
    backends = draw(
        st.dictionaries(st.sampled_from(["onnxruntime", "tensorrt"]), st.sampled_from(["1", "2"]))
    )

    def key_for(name: str) -> st.SearchStrategy[str]:
        options = [st.just("other-key")]
        if name in models:
            spec = models[name]
            options.append(st.just(build_key(spec, backends.get(spec.backend))))
            options.append(st.just(build_key(spec, "0-old")))
        return st.one_of(*options)

    def instance(name: str) -> st.SearchStrategy[InstanceInfo | None]:
        return st.one_of(
            st.none(),
            st.builds(
                InstanceInfo,
                version=VERSIONS,
                sha256=SHAS.map(sha),
                build_key=key_for(name),
                digest=st.just(models[name].digest if name in models else ""),
                healthy=st.booleans(),
                source_file=st.sampled_from(
                    [f"desired/{name}.yaml", "desired/shared.yaml", "desired/a.yaml"]
                ),
            ),
        )

    observed_models = {}
    for name in sorted(draw(st.sets(NAMES))):
        failed = draw(
            st.one_of(
                st.none(),
                st.just("deadbeef"),
                st.just(models[name].digest if name in models else "x"),
            )
        )
        observed_models[name] = ModelObserved(
            name,
            draw(instance(name)),
            draw(instance(name)),
            draw(instance(name)),
            failed_digest=failed,
        )
    all_keys = [build_key(s, backends.get(s.backend)) for s in models.values()]
    observed = Observed(
        models=observed_models,
        blobs=frozenset(draw(st.sets(SHAS.map(sha)))),
        artifacts=frozenset(draw(st.sets(st.sampled_from(all_keys))) if all_keys else ()),
        backend_versions=tuple(sorted(backends.items())),
    )
    return desired, observed


@settings(max_examples=120, deadline=None)
@given(scenarios())
def test_plan_never_raises_and_never_unloads_desired_or_held(
    scenario: tuple[Desired, Observed],
) -> None:
    desired, observed = scenario
    steps = plan(desired, observed)
    assert steps == plan(desired, observed)
    held = desired.held_models()
    for step in steps:
        str(step)  # every step renders
        assert step.model in set(desired.models) | set(observed.models)
        if isinstance(step, Unload):
            assert step.model not in desired.models
            assert step.model not in held
            assert desired.readable
    # one model's steps are contiguous (they are handed to one worker in order)
    seen: list[str] = []
    for step in steps:
        if not seen or seen[-1] != step.model:
            assert step.model not in seen, f"{step.model}'s steps are interleaved"
            seen.append(step.model)
    # a quarantined model gets nothing but the removal of a leftover candidate
    for name, spec in desired.models.items():
        current = observed.model(name)
        if current.failed_digest == spec.digest:
            mine = [s for s in steps if s.model == name]
            if current.candidate is None:
                assert not mine
            else:
                assert mine == [Revert(name, current.candidate.version)]


def test_swap_is_not_done_while_the_same_bytes_serve_under_another_version() -> None:
    """A re-release of the active version's bytes as a new version builds to the same key; the
    swap must still run (the executor skips steps that are done), or it is planned forever."""
    desired, observed, _ = load_case(CASES / "same-bytes-new-version-label-is-not-in-sync.yaml")
    swaps = [s for s in plan(desired, observed) if isinstance(s, Swap)]
    assert swaps and not swaps[0].done(observed)
