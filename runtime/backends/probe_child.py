"""The probe's child: load one ONNX Runtime artifact and run its first inferences, under limits.

Started by `runtime.backends.probe` as `python -m runtime.backends.probe_child WORKDIR`, in a
process of its own, so that whatever the model does at its first run (a Loop that never ends,
an allocation of tens of GB, a crash in native code) happens to this process, not the daemon.
WORKDIR holds `request.json` (artifact, threads, runs, memory_bytes) and `feeds.npz`; the child
writes `result.json` there.

The address-space limit is set after numpy and ONNX Runtime are imported, on top of what the
interpreter already maps: `memory_bytes` is then what the model itself may take (weights, arena,
activations), whatever the interpreter and the libraries cost on this machine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import BackendError
from runtime.backends.onnxruntime import OnnxRuntimeBackend

# Messages ONNX Runtime and the C++ runtime give when an allocation is refused.
_OUT_OF_MEMORY = ("failed to allocate", "bad_alloc", "out of memory", "cannot allocate")


def _mapped_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _limit_memory(memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    limit = _mapped_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _kind_of(error: BaseException) -> str:
    text = str(error).lower()
    if isinstance(error, MemoryError) or any(m in text for m in _OUT_OF_MEMORY):
        return "memory"
    return "infer"


def _die_with_the_daemon(parent: int, deadline_s: float) -> None:
    """The daemon kills this process at its deadline; should the daemon itself be killed first
    (kill -9, a power cut of its own making), this thread ends the orphan. ONNX Runtime releases
    the GIL while it runs, so the thread runs even while the model spins."""

    def watch() -> None:
        end = time.monotonic() + deadline_s
        while os.getppid() == parent and time.monotonic() < end:
            time.sleep(0.25)
        os._exit(3)

    threading.Thread(target=watch, name="probe-watch", daemon=True).start()


def probe(request: dict[str, Any], feeds_path: Path) -> dict[str, Any]:
    _limit_memory(int(request["memory_bytes"]))
    started = time.perf_counter()
    try:
        session = OnnxRuntimeBackend().load(Path(request["artifact"]), threads=request["threads"])
    except BackendError as e:
        return {
            "ok": False,
            "kind": "memory" if _kind_of(e) == "memory" else "load",
            "error": str(e),
        }
    loaded = time.perf_counter()
    timings = []
    try:
        with np.load(feeds_path, allow_pickle=False) as data:
            feeds = {k: data[k] for k in data.files}
        for _ in range(int(request["runs"])):
            run_started = time.perf_counter()
            session.infer(feeds)
            timings.append((time.perf_counter() - run_started) * 1000)
    except (BackendError, MemoryError) as e:
        return {"ok": False, "kind": _kind_of(e), "error": str(e)}
    return {
        "ok": True,
        "load_ms": round((loaded - started) * 1000, 3),
        "run_ms": [round(t, 3) for t in timings],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(workdir: str) -> int:
    work = Path(workdir)
    request = json.loads((work / "request.json").read_text())
    _die_with_the_daemon(int(request["parent"]), float(request["deadline_s"]))
    result = probe(request, work / "feeds.npz")
    (work / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
