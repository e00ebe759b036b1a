"""Latency on the target: measured by exporting a candidate to the target's runtime and timing
it here when that runtime runs here, otherwise predicted by a model fitted on measurements.

The predictor is a non-negative linear model over what a network costs to run (FLOPs, weights,
activation traffic, layer count); it is fitted on measured candidates and its error is reported
on candidates held out of the fit.  Its features come from the model itself, so one predictor
serves every search space.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError

FEATURES = ("flops", "params", "activations", "layers")
#: the study attribute that keeps a search's fitted predictor (every worker reads it)
PREDICTOR_ATTR = "latency_predictor"


@dataclass
class Latency:
    median_ms: float
    runtime: str
    path: Path | None  # the exported file that was timed
    size_bytes: int = 0
    times_ms: list[float] = field(default_factory=list)

    @property
    def spread_ms(self) -> float:
        """Inter-quartile range of the timed runs."""
        if not self.times_ms:
            return 0.0
        q1, q3 = np.percentile(self.times_ms, [25, 75])
        return float(q3 - q1)


def runtime_for(target: Any) -> tuple[str | None, list[str]]:
    """The first of the target's runtimes that runs on this machine (None when none does), and
    the target's runtimes in order."""
    from ..export import list_formats

    here = set(list_formats(runs_here=True))
    runtimes = list(target.runtimes)
    return next((r for r in runtimes if r in here), None), runtimes


def measure_latency(model: nn.Module | str | os.PathLike, runtime: str = "onnx", *, imgsz: int | list[int], out: str | os.PathLike,
                    name: str = "candidate", task: str = "classification", class_names: list[str] | None = None,
                    threads: int = 1, warmup: int = 5, repeats: int = 30, verify: bool = True) -> Latency:
    """Export ``model`` (a module or a weights file) to ``runtime`` (a format of the export table),
    load the file in its runtime and time single-image inference: the median of ``repeats`` runs
    after ``warmup``."""
    from ..export import export, load_exported

    if isinstance(model, nn.Module):
        model = model.eval()
    result = export(model, runtime, out=out, name=name, imgsz=imgsz, task=task, class_names=class_names,
                    verify=verify, threads=threads)
    runner = load_exported(result.path, threads=threads)
    shape = result.metadata["input"]["shape"]
    x = runner.to_file_input(np.random.default_rng(0).random([1, *shape[1:]], dtype=np.float32))
    for _ in range(warmup):
        runner.run_raw(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run_raw(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return Latency(float(np.median(times)), runtime, result.path, result.size_bytes, times)


@torch.no_grad()
def cost_features(model: nn.Module, imgsz: int | list[int], in_channels: int = 3) -> dict[str, float]:
    """What a network costs to run at one image: FLOPs, parameters, activation elements written
    by its layers, and the number of layers with weights."""
    from torch.utils.flop_counter import FlopCounterMode

    size = [imgsz, imgsz] if isinstance(imgsz, int) else list(imgsz)
    x = torch.zeros(1, in_channels, *size)
    acts = [0]

    def hook(_m, _inp, out) -> None:
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor):
                acts[0] += t.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = sum(1 for m in leaves if isinstance(m, (nn.Conv2d, nn.Linear)))
    return {"flops": float(counter.get_total_flops()), "params": float(sum(p.numel() for p in model.parameters())),
            "activations": float(acts[0]), "layers": float(layers)}


class LatencyPredictor:
    """``latency_ms ≈ b + Σ w_i · feature_i`` with ``w_i ≥ 0`` (non-negative least squares on
    features scaled to unit range), fitted on measured candidates."""

    def __init__(self) -> None:
        self.coef: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.n_fit = 0
        self.error: dict[str, float] | None = None

    @staticmethod
    def _matrix(rows: list[dict[str, float]]) -> np.ndarray:
        return np.array([[float(r[f]) for f in FEATURES] for r in rows], dtype=np.float64)

    def fit(self, rows: list[dict[str, float]], latencies_ms: list[float]) -> LatencyPredictor:
        from scipy.optimize import nnls

        if len(rows) < 2:
            raise ValueError(f"the latency predictor needs at least 2 measured candidates, got {len(rows)}")
        x = self._matrix(rows)
        self.scale = np.maximum(x.max(axis=0), 1e-12)
        a = np.hstack([x / self.scale, np.ones((len(rows), 1))])
        self.coef, _ = nnls(a, np.asarray(latencies_ms, dtype=np.float64))
        self.n_fit = len(rows)
        return self

    def predict(self, rows: list[dict[str, float]] | dict[str, float]) -> np.ndarray | float:
        if self.coef is None or self.scale is None:
            raise RuntimeError("fit the latency predictor before predicting")
        single = isinstance(rows, dict)
        x = self._matrix([rows] if single else rows)
        y = np.hstack([x / self.scale, np.ones((len(x), 1))]) @ self.coef
        return float(y[0]) if single else y

    def evaluate(self, rows: list[dict[str, float]], latencies_ms: list[float]) -> dict[str, float]:
        """Error on candidates not used in the fit: mean and max absolute percentage error."""
        pred = np.asarray(self.predict(rows))
        true = np.asarray(latencies_ms, dtype=np.float64)
        ape = np.abs(pred - true) / np.maximum(true, 1e-9)
        self.error = {"held_out": len(true), "mape": float(ape.mean()), "max_ape": float(ape.max()),
                      "fitted_on": self.n_fit}
        return self.error

    def fit_and_evaluate(self, rows: list[dict[str, float]], latencies_ms: list[float],
                         held_out: float = 0.25, seed: int = 0) -> dict[str, float]:
        """Fit on a random (1 - held_out) of the measurements and report the error on the rest;
        then refit on all of them for use."""
        n = len(rows)
        k = max(1, int(round(n * held_out))) if n >= 4 else 0
        order = np.random.default_rng(seed).permutation(n)
        test, train = order[:k], order[k:]
        error: dict[str, float] = {"held_out": 0, "mape": float("nan"), "max_ape": float("nan"), "fitted_on": n}
        if k:
            self.fit([rows[i] for i in train], [latencies_ms[i] for i in train])
            error = self.evaluate([rows[i] for i in test], [latencies_ms[i] for i in test])
        self.fit(rows, latencies_ms)
        self.error = error
        return error

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "coef": None if self.coef is None else self.coef.tolist(),
                "scale": None if self.scale is None else self.scale.tolist(), "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyPredictor:
        p = cls()
        p.coef = np.asarray(data["coef"]) if data.get("coef") is not None else None
        p.scale = np.asarray(data["scale"]) if data.get("scale") is not None else None
        p.error = data.get("error")
        return p


# --- a search's predictor ----------------------------------------------------------------------
def calibrate(study, spec: dict[str, Any], latency_table: Any, samples: int, seed: int) -> dict[str, Any]:
    """Fit the latency predictor once per study (kept in the study, so every worker uses it)."""
    from ._nas_spaces import get_space

    if PREDICTOR_ATTR in study.user_attrs:
        return study.user_attrs[PREDICTOR_ATTR]
    space = get_space(spec["space"])
    rows, lat = [], []
    if latency_table is not None:
        entries, source = _read_table(latency_table), "device table"
    else:
        rng = np.random.default_rng(seed)
        entries, source = [], f"measured here on {spec['proxy_runtime']} (stand-in for {spec['runtime']})"
        for _ in range(samples):
            params = {}
            for k, d in spec["choices"].items():
                params[k] = d["choices"][rng.integers(len(d["choices"]))] if "choices" in d else \
                    int(rng.integers(d["low"], d["high"] + 1))
            entries.append({"params": params})
    out = Path(spec["runs"]) / "latency_calibration"
    for i, entry in enumerate(entries):
        missing = sorted(set(spec["choices"]) - set(entry["params"]))
        if missing:
            raise ConfigError("latency_table", f"[{i}].params", f"lacks the choices {missing}",
                              f"give every choice of the {spec['space']} space: {sorted(spec['choices'])}")
        model = space.build(space.arch(spec["model"], entry["params"]), spec["num_classes"], spec["in_channels"])
        rows.append(cost_features(model, spec["imgsz"], spec["in_channels"]))
        if "latency_ms" in entry:
            lat.append(float(entry["latency_ms"]))
        else:
            lat.append(measure_latency(model, spec["proxy_runtime"], imgsz=spec["imgsz"], out=out, name=f"c{i}",
                                       task=spec["task"], threads=spec["latency_threads"], verify=False).median_ms)
    pred = LatencyPredictor()
    error = pred.fit_and_evaluate(rows, lat, seed=seed)
    info = {**pred.to_dict(), "source": source, "error": error}
    study.set_user_attr(PREDICTOR_ATTR, info)
    return info


def _read_table(path: Any) -> list[dict[str, Any]]:
    """A device measurement table: YAML/JSON list of ``{params: {...}, latency_ms: x}``."""
    from .._io import read_yaml

    entries = read_yaml(path) if not isinstance(path, list) else path
    source = str(path) if not isinstance(path, list) else "latency_table"
    if not isinstance(entries, list) or len(entries) < 2:
        raise ConfigError(source, "<root>", "must be a list of at least 2 measurements",
                          "each: {params: {<choice>: value, ...}, latency_ms: <measured on the device>}")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("params"), dict) or \
                not isinstance(e.get("latency_ms"), (int, float)):
            raise ConfigError(source, f"[{i}]", "needs params (a mapping) and latency_ms (a number)")
    return entries
