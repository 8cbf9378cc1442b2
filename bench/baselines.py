"""The two baselines a hotswap is compared with, run after the daemon has stopped: (a) bare ONNX
Runtime in-process, what serving at all costs; (b) bench/plain_server.py, a plain single-model
V2 server updated the classic way (copy the new model file over the old one, restart).

Called by swap_under_load (run_baselines, unless --no-baselines). Both use the same model, the
same request and the same load shape as the hotswap run, and the daemon's own ORT settings
(servers.daemon_defaults), so the ratios compare serving and updating only; (b) is driven by
swap_windows.run_with_swaps exactly like the daemon's swaps, and analysed by the same code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from example_kit import MODEL, REPO, Kit
from load_generator import MAX_REQUESTS_PER_WORKER_PER_S, Load
from reporting import latency_summary, log, ms, ratio
from request_bodies import HEADER_LENGTH, Payload
from servers import Server, free_port
from swap_windows import WARM_FRACTION, analyze, run_with_swaps

BARE_MAX_S = 15.0
PLAIN_MAX_S = 30.0
PLAIN_MAX_UPDATES = 5


def run_baselines(
    kit: Kit,
    payload: Payload,
    args: argparse.Namespace,
    tmp: Path,
    settings: dict[str, int],
    hot: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Both baselines, shorter than the hotswap run (BARE_MAX_S, PLAIN_MAX_S, at most
    PLAIN_MAX_UPDATES restarts); returns `baselines`, the plain server's series for the plot
    and the `ratios` of the hotswap result `hot` to them."""
    bare_s = min(args.duration, BARE_MAX_S)
    log(f"baseline (a): bare ONNX Runtime in-process for {bare_s:.0f}s")
    bare = run_bare_ort(
        kit.models["1"], payload, args.concurrency, bare_s, settings["intra_op_threads"]
    )
    updates = min(args.swaps, PLAIN_MAX_UPDATES)
    plain_s = max(min(args.duration, PLAIN_MAX_S), 5.0 * updates / (1 - WARM_FRACTION))
    log("baseline (b): plain server, updates by file copy + restart")
    plain, plain_series = run_plain_restart(
        kit, payload, args.concurrency, plain_s, updates, tmp, settings
    )
    ratios = {
        "hotswap_over_bare_ort_p50": ratio(
            hot["latency"]["steady"]["p50_ms"], bare["latency"]["p50_ms"]
        ),
        "hotswap_over_bare_ort_p99": ratio(
            hot["latency"]["steady"]["p99_ms"], bare["latency"]["p99_ms"]
        ),
        "hotswap_over_plain_server_steady_p50": ratio(
            hot["latency"]["steady"]["p50_ms"], plain["latency"]["steady"]["p50_ms"]
        ),
        "hotswap_over_plain_write_to_serving_median": ratio(
            hot["write_to_serving_ms"]["median"], plain["write_to_serving_ms"]["median"]
        ),
        "failed_requests_hotswap_vs_plain": [hot["failed"], plain["failed"]],
    }
    return {"bare_ort": bare, "plain_restart": plain}, plain_series, ratios


def run_bare_ort(
    model: Path, payload: Payload, concurrency: int, duration: float, threads: int
) -> dict[str, Any]:
    """Baseline (a): the same model in-process, the daemon's ORT settings, the same load shape
    (`concurrency` threads in a closed loop), no HTTP and no protocol."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    # The daemon optimises offline (ORT_ENABLE_EXTENDED) and loads the result with optimisation
    # off; optimising at load time gives the same graph.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    x = payload.x
    for _ in range(5):
        sess.run(out_names, {"input": x})
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    stop_at = time.monotonic() + duration
    cap = int(MAX_REQUESTS_PER_WORKER_PER_S * (duration + 5))

    def worker(i: int) -> None:
        mine = lat[i]
        while len(mine) < cap:
            t = time.monotonic()
            if t >= stop_at:
                break
            sess.run(out_names, {"input": x})
            mine.append(time.monotonic() - t)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=duration + 60)
    elapsed = time.monotonic() - t0
    all_lat = [v for rs in lat for v in rs]
    steady = [v for rs in lat for v in rs[1:]]  # drop each thread's first run
    return {
        "duration_s": round(elapsed, 3),
        "requests": len(all_lat),
        "throughput_rps": round(len(all_lat) / elapsed, 2) if elapsed > 0 else None,
        "latency": latency_summary(steady),
        "protocol_codec_ms": codec_cost(payload, sess),
        "settings": {
            "graph_optimization_level": "ORT_ENABLE_EXTENDED",
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
        },
    }


def codec_cost(payload: Payload, sess: Any) -> dict[str, Any]:
    """What the V2 protocol alone costs per request, one thread, no load: parse the body and
    decode it into tensors with the daemon's codec (runtime.serving.v2), encode and render a response.
    Explains most of any gap between a server and bare ONNX Runtime."""
    out: dict[str, Any] = {"protocol": payload.protocol, "body_bytes": len(payload.body)}
    try:
        from runtime.backends.onnxruntime import OnnxRuntimeSession
        from runtime.serving.v2 import decode_request, encode_response, split_body

        wrapped = OnnxRuntimeSession(sess)
        results = None
        samples = []
        for _ in range(10):
            t = time.monotonic()
            head, binary = split_body(payload.body, payload.headers.get(HEADER_LENGTH))
            req = decode_request(json.loads(head), wrapped.inputs, wrapped.outputs, binary)
            if results is None:
                results = wrapped.infer(req.feeds)
            encoded = encode_response(MODEL, "1", req, results)
            json.dumps(encoded.header, separators=(",", ":"), allow_nan=True).encode()
            samples.append(time.monotonic() - t)
        out.update(latency_summary(samples[1:]))
    except Exception as e:  # the product's codec API moved: report, do not fail the run
        out["error"] = repr(e)
    return out


def run_plain_restart(
    kit: Kit,
    payload: Payload,
    concurrency: int,
    duration: float,
    updates: int,
    tmp: Path,
    settings: dict[str, int],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Baseline (b): plain server, update = copy the new file over the old one + restart."""
    work = tmp / "plain"
    work.mkdir()
    live = work / "model.onnx"
    shutil.copyfile(kit.models["1"], live)
    port = free_port()
    server = Server(
        [sys.executable, str(REPO / "bench" / "plain_server.py"), str(live), "--port", str(port),
         "--threads", str(settings["intra_op_threads"]), "--workers", str(settings["workers"])],
        port, work / "plain.log", work,
    )  # fmt: skip
    downtimes: list[dict[str, float]] = []
    try:
        server.start()
        server.wait_serving(payload, "1")
        log(f"plain server serving v1 on {server.url}; {updates} restarts in {duration:.0f}s")
        load = Load(server.url, payload, concurrency, duration)

        def update(i: int, target: str) -> tuple[float, float]:
            log(f"plain update {i + 1}/{updates}: cp v{target} over the model, restart")
            t_mono, t_wall = time.monotonic(), time.time()
            shutil.copyfile(kit.models[target], live)  # over the old file, like `cp`
            t_stop = time.monotonic()
            server.stop()  # SIGTERM, graceful shutdown, then start again: systemctl restart
            t_start = time.monotonic()
            server.start()
            downtimes.append({"copy_s": t_stop - t_mono, "stop_s": t_start - t_stop})
            return t_mono, t_wall

        swaps = run_with_swaps(load, duration, updates, update)
    finally:
        server.stop()
    records = load.all_records()
    result = analyze(records, swaps)
    for entry, d in zip(result["swaps"], downtimes, strict=False):
        entry["copy_ms"] = ms(d["copy_s"])
        entry["graceful_stop_ms"] = ms(d["stop_s"])
    return result, {"records": records, "swaps": swaps}
