"""hotswap as a user installs it: the wheel, in a virtualenv of its own, run from elsewhere.

The short form installs the wheel (`--no-deps`) into a fresh virtualenv that borrows the
dependencies of the one running the tests (a `.pth` line to its site-packages, whose own `.pth`
files, the editable checkout among them, are not run), so no byte of the checkout is importable.
The full form (`HOTSWAP_SLOW=1`) installs the wheel with all its dependencies from the package
index into an isolated virtualenv, as `pipx install` does; it takes a minute or more.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, trust
from tests.support.kit import Kit

REPO = Path(__file__).resolve().parents[2]
SLOW = os.environ.get("HOTSWAP_SLOW") == "1"

pytestmark = pytest.mark.daemon


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done


def build_wheel(out: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)]
    if importlib.util.find_spec("hatchling") is not None:  # offline: build with what is here
        cmd.insert(4, "--no-build-isolation")
    done = _run(cmd, out)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("hotswap-*.whl")
    return wheel


def venv_with(wheel: Path, root: Path, isolated: bool) -> Path:
    """A virtualenv at `root` with the wheel installed; its bin directory."""
    if isolated:
        assert _run([sys.executable, "-m", "venv", str(root)], root.parent).returncode == 0
        done = _run(
            [str(root / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
            root.parent,
            900,
        )
    else:
        made = _run([sys.executable, "-m", "venv", "--without-pip", str(root)], root.parent)
        assert made.returncode == 0, made.stderr
        site = Path(
            _run(
                [
                    str(root / "bin" / "python"),
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
                root,
            ).stdout.strip()
        )
        shared = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        (site / "_shared_dependencies.pth").write_text("".join(f"{p}\n" for p in shared))
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(root / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ]
        done = _run(cmd, root.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "bin"


@pytest.mark.parametrize(
    "isolated",
    [False, pytest.param(True, marks=[pytest.mark.slow, pytest.mark.skipif(not SLOW, reason="HOTSWAP_SLOW=1")])],
    ids=["shared-deps", "isolated"],
)  # fmt: skip
def test_the_installed_wheel_validates_and_serves_and_swaps(
    tmp_path: Path, kit: Kit, isolated: bool
) -> None:
    wheel = build_wheel(tmp_path)
    bin_dir = venv_with(wheel, tmp_path / "venv", isolated)
    elsewhere = tmp_path / "elsewhere"  # no checkout on the path, none in the working directory
    elsewhere.mkdir()
    hotswap = str(bin_dir / "hotswap")

    where = _run(
        [str(bin_dir / "python"), "-c", "import reconciler; print(reconciler.__file__)"], elsewhere
    )
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr
    helped = _run([hotswap, "--help"], elsewhere)
    assert helped.returncode == 0 and "validate" in helped.stdout

    examples = kit.registry.parent / "examples"  # classifier.v1 ... v6 as make_models writes them
    checked = _run(
        [hotswap, "validate", str(examples), "--trust-dir", str(kit.public_key.parent), "--json"],
        elsewhere,
    )
    report = json.loads(checked.stdout)
    assert checked.returncode == 1, checked.stderr  # v4 breaks its interface on purpose
    assert [Path(p["file"]).name for p in report["problems"]] == ["classifier.v4-broken.yaml"]

    d = Daemon(tmp_path / "desired", tmp_path / "state", tmp_path / "daemon.log", hotswap=[hotswap])
    d.desired.mkdir()
    trust(d.state, kit)
    kit.write(d.desired, "1")
    d.start()
    try:
        d.wait_version("1", timeout=60)
        kit.write(d.desired, "2")
        d.wait_version("2", timeout=60)
        assert d.status()["daemon"]["running"]
    finally:
        d.stop()
