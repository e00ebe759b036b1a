"""TVM tuning: MetaSchedule within a budget, its log kept and reused, more budget continues it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tango_core.errors import TangoError
from tango_core.export import export, load_exported
from tango_core.export._tvm import MAX_POPULATION, _onnx_op, _population
from tests.export.conftest import IMGSZ, torch_outputs

pytestmark = pytest.mark.slow


def test_tuning_measures_within_its_budget_keeps_the_log_and_reuses_or_continues_it(random_model, tmp_path):
    cache = tmp_path / "cache"
    first = export(random_model, "tvm", out=tmp_path / "a", imgsz=IMGSZ, tune=True, tune_budget_s=10,
                   tuning_cache=str(cache))
    tuning = first.metadata["runtime_config"]["tuning"]
    run = tuning["run"]
    assert tuning["reused"] is False and run["tasks"] >= 3 and run["measured"] > 0 and run["failed"] == 0
    # the budget holds to about one batch of candidates (plus the search's own overhead)
    assert run["stopped"] in {"budget", "finished", "trials"} and run["seconds"] < 10 + 30
    log = cache / tuning["key"]
    records = (log / "database_tuning_record.json").read_text().splitlines()
    assert len(records) == tuning["trials"] == run["measured"] and json.loads(records[0])
    assert first.metadata["verification"]["passed"]
    assert any("tuned" in note and "candidates measured" in note for note in first.metadata["notes"])

    images = np.random.default_rng(0).standard_normal((2, 3, IMGSZ, IMGSZ)).astype(np.float32)
    runner = load_exported(first.metadata_path)
    np.testing.assert_allclose(runner(images[:1])[0], torch_outputs(random_model, images[:1]), atol=1e-4)

    # the same budget again: the log is reused as it is, nothing is tuned
    again = export(random_model, "tvm", out=tmp_path / "b", imgsz=IMGSZ, tune=True, tune_budget_s=10,
                   tuning_cache=str(cache))
    reused = again.metadata["runtime_config"]["tuning"]
    assert reused["reused"] is True and reused["run"] is None and reused["key"] == tuning["key"]
    assert len((log / "database_tuning_record.json").read_text().splitlines()) == len(records)
    assert any("reused the tuning log" in note for note in again.metadata["notes"])
    assert again.metadata["verification"]["passed"]

    # a bigger budget tunes for the difference, adding to the records already there
    more = export(random_model, "tvm", out=tmp_path / "c", imgsz=IMGSZ, tune=True, tune_budget_s=20,
                  tuning_cache=str(cache))
    grown = more.metadata["runtime_config"]["tuning"]
    assert grown["reused"] is False and grown["runs"] == 2 and grown["budget_s"] == 20
    assert grown["trials"] >= tuning["trials"] and grown["seconds"] >= tuning["seconds"]
    assert more.metadata["verification"]["passed"]


def test_tuning_for_another_cpu_is_refused_with_what_to_do(random_model, tmp_path):
    with pytest.raises(TangoError) as err:
        export(random_model, "tvm", out=tmp_path, imgsz=IMGSZ, arch="aarch64", tune=True, tune_budget_s=10)
    message = str(err.value)
    assert "aarch64" in message and "RPC" in message


def test_population_scales_with_the_budget_per_task():
    assert _population(10, 6) == 32  # a short budget over many tasks: a small population
    assert _population(3600, 4) == MAX_POPULATION  # a long one: the cap, well under MetaSchedule's 512
    assert 32 < _population(120, 6) < MAX_POPULATION


def test_unsupported_onnx_op_is_named_from_the_frontend_message():
    # the message of the Relax frontend's check for unsupported operators (onnx_frontend.py)
    message = "The following operators are not supported for frontend ONNX: GridSample"
    assert _onnx_op(ValueError(message)) == "GridSample"
    assert _onnx_op(ValueError("something else went wrong")) is None


def test_running_a_tvm_module_leaves_the_process_on_every_core(random_model, tmp_path):
    """TVM's pool used to pin the launching thread to one core; threads started afterwards (every
    other runtime's pool) inherited it and ran 2-3x slower.  Checked in a fresh process."""
    import os
    import subprocess
    import sys
    import textwrap

    exported = export(random_model, "tvm", out=tmp_path / "t", imgsz=IMGSZ)
    script = textwrap.dedent(f"""
        import os, threading
        import numpy as np
        from tango_core.export import load_exported
        before = os.sched_getaffinity(0)
        runner = load_exported({str(exported.metadata_path)!r}, threads=2)
        for _ in range(3):
            runner(np.zeros((1, 3, {IMGSZ}, {IMGSZ}), np.float32))
        seen = {{}}
        t = threading.Thread(target=lambda: seen.update(mask=os.sched_getaffinity(0)))
        t.start(); t.join()
        print(len(before), len(os.sched_getaffinity(0)), len(seen["mask"]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                         cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-2000:]
    before, main, thread = map(int, out.stdout.split()[-3:])
    assert main == before and thread == before, f"affinity {before} CPUs before, {main} / {thread} after a TVM run"


class _GatherNet(torch.nn.Module):
    """A per-channel scale, then one column picked by a scalar index, as YOLO heads pick the objectness
    (``p[..., 4]``: an ONNX Gather, a ``take`` task whose index is an argument of the tuned function)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((1, 3, 1, 1), 2.0))

    def forward(self, x):
        return (x * self.scale)[..., 3].flatten(1)


def test_tuning_times_gathers_with_indices_inside_their_tensor(tmp_path):
    """The tuner fills a candidate's arguments with random values before timing it; random
    indices for a gather read far outside its tensor and crashed the whole process (YOLOv7-tiny's
    ``take`` tasks).  Integer arguments are filled with zeros, which index every tensor."""
    torch.manual_seed(0)
    model = _GatherNet().eval()
    size = 32  # before the fix this crashed at 32 px more often than not (the read lands further out)
    result = export(model, "tvm", out=tmp_path / "out", imgsz=size, tune=True, tune_budget_s=15,
                    tuning_cache=str(tmp_path / "cache"))
    tuning = result.metadata["runtime_config"]["tuning"]
    logs = [p.name for p in (tmp_path / "cache" / tuning["key"] / "logs").iterdir()]
    assert any("take" in name for name in logs), logs  # a gather task...
    assert not [t for t in tuning["run"]["untuned"] if "take" in t], tuning["run"]  # ...measured
    assert tuning["run"]["failed"] == 0 and result.metadata["verification"]["passed"]
    images = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    np.testing.assert_allclose(load_exported(result.metadata_path)(images)[0], torch_outputs(model, images), atol=1e-4)
