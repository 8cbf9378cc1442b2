"""GPU smoke check for the TensorRT backend's CUDA plumbing, run on a machine with an NVIDIA GPU.

    python bench/gpu_smoke.py [--out DIR]

Checks what can be checked without TensorRT installed (device facts for the engine cache key,
device memory and streams through cuda-python) and, when `tensorrt` imports, builds and runs a
small engine from ONNX through the real backend. Prints each check and writes gpu_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.backends.tensorrt import (
    CudaMemory,
    compat_key,
    cuda_device_info,
    engine_fingerprint,
)


def check_device() -> dict[str, Any]:
    info = cuda_device_info()
    return {
        "device": info.__dict__,
        "compat_key": compat_key("n/a", info),
        "fingerprint": engine_fingerprint("n/a", info),
    }


def check_memory(nbytes: int = 8 << 20, rounds: int = 50) -> dict[str, Any]:
    mem = CudaMemory()
    stream = mem.create_stream()
    ptr = mem.alloc(nbytes)
    host = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    back = np.empty_like(host)
    start = time.perf_counter()
    for _ in range(rounds):
        mem.copy_htod(ptr, host, stream)
        mem.copy_dtoh(back, ptr, stream)
    mem.synchronize(stream)
    elapsed = time.perf_counter() - start
    equal = bool(np.array_equal(host, back))
    mem.free(ptr)
    mem.destroy_stream(stream)
    return {
        "round_trip_equal": equal,
        "bytes": nbytes,
        "rounds": rounds,
        "pageable_GBps_both_ways": round(2 * rounds * nbytes / elapsed / 1e9, 2),
        "stream_handle_is_int": isinstance(mem.stream_handle(stream), int),
    }


def check_tensorrt(tmp: Path) -> dict[str, Any]:
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return {"available": False, "why": str(e)}
    import onnx
    from onnx import TensorProto, helper

    from runtime.backends.base import BuildOptions
    from runtime.backends.tensorrt import TensorRTBackend

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "two"], ["output"])], "g", [x], [y], [two]
    )
    model = tmp / "double.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    backend = TensorRTBackend()
    engine = tmp / "double.engine"
    backend.build(model, engine, BuildOptions("fp32", {"input": ((1, 4), (2, 4), (8, 4))}))
    session = backend.load(engine)
    feed = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = session.infer({"input": feed})["output"]
    session.release()
    return {
        "available": True,
        "version": backend.version,
        "output_ok": bool(np.allclose(out, feed * 2)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for name, check in (
        ("device", check_device),
        ("memory", check_memory),
        ("tensorrt", lambda: check_tensorrt(args.out)),
    ):
        try:
            report[name] = check()
        except Exception as e:
            report[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        print(f"{name}: {json.dumps(report[name], default=str)}")
    (args.out / "gpu_smoke.json").write_text(json.dumps(report, indent=2, default=str))
    ok = "error" not in report["device"] and report["memory"].get("round_trip_equal") is True
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
