"""The generated HTTP server against in-process calls of the same package, batch 1.

    OMP_NUM_THREADS=1 .venv/bin/python bench/server_bench.py [--model resnet18 --imgsz 224] [--seconds 10]

Builds a real package (ONNX Runtime, x86-cpu) from a randomly initialised registered model, then
measures, with the runtime on one thread in both cases:

* baseline: ``Predictor.predict(jpeg bytes)`` called in a loop in this process (decode,
  pre-process, the runtime, post-process): what the server does per request minus HTTP;
* the server (uvicorn, one worker, started as a subprocess) under a bounded local load: N client
  threads each sending ``POST /predict`` with the same JPEG back to back on a keep-alive
  connection (N = 1: no queueing; N = 4: four requests in flight).

Prints a markdown table (requests per second, p50 / p99 latency, ratio to the baseline) for
docs/benchmarks.md.  The clients run on the same machine and take CPU from the server: on a
2-core machine the ratio is a floor.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def build_package(model_name: str, imgsz: int, folder: Path) -> Path:
    import torch

    from tango_core.deploy import deploy
    from tango_core.export import export
    from tango_core.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).eval()
    result = export(model, "onnx", out=folder / "export", imgsz=imgsz, class_names=[f"c{i}" for i in range(10)])
    return deploy(result, target="x86-cpu", out=folder / "package", measure=False).path


def picture(size: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def load_predictor(package: Path):
    sys.path.insert(0, str(package))
    os.environ["TANGO_PACKAGE_DIR"] = str(package)
    from app.predictor import Predictor

    predictor = Predictor(threads=1)
    predictor.warmup(5)
    x = np.zeros(predictor.input_shape, np.float32)
    raw = []
    for _ in range(30):
        t = time.perf_counter()
        predictor.infer(x)
        raw.append(time.perf_counter() - t)
    return predictor, float(np.median(raw))


def in_process(predictor, image: bytes, seconds: float) -> tuple[list[float], float]:
    latencies = []
    began = time.perf_counter()
    end = began + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        predictor.predict(image)
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port: int, image: bytes, clients: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop = [0.0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
        # server's delayed ACK add tens of milliseconds that are the client's, not the server's
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine = []
        start_gate.wait()
        while time.perf_counter() < stop[0]:
            t = time.perf_counter()
            conn.request("POST", "/predict", body=image, headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{resp.status}: {body[:200]!r}")
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    began = time.perf_counter()
    stop[0] = began + seconds
    start_gate.wait()
    for th in threads:
        th.join()
    return latencies, time.perf_counter() - began


def start_server(package: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, TANGO_THREADS="1", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.server:app", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning", "--no-access-log"], cwd=package, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/ready")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet-cifar20")
    ap.add_argument("--imgsz", type=int, default=32)
    ap.add_argument("--picture", type=int, default=0, help="side of the JPEG sent (default: 2 x imgsz)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=5, help="baseline and server runs alternate, so load from "
                                                          "other processes hits both alike")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = build_package(args.model, args.imgsz, Path(tmp))
        image = picture(args.picture or 2 * args.imgsz)
        predictor, runtime_s = load_predictor(package)
        slot = args.seconds / args.rounds
        pooled = {"base": ([], 0.0), **{c: ([], 0.0) for c in args.clients}}
        proc, port = start_server(package)
        try:
            load(port, image, 1, 2.0)  # warm the server's thread pool and connections
            for _ in range(args.rounds):
                for key in pooled:
                    lat, elapsed = in_process(predictor, image, slot) if key == "base" else \
                        load(port, image, key, slot)
                    pooled[key] = (pooled[key][0] + lat, pooled[key][1] + elapsed)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        base_rps = len(pooled["base"][0]) / pooled["base"][1]
        rows = [("in-process `Predictor.predict` (baseline)", 1, base_rps, pooled["base"][0])]
        for clients in args.clients:
            lat, elapsed = pooled[clients]
            rows.append((f"server `POST /predict`, {clients} client{'s' if clients > 1 else ''}", clients,
                         len(lat) / elapsed, lat))
    print(f"model {args.model} at {args.imgsz}x{args.imgsz}, ONNX Runtime 1 thread, JPEG "
          f"{args.picture or 2 * args.imgsz}px ({len(image)} bytes); runtime call alone {runtime_s * 1000:.2f} ms\n")
    print("| load | requests/s | p50 ms | p99 ms | ratio to baseline |")
    print("|---|---|---|---|---|")
    for name, _, rps, lat in rows:
        print(f"| {name} | {rps:.1f} | {percentile(lat, 50):.2f} | {percentile(lat, 99):.2f} | {rps / base_rps:.2f}x |")
    print(json.dumps({"baseline_rps": base_rps, "rows": [(n, c, r) for n, c, r, _ in rows]}))


if __name__ == "__main__":
    main()
