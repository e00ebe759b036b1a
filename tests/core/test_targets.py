import pytest
import yaml
from typer.testing import CliRunner

from tango_core import targets as T
from tango_core.cli import app
from tango_core.errors import ConfigError, UnknownNameError

SEED_TARGETS = ["aws-ecs", "gcp-cloud-run", "kt-cloud", "k8s", "pc-nvidia", "comma-3x", "jetson-agx-orin",
                "jetson-agx-xavier", "jetson-nano", "galaxy-s23", "galaxy-s22", "rpi5-coral", "odroid-n2",
                "odroid-m1", "x86-cpu"]


@pytest.fixture(autouse=True)
def fresh_catalog(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("TANGO_TARGETS_PATH", raising=False)
    T.reload_catalog()
    yield
    T.reload_catalog()


def test_catalog_has_every_seed_target():
    assert sorted(T.list_targets()) == sorted(SEED_TARGETS)


@pytest.mark.parametrize("tid", SEED_TARGETS)
def test_every_target_is_complete(tid):
    t = T.get_target(tid)
    assert t.runtimes and all(r in T.RUNTIMES for r in t.runtimes)
    assert t.kind in T.KINDS and t.cpu in T.CPUS and t.accelerator in T.ACCELERATORS
    assert t.deploy.get("package") in T.PACKAGES
    assert t.source.endswith(f"{tid}.yaml")


def test_seed_runtime_preferences():
    assert T.get_target("galaxy-s23").runtimes == ["tflite"]
    assert T.get_target("odroid-m1").runtimes == ["rknn"]
    assert T.get_target("jetson-nano").runtimes[0] == "tensorrt"
    assert T.get_target("x86-cpu").cpu_only


def test_kinds_filter():
    assert set(T.list_targets("cloud")) == {"aws-ecs", "gcp-cloud-run", "kt-cloud"}


def test_unknown_target_suggests():
    with pytest.raises(UnknownNameError, match="jetson-nano"):
        T.get_target("jetson-nan")


def _write(path, **over):
    data = T.get_target("odroid-n2").to_dict()
    data.update(id="my-board", name="My board")
    data.update(over)
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_adds_a_target_by_writing_one_file(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    _write(folder / "my-board.yaml", memory_gb=2)
    monkeypatch.setenv("TANGO_TARGETS_PATH", str(folder))
    T.reload_catalog()
    assert T.get_target("my-board").memory_gb == 2


def test_user_adds_a_target_by_calling_one_function(tmp_path):
    data = T.get_target("odroid-n2").to_dict()
    data.update(id="board-2", name="Board 2")
    t = T.register_target(data, save_to=tmp_path)
    assert T.get_target("board-2") is t
    assert T.load_target_file(tmp_path / "board-2.yaml").name == "Board 2"


@pytest.mark.parametrize("over, field", [
    ({"kind": "spaceship"}, "kind"),
    ({"runtimes": ["onnx", "caffe"]}, "runtimes[1]"),
    ({"memory_gb": -4}, "memory_gb"),
    ({"cpu": "mips"}, "cpu"),
    ({"name": None}, "name"),
    ({"colour": "red"}, "colour"),
    ({"deploy": {"package": "floppy"}}, "deploy.package"),
    ({"id": "Has Spaces"}, "id"),
])
def test_malformed_target_file_names_the_field(tmp_path, over, field):
    path = _write(tmp_path / "bad.yaml", **over)
    with pytest.raises(ConfigError) as err:
        T.load_target_file(path)
    assert err.value.field == field
    assert str(path) in str(err.value)


def test_cli_lists_shows_and_checks(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["targets", "list"])
    assert out.exit_code == 0 and "rpi5-coral" in out.output
    out = runner.invoke(app, ["targets", "show", "galaxy-s22"])
    assert out.exit_code == 0 and '"tflite"' in out.output
    out = runner.invoke(app, ["targets", "check", str(_write(tmp_path / "x.yaml"))])
    assert out.exit_code == 0 and "ok" in out.output
