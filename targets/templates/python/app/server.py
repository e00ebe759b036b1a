"""HTTP server: health, Prometheus metrics, ``/predict`` for image uploads, and the KServe Open
Inference Protocol v2 REST endpoints, so existing v2 clients (KServe, Triton, Seldon) work unchanged.

    python -m app.server --port 8080              # or: uvicorn app.server:app --port 8080

Bad input is answered with a 4xx and a message, never a 500: a body over ``TANGO_MAX_BODY_BYTES``
(default 10 MB) gets 413, a wrong content type 415, an undecodable image 422, a malformed v2
request 400.  The model loads in the background, so ``/health/live`` answers at once and
``/health/ready`` turns 200 when the model has loaded (503 before, or if loading failed).
"""

# no "from __future__ import annotations": FastAPI reads the annotations at run time, on Python >= 3.8
import argparse
import contextlib
import json
import os
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool as _run_in_threadpool
from starlette.exceptions import HTTPException

from . import processing
from .predictor import Predictor, read_package

MAX_BODY_BYTES = int(os.environ.get("TANGO_MAX_BODY_BYTES", 10 * 1024 * 1024))
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
V2_DATATYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "UINT8": np.uint8, "INT8": np.int8,
                "INT16": np.int16, "INT32": np.int32, "INT64": np.int64}
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino_ir", "litert": "tensorflow_lite",
             "edgetpu": "tensorflow_lite_edgetpu", "tvm": "tvm_relax", "torchscript": "pytorch_torchscript",
             "tensorrt": "tensorrt_plan", "rknn": "rknn"}


class Metrics:
    """Counters and histograms in the Prometheus text format, without a client library."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Dict[Tuple[str, str, int], int] = {}
        self.latency: Dict[str, List[float]] = {}  # path -> bucket counts + [sum, count]
        self.inference = [0.0] * (len(BUCKETS) + 2)

    def _observe(self, hist: List[float], seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                hist[i] += 1
        hist[-2] += seconds
        hist[-1] += 1

    def request(self, method: str, path: str, code: int, seconds: float) -> None:
        with self._lock:
            key = (method, path, code)
            self.requests[key] = self.requests.get(key, 0) + 1
            self._observe(self.latency.setdefault(path, [0.0] * (len(BUCKETS) + 2)), seconds)

    def infer(self, seconds: float) -> None:
        with self._lock:
            self._observe(self.inference, seconds)

    def _histogram(self, name: str, hist: List[float], labels: str = "") -> List[str]:
        sep = "," if labels else ""
        lines = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {int(hist[i])}' for i, b in enumerate(BUCKETS)]
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {int(hist[-1])}')
        lines.append(f"{name}_sum{{{labels}}} {hist[-2]:.6f}" if labels else f"{name}_sum {hist[-2]:.6f}")
        lines.append(f"{name}_count{{{labels}}} {int(hist[-1])}" if labels else f"{name}_count {int(hist[-1])}")
        return lines

    def render(self, ready: bool) -> str:
        with self._lock:
            lines = ["# HELP tango_model_ready 1 when the model is loaded and serving.",
                     "# TYPE tango_model_ready gauge", f"tango_model_ready {int(ready)}",
                     "# HELP tango_requests_total HTTP requests by method, route and status code.",
                     "# TYPE tango_requests_total counter"]
            for (method, path, code), n in sorted(self.requests.items()):
                lines.append(f'tango_requests_total{{method="{method}",path="{path}",code="{code}"}} {n}')
            lines += ["# HELP tango_request_duration_seconds Time to answer a request, by route.",
                      "# TYPE tango_request_duration_seconds histogram"]
            for path, hist in sorted(self.latency.items()):
                lines += self._histogram("tango_request_duration_seconds", hist, f'path="{path}"')
            lines += ["# HELP tango_inference_duration_seconds Time in the runtime per model call.",
                      "# TYPE tango_inference_duration_seconds histogram"]
            lines += self._histogram("tango_inference_duration_seconds", self.inference)
        return "\n".join(lines) + "\n"


class Guard:
    """ASGI middleware: the body size limit (header and streamed bytes), metrics per route, and a
    JSON 500 for anything unexpected (so a client always gets a message)."""

    def __init__(self, app, metrics: Metrics, limit: int) -> None:
        self.app, self.metrics, self.limit = app, metrics, limit
        self.drain = max(8 * limit, 64 * 1024 * 1024)  # refused bodies up to this size are read, then dropped

    async def _reply(self, send, code: int, message: str, close: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _drain(self, receive, budget: int) -> bool:
        """Read and drop the rest of a refused body, so the client can read the 413 instead of
        failing to send; False when it is larger than ``budget`` (then the connection is closed)."""
        while budget >= 0:
            message = await receive()
            if message["type"] != "http.request":
                return False
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return budget >= 0
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            if length is not None and int(length) > self.limit:
                status["code"] = 413
                drained = int(length) <= self.drain and await self._drain(receive, self.drain)
                await self._reply(send, 413, f"request body of {int(length)} bytes is over the limit of "
                                             f"{self.limit} bytes (TANGO_MAX_BODY_BYTES)", close=not drained)
                return
        except ValueError:
            status["code"] = 400
            await self._reply(send, 400, "the Content-Length header is not a number")
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if message.get("more_body", False):
                        await self._drain(receive, self.drain)
                    # raised inside the app, so its exception handler answers (413, JSON), not a 500
                    raise HTTPException(413, f"request body is over the limit of {self.limit} bytes "
                                             "(TANGO_MAX_BODY_BYTES)")
            return message

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception as exc:  # noqa: BLE001  the last line of defence: log it, answer JSON
            if not status["sent"]:
                status["code"] = 500
                await self._reply(send, 500, f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.request(scope.get("method", ""), path, status["code"], time.perf_counter() - started)


class Model:
    """The predictor, loaded in a background thread; ``error`` says why when loading failed."""

    def __init__(self) -> None:
        self.predictor: Optional[Predictor] = None
        self.error: Optional[str] = None
        self.package, _ = read_package()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="tango-model-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            predictor = Predictor()
            predictor.warmup(1)
            self.predictor = predictor
        except Exception as exc:  # noqa: BLE001  reported by /health/ready and every model route
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def name(self) -> str:
        return self.package["name"]


# A request whose model call is short runs on the event loop when it is the only one in flight:
# handing a 1 ms inference to a worker thread and back costs more than the inference (two thread
# wake-ups on a busy 2-core machine).  Concurrent requests, and slow models, still go to the
# thread pool, where the runtimes (which release the GIL) use every core.
INLINE_BELOW_S = 0.005
_in_flight = 0


async def run_model(fn, *args, last_s: float = 1.0, **kwargs):
    global _in_flight
    _in_flight += 1
    try:
        if _in_flight == 1 and last_s < INLINE_BELOW_S:
            return fn(*args, **kwargs)
        return await _run_in_threadpool(fn, *args, **kwargs)
    finally:
        _in_flight -= 1

def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


def create_app(max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    model = Model()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        model.start()
        yield

    app = FastAPI(title=f"tango: {model.name}", version=str(model.package.get("version", "1")), lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.model, app.state.metrics = model, metrics

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        # one error shape everywhere ({"error": ...}, as KServe v2 answers), 404 and 405 included
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    def ready() -> Optional[JSONResponse]:
        if model.predictor is not None:
            return None
        if model.error:
            return _error(503, f"the model failed to load: {model.error}")
        return _error(503, "the model is still loading")

    # --- health and metrics --------------------------------------------------------------------
    @app.get("/health/live")
    def live():
        return {"status": "live"}

    @app.get("/health/ready")
    def health_ready():
        problem = ready()
        return problem or {"status": "ready", "model": model.name, "backend": model.predictor.backend_name}

    @app.get("/metrics")
    def prometheus():
        return PlainTextResponse(metrics.render(model.predictor is not None),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/")
    def index():
        problem = ready()
        return problem or model.predictor.describe()

    # --- image upload --------------------------------------------------------------------------
    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(5, ge=1, le=1000),
                      conf: Optional[float] = Query(None, ge=0.0, le=1.0),
                      iou: Optional[float] = Query(None, ge=0.0, le=1.0),
                      max_det: Optional[int] = Query(None, ge=1, le=10000)):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8)
            uploads = [v for k, v in form.multi_items() if hasattr(v, "read")]
            if not uploads:
                return _error(400, "no file in the form: send the image as a form field named 'file'")
            data = await uploads[0].read()
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            data = await request.body()
        else:
            return _error(415, f"content type {ctype or 'none'!r} is not accepted: send multipart/form-data with a "
                               "'file' field, or the image bytes with Content-Type image/*")
        if not data:
            return _error(400, "the image is empty (0 bytes)")
        problem = ready()
        if problem:
            return problem
        try:
            result = await run_model(model.predictor.predict, bytes(data), top_k=top_k, conf=conf, iou=iou,
                                     max_det=max_det, last_s=model.predictor.last_infer_s or 1.0)
        except processing.BadImage as exc:
            return _error(422, str(exc))
        metrics.infer(model.predictor.last_infer_s)
        return result

    # --- KServe Open Inference Protocol v2 ----------------------------------------------------------
    @app.get("/v2")
    def v2_server():
        return {"name": "tango", "version": str(model.package.get("tango_version", "")), "extensions": []}

    @app.get("/v2/health/live")
    def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready")
    def v2_ready():
        problem = ready()
        return problem or {"ready": True}

    def known(name: str, version: Optional[str]) -> Optional[JSONResponse]:
        if name != model.name:
            return _error(404, f"model {name!r} is not served here; this server serves {model.name!r}")
        if version is not None and version != str(model.package.get("version", "1")):
            return _error(404, f"model {name!r} has no version {version!r}; it has "
                               f"{str(model.package.get('version', '1'))!r}")
        return None

    def tensor_meta(name: str, shape: list, dtype: str = "FP32") -> Dict[str, Any]:
        return {"name": name, "datatype": dtype, "shape": [int(d) if isinstance(d, int) else -1 for d in shape]}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    def v2_model(name: str, version: Optional[str] = None):
        problem = known(name, version) or ready()
        if problem:
            return problem
        p = model.predictor
        outputs = [tensor_meta(o["name"], o["shape"]) for o in p.meta.get("outputs") or []]
        return {"name": model.name, "versions": [str(model.package.get("version", "1"))],
                "platform": PLATFORMS.get(p.backend_name, p.backend_name),
                "inputs": [tensor_meta(p.input_name, p.input_shape)], "outputs": outputs,
                "parameters": {"task": p.task, "class_names": p.class_names}}

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def v2_model_ready(name: str, version: Optional[str] = None):
        problem = known(name, version) or ready()
        return problem or {"name": model.name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(name: str, request: Request, version: Optional[str] = None):
        problem = known(name, version)
        if problem:
            return problem
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"the request body is not valid JSON: {exc}")
        problem = ready()
        if problem:
            return problem
        p = model.predictor
        try:
            x, wanted = parse_infer(body, p)
        except ValueError as exc:
            return _error(400, str(exc))
        outs = await run_model(p.infer, x, last_s=p.last_infer_s or 1.0)
        metrics.infer(p.last_infer_s)
        names = p.output_names or [f"output_{i}" for i in range(len(outs))]
        names += [f"output_{i}" for i in range(len(names), len(outs))]
        result = []
        for out_name, arr in zip(names, outs):
            if wanted is None or out_name in wanted:
                result.append({"name": out_name, "datatype": "FP32", "shape": list(arr.shape),
                               "data": np.asarray(arr, np.float32).ravel().tolist()})
        reply: Dict[str, Any] = {"model_name": model.name, "model_version": str(model.package.get("version", "1")),
                                 "outputs": result}
        if isinstance(body.get("id"), str):
            reply["id"] = body["id"]
        return reply

    return Guard(app, metrics, max_body_bytes) if max_body_bytes else app


def parse_infer(body: Any, p: Predictor) -> Tuple[np.ndarray, Optional[Set[str]]]:
    """Check a v2 infer request against the model's input; ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the request must be a JSON object with an 'inputs' list")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ValueError(f"'inputs' must be a list with one tensor (the model's input {p.input_name!r})")
    t = inputs[0]
    if t.get("name") != p.input_name:
        raise ValueError(f"input {t.get('name')!r} is not the model's input; it is named {p.input_name!r}")
    dtype = V2_DATATYPES.get(t.get("datatype"))
    if dtype is None:
        raise ValueError(f"datatype {t.get('datatype')!r} is not supported; use one of {sorted(V2_DATATYPES)}")
    shape = t.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError("'shape' must be a list of positive integers")
    expected = p.input_shape
    if len(shape) != len(expected) or shape[1:] != expected[1:] or shape[0] > 256:
        raise ValueError(f"shape {shape} does not fit the model input {['N', *expected[1:]]} (N <= 256)")
    data = t.get("data")
    if not isinstance(data, list):
        raise ValueError("'data' must be a list of numbers (flat, row-major, or nested)")
    try:
        arr = np.asarray(data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError("'data' must hold numbers only, nested evenly") from None
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"'data' has {arr.size} values but shape {shape} needs {int(np.prod(shape))}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("'data' holds NaN or infinite values")
    x = arr.astype(dtype).astype(np.float32).reshape(shape)
    wanted = None
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
            raise ValueError("'outputs' must be a list of {\"name\": ...} objects")
        wanted = {o["name"] for o in outputs}
        unknown = wanted - set(p.output_names)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; the model has {p.output_names}")
    return x, wanted


app = create_app()


def main(argv: Optional[list] = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m app.server", description="Serve the model over HTTP.")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--workers", type=int, default=1, help="processes (each loads the model)")
    args = parser.parse_args(argv)
    uvicorn.run("app.server:app", host=args.host, port=args.port, workers=args.workers, log_level="info")


if __name__ == "__main__":
    main()
