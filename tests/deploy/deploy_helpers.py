"""Helpers of the deploy tests: a tiny detector, the engine's reference predictions, running a
generated package the way a user does (its runner, its server as a real process), and fresh
virtual environments holding only a package's requirements."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

CLASSES = ["cat", "dog", "bird"]


class TinyDetector(nn.Module):
    """Decoded boxes in input pixels and per-class sigmoid scores, ``(B, N, 4 + nc [+ nm])``, as the
    YOLO heads give in eval mode; with ``nm`` mask coefficients it also returns prototypes."""

    def __init__(self, nc: int = 2, nm: int = 0, stride: int = 8) -> None:
        super().__init__()
        self.nc, self.nm, self.s = nc, nm, stride
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Conv2d(16, 4 + nc + nm, 1)
        if nm:
            self.proto = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, nm, 3, 2, 1))
        self.register_buffer("stride", torch.tensor([float(stride)]))

    def forward(self, x):
        f = self.head(self.body(x))
        _, _, gh, gw = f.shape
        gy, gx = torch.meshgrid(torch.arange(gh, dtype=x.dtype), torch.arange(gw, dtype=x.dtype), indexing="ij")
        cx = (f[:, 0].sigmoid() + gx) * self.s
        cy = (f[:, 1].sigmoid() + gy) * self.s
        w = f[:, 2].clamp(-3, 3).exp() * self.s * 1.5
        h = f[:, 3].clamp(-3, 3).exp() * self.s * 1.5
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        out = torch.cat([boxes, f[:, 4:4 + self.nc].sigmoid(), f[:, 4 + self.nc:]], 1).flatten(2).transpose(1, 2)
        return (out, self.proto(x)) if self.nm else out


def engine_probabilities(model: nn.Module, image: Path, meta: dict) -> np.ndarray:
    """What the engine predicts: its own pre-processing (tango_core.export) and the PyTorch model."""
    from tango_core.export._preprocess import to_input

    channels = meta["input"]["shape"][1] if meta["input"].get("layout", "NCHW") == "NCHW" else meta["input"]["shape"][3]
    with Image.open(image) as img:
        x, _ = to_input(img, meta["options"]["imgsz"], meta["preprocess"], channels)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)[None])
    return torch.softmax(logits.double(), 1)[0].numpy()


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TANGO_BACKEND", "TANGO_MODEL_DIR")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_runner(package: Path, *sources, out: Path, backend: str | None = None, extra: tuple = (),
               python: str | Path = sys.executable) -> dict:
    """``python -m app.predict`` in the package, as a user runs it; its predictions.json."""
    cmd = [str(python), "-m", "app.predict", *map(str, sources), "--out", str(out), *extra]
    if backend:
        cmd += ["--backend", backend]
    proc = subprocess.run(cmd, cwd=package, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads((out / "predictions.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The package's HTTP server as a real process on 127.0.0.1 (``python -m uvicorn app.server:app``
    with the given interpreter: this one, or a fresh venv's), and an httpx client for it."""

    def __init__(self, package, python: str | Path = sys.executable, limit: int = 200_000, **env):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(python), "-m", "uvicorn", "app.server:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"], cwd=package, env=clean_env(TANGO_MAX_BODY_BYTES=str(limit), **env))
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.time() + 120
        while True:
            assert self.proc.poll() is None, "the server exited"
            try:
                self.client.get("/health/live")
                break
            except httpx.TransportError:
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.1)

    def wait_ready(self):
        deadline = time.time() + 120
        while True:
            r = self.client.get("/health/ready")
            if r.status_code == 200 or "failed" in r.text:
                return r
            assert time.time() < deadline
            time.sleep(0.1)

    def stop(self) -> int:
        """Stop it (SIGTERM, as Docker and Kubernetes do); its exit code."""
        self.client.close()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class FreshVenvs:
    """Fresh virtual environments holding exactly what requirement files name: no system
    site-packages, no pip or setuptools of their own (this interpreter's pip installs into them
    with ``--python``, from its cache and the package registries).  One per distinct set of pins,
    made on first use and shared for the session; ``seconds`` records how long each took."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path] = {}
        self.seconds: dict[str, float] = {}

    @staticmethod
    def pins(*files: Path) -> list[str]:
        lines = set()
        for f in files:
            for line in Path(f).read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    lines.add(line)
        return sorted(lines)

    def __call__(self, *requirement_files: Path) -> Path:
        """The python of a venv with just these requirements installed."""
        pins = self.pins(*requirement_files)
        key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
        if key in self.made:
            return self.made[key]
        started = time.perf_counter()
        venv = self.root / key
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        wanted = venv / "requirements.txt"
        wanted.write_text("".join(p + "\n" for p in pins), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                               "--disable-pip-version-check", "--no-input", "-q", "-r", str(wanted)],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"pip install -r {wanted} failed:\n{proc.stderr[-3000:]}"
        self.made[key] = python
        self.seconds[key] = time.perf_counter() - started
        return python

    @staticmethod
    def distributions(python: Path) -> set[str]:
        """Normalised names of every distribution installed in that venv."""
        code = ("import importlib.metadata as m, json, re; print(json.dumps(sorted("
                "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in m.distributions())))")
        # from the venv's folder: a -c script sees its working directory (the repository holds tango.egg-info)
        out = subprocess.run([str(python), "-c", code], cwd=Path(python).parent.parent, capture_output=True,
                             text=True, check=True, timeout=60)
        return set(json.loads(out.stdout))
