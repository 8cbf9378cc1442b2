"""The same closed-loop load over HTTP-JSON, HTTP-binary and gRPC, with batching off and on:
throughput, p50/p99 and the daemon's own CPU time per request, against bare ONNX Runtime's CPU
time per inference on the same input.

Run as `python bench/protocols.py [--duration 6] [--clients 1,16]`. One daemon per batching
setting (gRPC on, on a free port; batching on is `runtime.batching: {max_batch_size: 8,
max_queue_delay: 2ms}`, 8 being the example classifier's shapes.max), then every protocol and
client count against it. The server's CPU is read from the daemon process itself
(/proc/<pid>/stat utime + stime, every thread of it, before and after each run), so the load
generator on the same cores does not blur it; ratios are taken within one run, on one machine.
Writes `<out>/protocols-<stamp>.json` and `.png` and prints the table and the targets.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from example_kit import MODEL, REPO, Kit, build_kit
from reporting import TargetRows, latency_summary, log, machine_info, print_targets, ratio
from reporting import save_results as save
from request_bodies import make_payload
from servers import HOST, Server, daemon_defaults, daemon_on_v1, free_port

PROTOCOLS = ("http-json", "http-binary", "grpc")
BATCHING = {"max_batch_size": 8, "max_queue_delay": "2ms"}
CPU_TARGET = 1.3  # gRPC server CPU per request over bare ORT's, batch 1
BATCHING_TARGET = 1.5  # throughput with batching on over off, 16 clients
Send = Callable[[], None]


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of `pid` so far (Linux /proc)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Pages `pid` has faulted in so far: a buffer mapped afresh per request shows here."""
    return int(_stat(pid)[7])


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` now, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bare_ort(model: Path, x: np.ndarray, threads: int, seconds: float) -> dict[str, Any]:
    """CPU and wall time per inference of the model in this process, one caller, the daemon's
    ORT settings: what serving at all must cost."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(10):
        sess.run(None, {"input": x})
    n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {"input": x})
        n += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"inferences": n, "cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n}


def http_sender(url: str, body: bytes, headers: dict[str, str]) -> Send:
    client = httpx.Client(base_url=url, timeout=30.0, trust_env=False)

    def send() -> None:
        r = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

    return send


def grpc_sender(url: str, x: np.ndarray) -> Send:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = [grpcclient.InferRequestedOutput("logits")]

    def send() -> None:
        client.infer(MODEL, [inp], outputs=out)

    return send


def closed_loop(make: Callable[[], Send], clients: int, seconds: float, pid: int) -> dict[str, Any]:
    """`clients` threads, each sending its next request when the last is answered."""
    senders = [make() for _ in range(clients)]
    for send in senders:
        send()  # connect and warm before the clock starts
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = threading.Event()

    def worker(i: int) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                senders[i]()
            except Exception as e:  # a failed request is counted, the loop goes on
                errors.append(repr(e)[:200])
                continue
            lat[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    cpu0, faults0, t0 = cpu_seconds(pid), minor_faults(pid), time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    faults = minor_faults(pid) - faults0
    done = [v for rs in lat for v in rs]
    return {
        "requests": len(done),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "throughput_rps": round(len(done) / wall, 2),
        "latency": latency_summary(done),
        "server_cpu_ms_per_request": round(1000 * cpu / len(done), 3) if done else None,
        "server_rss_mib": rss_mib(pid),
        "server_minflt_per_request": round(faults / len(done), 1) if done else None,
    }


def senders(server: Server, grpc_url: str, x_seed: int) -> dict[str, Callable[[], Send]]:
    json_p, bin_p = make_payload(1, x_seed, "json"), make_payload(1, x_seed, "binary")
    return {
        "http-json": lambda: http_sender(server.url, json_p.body, json_p.headers),
        "http-binary": lambda: http_sender(server.url, bin_p.body, bin_p.headers),
        "grpc": lambda: grpc_sender(grpc_url, bin_p.x),
    }


def run_daemon(
    kit: Kit, tmp: Path, batching: bool, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One daemon, every protocol and client count against it."""
    doc = copy.deepcopy(kit.docs["1"])
    if batching:
        doc["spec"]["runtime"]["batching"] = dict(BATCHING)
    grpc_port = free_port()
    run_dir = tmp / ("batching-on" if batching else "batching-off")
    run_dir.mkdir()
    server, _, _ = daemon_on_v1(kit, run_dir, grpc_port=grpc_port, doc=doc)
    rows = []
    server.start()
    try:
        server.wait_serving(make_payload(1, args.seed, "binary"), "1")
        makers = senders(server, f"{HOST}:{grpc_port}", args.seed)
        for protocol in args.protocols:
            for clients in args.clients:
                log(f"batching {'on' if batching else 'off'}: {protocol}, {clients} clients")
                result = closed_loop(makers[protocol], clients, args.duration, server.pid)
                rows.append({"batching": batching, "protocol": protocol, "clients": clients,
                             **result})  # fmt: skip
    finally:
        server.stop()
    return rows


def listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def grpc_floor(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The null gRPC servicer (grpc_floor.py) under the gRPC load at 1 client."""
    port = free_port()
    floor = Server([sys.executable, str(Path(__file__).parent / "grpc_floor.py"), str(port)],
                   port, tmp / "grpc-floor.log", tmp)  # fmt: skip
    floor.start()
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            if time.monotonic() > deadline or not floor.alive():
                raise RuntimeError(f"the null gRPC server did not start:\n{floor.log_tail()}")
            time.sleep(0.1)
        x = make_payload(1, args.seed, "binary").x
        log("grpc floor: the null servicer, 1 client")
        return closed_loop(lambda: grpc_sender(f"{HOST}:{port}", x), 1, args.duration, floor.pid)
    finally:
        floor.stop()


def _row(rows: list[dict[str, Any]], batching: bool, protocol: str, clients: int) -> dict[str, Any]:
    return next(
        (r for r in rows if (r["batching"], r["protocol"], r["clients"]) == (batching, protocol, clients)),
        {},
    )  # fmt: skip


def targets(rows: list[dict[str, Any]], bare: dict[str, Any], most: int) -> TargetRows:
    out = TargetRows()
    grpc1 = _row(rows, False, "grpc", 1).get("server_cpu_ms_per_request")
    cpu_ratio = ratio(grpc1, bare["cpu_ms"])
    out.add(
        "gRPC daemon CPU/request over bare ORT CPU/inference (batch 1, 1 client)",
        cpu_ratio, CPU_TARGET, None if cpu_ratio is None else cpu_ratio <= CPU_TARGET,
        f"{grpc1} ms vs {bare['cpu_ms']:.3f} ms",
    )  # fmt: skip
    for protocol in PROTOCOLS:
        on = _row(rows, True, protocol, most).get("throughput_rps")
        off = _row(rows, False, protocol, most).get("throughput_rps")
        gain = ratio(on, off)
        judged = protocol == "grpc" and gain is not None
        out.add(
            f"{protocol}: throughput batching on / off ({most} clients)",
            gain, BATCHING_TARGET if protocol == "grpc" else None,
            (gain >= BATCHING_TARGET) if judged else None, f"{on} vs {off} req/s",
        )  # fmt: skip
    return out


def cpu_budget(result: dict[str, Any]) -> dict[str, float] | None:
    """gRPC at 1 client, batching off: the daemon's CPU per request split into bare ORT, the
    null servicer's floor (grpcio itself) and the rest (hotswap's request path, its threads)."""
    floor = (result.get("grpc_floor") or {}).get("server_cpu_ms_per_request")
    daemon = _row(result["runs"], False, "grpc", 1).get("server_cpu_ms_per_request")
    if floor is None or daemon is None:
        return None
    bare = result["bare_ort"]["cpu_ms"]
    return {"daemon_ms": daemon, "bare_ort_ms": round(bare, 3), "grpcio_floor_ms": floor,
            "hotswap_ms": round(daemon - bare - floor, 3),
            "floor_plus_ort_over_ort": round((bare + floor) / bare, 2)}  # fmt: skip


def print_budget(result: dict[str, Any]) -> None:
    budget = cpu_budget(result)
    if budget is not None:
        print(f"gRPC, 1 client: daemon {budget['daemon_ms']:.3f} ms CPU/request = bare ORT"
              f" {budget['bare_ort_ms']:.3f} + grpcio's own server (null servicer)"
              f" {budget['grpcio_floor_ms']:.3f} + hotswap {budget['hotswap_ms']:.3f};"
              f" any grpcio server: {budget['floor_plus_ort_over_ort']:.2f}x bare ORT at best")  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    bare = result["bare_ort"]
    print(f"\nbare ONNX Runtime: {bare['cpu_ms']:.3f} ms CPU, {bare['wall_ms']:.3f} ms wall"
          " per inference (batch 1, one caller);"
          f" {bare['batch8_cpu_ms_per_row']:.3f} ms CPU per row at batch 8")  # fmt: skip
    print_budget(result)
    head = f"{'batching':8} {'protocol':12} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'x ORT':>6} {'RSS MiB':>7} {'errors':>6}"  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in result["runs"]:
        cpu = r["server_cpu_ms_per_request"]
        x_ort = ratio(cpu, bare["cpu_ms"])
        print(f"{'on' if r['batching'] else 'off':8} {r['protocol']:12} {r['clients']:>7}"
              f" {r['throughput_rps']:>9.1f} {r['latency']['p50_ms'] or 0:>8.2f}"
              f" {r['latency']['p99_ms'] or 0:>8.2f} {cpu or 0:>10.3f} {x_ort or 0:>6.2f}"
              f" {r.get('server_rss_mib', 0):>7.1f} {r['errors']:>6}")  # fmt: skip
    print_targets(result["targets"], "target", 74)
    print(f"uvicorn levers: {result['http_levers']}")


def draw(result: dict[str, Any], png: Path) -> None:
    from plotting import new_figure, save_figure

    fig, (top, bottom) = new_figure(2, (10, 7), [1, 1])
    runs = result["runs"]
    labels = [f"{r['protocol']}\n{r['clients']}c {'B' if r['batching'] else ''}" for r in runs]
    colors = ["tab:green" if r["batching"] else "tab:blue" for r in runs]
    top.bar(range(len(runs)), [r["throughput_rps"] for r in runs], color=colors)
    top.set_ylabel("requests / s")
    top.set_title("throughput (green: batching on, max 8, 2 ms)")
    cpu = [r["server_cpu_ms_per_request"] or 0 for r in runs]
    bottom.bar(range(len(runs)), cpu, color=colors)
    bottom.axhline(result["bare_ort"]["cpu_ms"], color="k", ls="--", label="bare ORT / inference")
    bottom.axhline(result["bare_ort"]["cpu_ms"] * CPU_TARGET, color="r", ls=":", label="1.3x")
    bottom.set_ylabel("daemon CPU ms / request")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.set_xticks(range(len(runs)), labels, fontsize=7)
    save_figure(fig, png)


def http_levers() -> dict[str, str]:
    """httptools and uvloop are only measured where the venv has them (none is installed)."""
    return {
        name: "installed, not measured by this script" if importlib.util.find_spec(name)
        else "not installed: not measured (uvicorn runs h11 on asyncio)"
        for name in ("httptools", "uvloop")
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    p.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16])
    p.add_argument("--protocols", type=lambda s: s.split(","), default=list(PROTOCOLS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="hotswap-protocols-") as tmp_name:
        tmp = Path(tmp_name)
        log(f"building the example models in {tmp}")
        kit = build_kit(tmp)
        threads = daemon_defaults()["intra_op_threads"]
        bare = bare_ort(kit.models["1"], make_payload(1, args.seed, "binary").x, threads, 5.0)
        # what stacking can save in compute at all: ORT's CPU per row at the largest batch
        x8 = make_payload(BATCHING["max_batch_size"], args.seed, "binary").x
        bare["batch8_cpu_ms_per_row"] = bare_ort(kit.models["1"], x8, threads, 5.0)["cpu_ms"] / 8
        runs = run_daemon(kit, tmp, False, args) + run_daemon(kit, tmp, True, args)
        floor = grpc_floor(args, tmp) if "grpc" in args.protocols else None
    result: dict[str, Any] = {
        "scenario": "protocols",
        "stamp": stamp,
        "machine": machine_info(),
        "settings": {**daemon_defaults(), "duration_s": args.duration, "batching": BATCHING},
        "bare_ort": bare,
        "grpc_floor": floor,
        "runs": runs,
        "targets": targets(runs, bare, max(args.clients)),
        "grpc_cpu_budget": None,
        "http_levers": http_levers(),
    }
    result["grpc_cpu_budget"] = cpu_budget(result)
    save(result, args.out, f"protocols-{stamp}", lambda png: draw(result, png), print_table)


if __name__ == "__main__":
    main()
