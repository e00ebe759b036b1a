"""The generated HTTP server as a real process on 127.0.0.1: health, /predict uploads, the KServe
v2 protocol with results equal to the PyTorch model, metrics, and bad input answered with a 4xx
and a message (never a 500)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from deploy_helpers import Server, engine_probabilities
from PIL import Image

from tango_core.deploy import deploy
from tango_core.export._preprocess import to_input

LIMIT = 200_000  # TANGO_MAX_BODY_BYTES of the server under test


@pytest.fixture(scope="module")
def package(exports, workdir):
    return deploy(exports("onnx"), target="x86-cpu", out=workdir / "server-pkg", measure=False)


@pytest.fixture(scope="module")
def server(package):
    s = Server(package.path, limit=LIMIT)
    yield s
    s.stop()


def test_health_and_readiness(server, package):
    assert server.client.get("/health/live").json() == {"status": "live"}
    ready = server.wait_ready()
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": package.record["name"], "backend": "onnxruntime"}
    assert server.client.get("/v2/health/live").status_code == 200
    assert server.client.get("/v2/health/ready").json() == {"ready": True}


def test_predict_upload_equals_the_engine(server, classifier, sample_images, exports):
    meta = exports("onnx").metadata
    server.wait_ready()
    for image in sorted(sample_images.iterdir()):
        content = image.read_bytes()
        kind = "image/jpeg" if image.suffix == ".jpg" else "image/png"
        upload = server.client.post("/predict", files={"file": (image.name, content, kind)}, params={"top_k": 2})
        raw = server.client.post("/predict", content=content, headers={"Content-Type": kind})
        assert upload.status_code == 200 and raw.status_code == 200, upload.text
        reference = engine_probabilities(classifier, image, meta)
        for result in (upload.json(), raw.json()):
            assert np.abs(np.asarray(result["probabilities"]) - reference).max() <= 1e-3
            assert result["class_id"] == int(reference.argmax())
        assert len(upload.json()["top_k"]) == 2 and len(raw.json()["top_k"]) == 3


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time(server, sample_images):
    """A fast model runs on the event loop when its request is alone, in the thread pool when
    others are in flight: both paths answer alike."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    server.wait_ready()
    images = sorted(sample_images.iterdir())
    alone = {i.name: server.client.post("/predict", content=i.read_bytes(),
                                        headers={"Content-Type": "image/png" if i.suffix == ".png" else "image/jpeg"}
                                        ).json()["probabilities"] for i in images}

    def one(image):
        with httpx.Client(base_url=str(server.client.base_url), timeout=60) as c:
            kind = "image/png" if image.suffix == ".png" else "image/jpeg"
            r = c.post("/predict", content=image.read_bytes(), headers={"Content-Type": kind})
            return image.name, r.status_code, r.json()["probabilities"]

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, images * 4))
    assert all(code == 200 for _, code, _ in together)
    for name, _, probs in together:
        assert np.abs(np.asarray(probs) - np.asarray(alone[name])).max() <= 1e-6


def test_v2_metadata_and_infer_equal_the_pytorch_model(server, package, classifier, sample_images, exports):
    name = package.record["name"]
    server.wait_ready()
    assert server.client.get("/v2").json()["name"] == "tango"
    model = server.client.get(f"/v2/models/{name}").json()
    assert model["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [1, 3, 32, 32]}]
    assert model["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [1, 3]}]
    assert model["platform"] == "onnxruntime_onnx" and model["versions"] == ["1"]
    assert server.client.get(f"/v2/models/{name}/versions/1").json()["name"] == name
    assert server.client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}

    meta = exports("onnx").metadata
    batch = []
    for image in sorted(sample_images.iterdir())[:3]:
        with Image.open(image) as img:
            batch.append(to_input(img, [32, 32], meta["preprocess"], 3)[0])
    x = np.stack(batch)
    with torch.inference_mode():
        expected = classifier(torch.from_numpy(x)).numpy()
    # one image, flat data
    r = server.client.post(f"/v2/models/{name}/infer", json={
        "id": "req-1", "inputs": [{"name": "images", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                   "data": x[0].ravel().tolist()}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-1" and body["model_name"] == name and body["model_version"] == "1"
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [1, 3] and out["datatype"] == "FP32"
    np.testing.assert_allclose(out["data"], expected[0], atol=1e-3 * max(1.0, np.abs(expected).max()))
    # a batch of three, nested data, on a model exported with batch 1: run in chunks
    r = server.client.post(f"/v2/models/{name}/versions/1/infer", json={
        "inputs": [{"name": "images", "shape": [3, 3, 32, 32], "datatype": "FP32", "data": x.tolist()}],
        "outputs": [{"name": "logits"}]})
    out = r.json()["outputs"][0]
    assert out["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(out["data"], (3, 3)), expected, atol=1e-3 * max(1.0, np.abs(expected).max()))


def _infer(server, model, **tensor):
    t = {"name": "images", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}
    t.update(tensor)
    return server.client.post(f"/v2/models/{model}/infer", json={"inputs": [t]})


def test_bad_requests_get_a_4xx_with_a_message(server, package, sample_images):
    name = package.record["name"]
    server.wait_ready()
    c = server.client
    png = (sample_images / "img1.png").read_bytes()
    cases = {
        "corrupt image": (c.post("/predict", files={"file": ("x.png", png[:200], "image/png")}), 422, "corrupt"),
        "not an image": (c.post("/predict", content=b"GIF89a nonsense", headers={"Content-Type": "image/gif"}), 422,
                         "not an image"),
        "wrong content type": (c.post("/predict", content=b"hello", headers={"Content-Type": "text/plain"}), 415,
                               "multipart/form-data"),
        "json to /predict": (c.post("/predict", json={"image": "x"}), 415, "content type"),
        "empty image": (c.post("/predict", content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
        "form without file": (c.post("/predict", files={"note": (None, "no file")}), 400, "field named 'file'"),
        "over the limit": (c.post("/predict", content=b"\0" * (LIMIT + 1), headers={"Content-Type": "image/png"}),
                           413, "limit"),
        "chunked over the limit": (c.post("/predict", content=iter([b"\0" * 65536] * 4),
                                          headers={"Content-Type": "image/png"}), 413, "limit"),
        "bad top_k": (c.post("/predict", content=png, headers={"Content-Type": "image/png"}, params={"top_k": 0}),
                      422, "top_k"),
        "v2 not json": (c.post(f"/v2/models/{name}/infer", content=b"{nope", headers={"Content-Type": "application/json"}),
                        400, "not valid JSON"),
        "v2 wrong input name": (_infer(server, name, name="input_1"), 400, "'images'"),
        "v2 wrong shape": (_infer(server, name, shape=[1, 3, 28, 28], data=[0.0] * 2352), 400, "does not fit"),
        "v2 short data": (_infer(server, name, data=[0.0] * 10), 400, "needs 3072"),
        "v2 bytes": (_infer(server, name, datatype="BYTES"), 400, "datatype"),
        "v2 text data": (_infer(server, name, data=["a"] * 3072), 400, "numbers"),
        "v2 NaN": (server.client.post(f"/v2/models/{name}/infer", content=json.dumps(
            {"inputs": [{"name": "images", "shape": [1, 3, 32, 32], "datatype": "FP32",
                         "data": [float("nan")] * 3072}]}), headers={"Content-Type": "application/json"}), 400, "NaN"),
        "v2 unknown output": (c.post(f"/v2/models/{name}/infer", json={
            "inputs": [{"name": "images", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}],
            "outputs": [{"name": "probs"}]}), 400, "unknown outputs"),
        "v2 unknown model": (c.get("/v2/models/other"), 404, "serves"),
        "v2 unknown version": (c.get(f"/v2/models/{name}/versions/7"), 404, "no version"),
    }
    for what, (response, code, words) in cases.items():
        assert response.status_code == code, (what, response.status_code, response.text)
        assert words in response.text, (what, response.text)
    # the server is still healthy after all of that
    assert c.get("/health/ready").status_code == 200


def test_metrics_count_requests_by_route_and_code(server, package):
    server.wait_ready()
    server.client.post("/predict", content=b"x", headers={"Content-Type": "text/plain"})
    text = server.client.get("/metrics").text
    assert "tango_model_ready 1" in text
    assert 'tango_requests_total{method="POST",path="/predict",code="415"}' in text
    assert 'path="/v2/models/{name}/infer"' in text  # routes, not raw paths: bounded label values
    assert 'tango_request_duration_seconds_bucket{path="/predict",le="+Inf"}' in text
    assert "tango_inference_duration_seconds_count" in text


def test_a_model_that_fails_to_load_is_live_but_not_ready(package, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(package.path, broken)
    (broken / "model" / package.record["backends"]["onnxruntime"]["file"]).write_bytes(b"not an onnx model")
    s = Server(broken, limit=LIMIT)
    try:
        ready = s.wait_ready()
        assert ready.status_code == 503 and "failed to load" in ready.json()["error"]
        assert s.client.get("/health/live").status_code == 200
        r = s.client.post("/predict", content=(b"\x89PNG"), headers={"Content-Type": "image/png"})
        assert r.status_code == 503
        assert "tango_model_ready 0" in s.client.get("/metrics").text
    finally:
        s.stop()
