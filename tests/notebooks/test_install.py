"""Outside this checkout (Colab, a fresh kernel) the notebooks install tango themselves: the first
code cell of each picks the spec, and the wheel it installs carries the catalog and notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Runs the cell in a bare interpreter (-I -S: no site-packages, so no tango_core), with pip and
# Colab's output module replaced by recorders: the cell's own logic is what runs.
HARNESS = """
import json, sys, types
calls = []
class Shell:
    def run_line_magic(self, name, line):  # IPython expands {{names}} from the user namespace
        calls.append([name, line.format_map(globals())])
get_ipython = lambda: Shell()
if {colab!r}:
    google = types.ModuleType("google"); colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(["widgets"]))
    google.colab = colab
    sys.modules.update({{"google": google, "google.colab": colab}})
try:
    exec(compile({code!r}, "cell", "exec"))
except RuntimeError as exc:
    calls.append(["error", str(exc)])
print(json.dumps(calls))
"""


def _install_cell(nb: Path) -> str:
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    return TransformerManager().transform_cell("".join(cells[0]["source"]))


def _run(nb: Path, cwd: Path, spec: str | None = None, colab: bool = False) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("TANGO_PIP_SPEC", "PYTHONPATH")}
    if spec:
        env["TANGO_PIP_SPEC"] = spec
    code = HARNESS.format(colab=colab, code=_install_cell(nb))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.unit
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_never_installs_pypis_other_tango(nb, tmp_path):
    calls = _run(nb, tmp_path)
    assert calls[0][0] == "error" and "tango is not installed" in calls[0][1] and "TANGO_PIP_SPEC" in calls[0][1]
    wheel = tmp_path / "tango-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    (pip,) = _run(nb, tmp_path)
    assert pip[0] == "pip" and pip[1].startswith('install -q "tango-0.1.0-py3-none-any.whl[notebook')
    (pip,) = _run(nb, tmp_path, spec="git+https://example.org/me/tango.git#egg=tango[notebook]")
    assert pip[1] == 'install -q "git+https://example.org/me/tango.git#egg=tango[notebook]"'
    calls = _run(nb, tmp_path, colab=True)
    assert calls[-1] == ["widgets"]  # Colab's custom widget manager is switched on in every notebook


@pytest.mark.slow
def test_the_wheel_carries_the_catalog_and_the_notebooks(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("tango-*.whl")
    site = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr
    probe = ("import json, tango_core\n"
             "from tango_core.targets import builtin_targets_dir, list_targets\n"
             "print(json.dumps({'file': tango_core.__file__, 'targets': list_targets(),"
             " 'dir': str(builtin_targets_dir())}))")
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(site))  # the installed copy, not this checkout
    assert info["dir"] == str(site / "tango_core" / "_targets")
    assert {"x86-cpu", "jetson-nano", "galaxy-s23", "rpi5-coral"} <= set(info["targets"])
    for nb in NOTEBOOKS:
        assert (site / "tango_core" / "_notebooks" / nb.name).is_file()
    assert list((site / "tango_core" / "_targets").glob("templates/**/*"))
