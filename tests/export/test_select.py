"""The target's default export chosen by measuring (export/_select.py)."""

from __future__ import annotations

import pytest

from tango_core.errors import ConfigError
from tango_core.export._select import choose, parse_candidate, row_label
from tests.export.conftest import IMGSZ


def _row(label, ms, metric=0.9, verified=True, error=None):
    return {"label": label, "inference_ms": ms, "metric": metric, "verified": verified, "error": error}


EAGER = _row("torch eager", 10.0, 0.90)


def test_choose_takes_the_fastest_eligible_and_says_why():
    rows = [EAGER, _row("openvino bf16", 1.0), _row("onnx int8", 0.5, metric=0.85),  # loses 5 points
            _row("tflite int8", 0.4, error="ImportError: no litert"), _row("onnx", 0.8, verified=False),
            _row("openvino int8", 0.7, metric=0.895)]
    labels = ["openvino bf16", "onnx int8", "tflite int8", "onnx", "openvino int8", "tvm"]
    chosen, why = choose(rows, labels, max_drop=0.01, prefer_within=0.05)
    assert chosen["label"] == "openvino int8"
    assert why["onnx int8"].startswith("loses 0.0500")
    assert why["tflite int8"].startswith("failed: ImportError")
    assert why["onnx"] == "not verified" and why["tvm"] == "not measured"
    assert why["openvino int8"].startswith("chosen: 0.700 ms") and why["openvino bf16"].startswith("eligible")
    # a looser bound lets the faster INT8 row in
    assert choose(rows, labels, max_drop=0.06)[0]["label"] == "onnx int8"


def test_choose_prefers_the_earlier_candidate_within_prefer_within():
    rows = [EAGER, _row("openvino bf16", 1.04), _row("onnx", 1.0)]
    assert choose(rows, ["openvino bf16", "onnx"], prefer_within=0.05)[0]["label"] == "openvino bf16"
    assert choose(rows, ["openvino bf16", "onnx"], prefer_within=0.01)[0]["label"] == "onnx"
    assert choose(rows, ["onnx", "openvino bf16"], prefer_within=0.05)[0]["label"] == "onnx"
    assert choose([EAGER], ["onnx"])[0] is None


def test_candidates_and_target_select_are_validated():
    from tango_core.targets import get_target, target_from_dict

    assert parse_candidate("openvino:int8") == ("openvino", {"precision": "int8"})
    assert parse_candidate("openvino") == ("openvino", {})
    assert row_label("openvino", {}) == "openvino bf16" and row_label("onnx", {"precision": "int8"}) == "onnx int8"
    with pytest.raises(ConfigError, match="no precision 'int4'"):
        parse_candidate("onnx:int4")
    x86 = get_target("x86-cpu")
    assert x86.select["candidates"][0] == "openvino"
    base = {k: v for k, v in x86.to_dict().items() if k != "select"}
    for bad, field in (({"candidates": ["tensorrt"]}, "select.candidates[0]"), ({"candidates": []}, "select.candidates"),
                       ({"candidates": ["onnx"], "max_drop": 5}, "select.max_drop"),
                       ({"candidates": ["onnx"], "by": "size"}, "select.by"),
                       ({"candidates": ["onnx"], "fastest": True}, "select.fastest")):
        with pytest.raises(ConfigError) as err:
            target_from_dict({**base, "select": bad}, "my-target.yaml")
        assert field in str(err.value) and "my-target.yaml" in str(err.value)


@pytest.mark.slow
def test_select_export_measures_the_candidates_and_keeps_the_fastest(trained, digits, project_factory):
    from tango_core import events as ev
    from tango_core.deploy._resolve import choose_export
    from tango_core.deploy._table import table
    from tango_core.events import Recorder
    from tango_core.export import export, load_exported
    from tango_core.targets import get_target, register_target

    model, val = trained
    spec = {**get_target("x86-cpu").to_dict(), "id": "x86-select-test",
            "select": {"candidates": ["onnx", "onnx:int8", "torchscript"], "max_drop": 0.02, "prefer_within": 0.05}}
    register_target(spec)
    project = project_factory("sel", target="x86-select-test", classes=list(digits.classes), dataset=str(digits.root))
    seen = Recorder(project.events)
    result = export(model, project=project, imgsz=IMGSZ, threads=1)  # no format: the target's rule

    sel = result.metadata["selection"]
    assert sel["target"] == "x86-select-test" and sel["candidates"] == ["onnx", "onnx int8", "torchscript"]
    rows = {r["label"]: r for r in sel["rows"]}
    assert set(rows) == {"torch eager", "onnx", "onnx int8", "torchscript"}
    # the qualifying candidates were timed a second time, interleaved, and that time decided
    assert all(rows[k]["first_ms"] is not None for k in sel["candidates"] if rows[k]["verified"])
    ok = [r for label, r in rows.items() if label != "torch eager" and r["verified"]
          and rows["torch eager"]["metric"] - r["metric"] <= 0.02 + 1e-9]
    fastest = min(r["inference_ms"] for r in ok)
    chosen = rows[sel["chosen"]]
    assert chosen in ok and chosen["inference_ms"] <= 1.05 * fastest
    # the chosen one is the project's real export, verified, under its usual name, and runs
    assert result.path.parent == project.path("exports") and result.verification["passed"]
    assert row_label(result.format, {"precision": result.metadata["precision"]}
                     if result.metadata["precision"] != "fp32" else {}) == sel["chosen"]
    assert not list(project.path("exports").glob(".select-*")), "the candidates' scratch folder is removed"
    runner = load_exported(result.metadata_path, threads=1)
    assert runner(val.images[:1])[0].shape == (1, 10)
    names = [e.name for e in seen.events]
    assert names.count(ev.BENCHMARK_ROW) == 3 and names[-1] == ev.EXPORT_SELECTED
    reopened = type(project).open(project.root)
    info = reopened.stages["export"].info
    assert info["selected"]["label"] == sel["chosen"]
    # deploy takes the selected export for this target
    found = choose_export(reopened, get_target("x86-select-test"), table(), "server")
    assert found == result.metadata_path


@pytest.mark.slow
def test_x86_cpu_default_export_is_measured_over_its_candidates(trained, digits, project_factory):
    """The real x86-cpu rule (OpenVINO bf16 / INT8, ONNX Runtime fp32 / INT8, LiteRT INT8)."""
    from tango_core.export import export

    model, _ = trained
    project = project_factory("x86", target="x86-cpu", classes=list(digits.classes), dataset=str(digits.root))
    result = export(model, project=project, imgsz=IMGSZ, threads=1)
    sel = result.metadata["selection"]
    assert sel["candidates"] == ["openvino bf16", "openvino int8", "onnx", "onnx int8", "tflite int8"]
    measured = [r for r in sel["rows"] if r["label"] != "torch eager"]
    assert len(measured) == 5 and all(r["error"] is None for r in measured), sel["why"]
    assert sel["why"][sel["chosen"]].startswith("chosen")
    assert result.verification["passed"]


def test_select_without_calibration_leaves_int8_out_and_says_so(trained, tmp_path):
    from tango_core.export import select_export

    model, _ = trained
    with pytest.raises(ConfigError, match="picks the precision"):
        select_export(model, candidates=["onnx"], out=tmp_path, imgsz=IMGSZ, precision="int8")
    with pytest.raises(ConfigError, match="no candidate left"):
        select_export(model, candidates=["onnx:int8"], out=tmp_path, imgsz=IMGSZ)
    result = select_export(model, candidates=["onnx", "onnx:int8"], out=tmp_path, imgsz=IMGSZ, runs=5)
    sel = result.metadata["selection"]
    assert sel["chosen"] == "onnx" and "no calibration images" in sel["why"]["onnx int8"]


def test_interleaved_timing_alternates_the_candidates():
    from tango_core.export._benchmark import interleaved_ms

    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    ms = interleaved_ms(fns, rounds=3, runs=4, warmup=1)
    assert set(ms) == {"a", "b", "c"} and all(v >= 0 for v in ms.values())
    # rounds of a, b, c: each candidate's (warm-up + runs) calls form one block per round
    blocks = [calls[i] for i in range(0, len(calls), 5)]
    assert blocks == ["a", "b", "c"] * 3 and len(calls) == 3 * 3 * 5
