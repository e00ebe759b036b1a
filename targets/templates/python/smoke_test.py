"""Smoke test of this package: run it the way it will run, on a generated picture.

    python smoke_test.py                 # the runner, then the server when its requirements are here
    python smoke_test.py --backend onnxruntime --no-server

1. The runner (``python -m app.predict``) on a generated image: it must write a well-formed
   predictions.json and an annotated image.
2. The HTTP server on a free local port: liveness, readiness, an upload to ``/predict`` that must
   agree with the runner, a KServe v2 metadata + infer call, and refusals (corrupt image -> 4xx,
   wrong content type -> 415, an over-limit body -> 413), then it is stopped.

Exit code 0 when everything passed; the first failure is printed and the code is 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent


class Failed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def sample_image(path: Path) -> Path:
    from PIL import Image

    w, h = 96, 64
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 255) // w, (y * 255) // h, ((x + y) * 97) % 256) for y in range(h) for x in range(w)])
    img.save(path)
    return path


def check_result(result: dict, where: str) -> None:
    task = result.get("task")
    if task == "classification":
        check(isinstance(result.get("top_k"), list) and result["top_k"], f"{where}: no top_k list")
        total = sum(result["probabilities"])
        check(abs(total - 1.0) < 1e-3, f"{where}: probabilities sum to {total}, not 1")
        check(all(math.isfinite(t["score"]) for t in result["top_k"]), f"{where}: a score is not finite")
    elif task in ("detection", "segmentation"):
        check(isinstance(result.get("detections"), list), f"{where}: no detections list")
        for d in result["detections"]:
            check(len(d["box"]) == 4 and d["box"][0] <= d["box"][2] and d["box"][1] <= d["box"][3],
                  f"{where}: malformed box {d['box']}")
    else:
        raise Failed(f"{where}: unknown task {task!r}")


def run_runner(image: Path, out: Path, backend: str | None) -> dict:
    cmd = [sys.executable, "-m", "app.predict", str(image), "--out", str(out)]
    if backend:
        cmd += ["--backend", backend]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    check(proc.returncode == 0, f"runner failed ({proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads((out / "predictions.json").read_text())
    check(data["summary"]["failed"] == 0 and len(data["predictions"]) == 1, f"runner summary {data['summary']}")
    record = data["predictions"][0]
    check_result(record, "runner")
    check((out / record["annotated"]).is_file(), "runner wrote no annotated image")
    print(f"runner ok: {data['summary']}")
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def multipart(field: str, filename: str, payload: bytes, ctype: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
               f"Content-Type: {ctype}\r\n\r\n".encode())
    body.write(payload)
    body.write(f"\r\n--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def run_server(image: Path, runner_record: dict, backend: str | None, limit: int = 1 << 20) -> None:
    port = free_port()
    env = dict(os.environ, TANGO_MAX_BODY_BYTES=str(limit))
    if backend:
        env["TANGO_BACKEND"] = backend
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.server:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            check(proc.poll() is None, f"the server exited with code {proc.returncode}")
            try:
                code, _ = request(base + "/health/ready")
                if code == 200:
                    break
            except OSError:
                pass
            check(time.time() < deadline, "the server was not ready within 120 s")
            time.sleep(0.2)
        check(request(base + "/health/live")[0] == 200, "/health/live is not 200")

        payload = image.read_bytes()
        body, ctype = multipart("file", image.name, payload, "image/png")
        code, raw = request(base + "/predict", body, {"Content-Type": ctype})
        check(code == 200, f"/predict answered {code}: {raw[:300]!r}")
        result = json.loads(raw)
        check_result(result, "/predict")
        if result["task"] == "classification":
            check(result["class_id"] == runner_record["class_id"], "/predict and the runner disagree on the class")
            diff = max(abs(a - b) for a, b in zip(result["probabilities"], runner_record["probabilities"]))
            check(diff < 1e-4, f"/predict and the runner differ by {diff}")
        else:
            check(len(result["detections"]) == len(runner_record["detections"]),
                  "/predict and the runner found different numbers of boxes")

        meta = json.loads(request(base + "/health/ready")[1])
        name = meta["model"]
        code, raw = request(f"{base}/v2/models/{name}")
        check(code == 200, f"/v2/models/{name} answered {code}")
        model = json.loads(raw)
        inp = model["inputs"][0]
        numel = 1
        for d in inp["shape"]:
            numel *= d
        infer = {"id": "smoke", "inputs": [{"name": inp["name"], "shape": inp["shape"], "datatype": "FP32",
                                            "data": [0.0] * numel}]}
        code, raw = request(f"{base}/v2/models/{name}/infer", json.dumps(infer).encode(),
                            {"Content-Type": "application/json"})
        check(code == 200, f"v2 infer answered {code}: {raw[:300]!r}")
        reply = json.loads(raw)
        check(reply["id"] == "smoke" and reply["outputs"], "v2 infer reply without outputs or id")
        out0 = reply["outputs"][0]
        size = 1
        for d in out0["shape"]:
            size *= d
        check(len(out0["data"]) == size, "v2 output data does not match its shape")

        body, ctype = multipart("file", "broken.png", b"\x89PNG\r\n\x1a\n not really a png", "image/png")
        code, raw = request(base + "/predict", body, {"Content-Type": ctype})
        check(400 <= code < 500 and b"error" in raw, f"a corrupt image got {code}, not a 4xx with a message")
        code, _ = request(base + "/predict", b"hello", {"Content-Type": "text/plain"})
        check(code == 415, f"a text body got {code}, not 415")
        code, _ = request(base + "/predict", b"\0" * (limit + 1), {"Content-Type": "image/png"})
        check(code == 413, f"an over-limit body got {code}, not 413")
        code, _ = request(f"{base}/v2/models/{name}/infer", b"{not json", {"Content-Type": "application/json"})
        check(code == 400, f"malformed v2 JSON got {code}, not 400")
        check(b"tango_requests_total" in request(base + "/metrics")[1], "/metrics has no request counter")
        print("server ok: health, /predict, v2 metadata + infer, 413 / 415 / 4xx refusals, metrics")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=None, help="another backend of the package (e.g. the host check)")
    parser.add_argument("--no-server", action="store_true", help="check the runner only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = sample_image(Path(tmp) / "sample.png")
        try:
            record = run_runner(image, Path(tmp) / "out", args.backend)
            has_server = all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "multipart"))
            if args.no_server or not has_server:
                print("server skipped" + ("" if args.no_server else ": pip install -r requirements-server.txt"))
            else:
                run_server(image, record, args.backend)
        except Failed as exc:
            print(f"smoke test FAILED: {exc}", file=sys.stderr)
            return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
