"""The deploy table: every package kind has a builder, every target a package, pins match what runs
here, and user fields are checked with errors that say what to do."""

from __future__ import annotations

from importlib import metadata

import pytest

from tango_core.deploy import get_package, list_packages
from tango_core.deploy._resolve import dns_name, resolve_fields
from tango_core.deploy._table import BUILDERS, load_table, table
from tango_core.errors import ConfigError, UnknownNameError
from tango_core.targets import PACKAGES, get_target, list_targets

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", PACKAGES)
def test_every_package_kind_has_a_row_and_a_builder(kind):
    assert kind in list_packages()
    assert kind in BUILDERS
    row = get_package(kind)
    assert row.runtimes, kind
    for rt in row.runtimes:
        assert rt in table().runtimes


@pytest.mark.parametrize("target_id", list_targets())
def test_every_target_maps_to_a_package_and_base_image(target_id):
    target = get_target(target_id)
    kind = get_package(target.deploy["package"])
    if kind.docker:
        base = table().base_image(target.deploy["base_image"], kind.runtimes[0], target.source)
        assert ":" in base["image"] and not base["image"].endswith(":latest")
        assert base["python"] in table().pins
    # at least one of the target's runtimes is something this kind can carry
    from tango_core.export import get_format

    carried = [f for f in target.runtimes if get_format(f).runtime in kind.runtimes]
    assert carried, f"{target_id}: none of {target.runtimes} fits a {kind.name} package"


def test_pins_for_this_python_are_the_installed_versions():
    """The 3.11 pins are what the tests run: an upgrade of the lock must update them too."""
    pins = table().pins["3.11"]
    checked = 0
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert installed.split("+")[0] == version, f"{name}: pinned {version}, installed {installed}"
        checked += 1
    assert checked >= 10


def test_every_requirement_has_a_pin_for_every_python_it_is_used_with():
    tab = table()
    for base in tab.base_images.values():
        for image in base.values():
            py = str(image["python"])
            for group in ("base", "server", "video"):
                for name in tab.requirements[group]:
                    assert tab.pin(py, name).startswith(f"{name}==")


def test_unknown_field_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match="registry"):
        resolve_fields(table(), get_target("x86-cpu"), {"registy": "x"}, None, "m")


def test_missing_required_field_names_the_target_file_and_the_fix():
    with pytest.raises(ConfigError) as err:
        resolve_fields(table(), get_target("gcp-cloud-run"), {"registry": "r.example/p", "region": "eu"}, None, "m")
    message = str(err.value)
    assert "project_id" in message and "gcp-cloud-run.yaml" in message and "-f project_id=" in message


@pytest.mark.parametrize("field, value", [("registry", "reg; rm -rf /"), ("namespace", "a b"), ("cpu", "two"),
                                          ("replicas", "many"), ("android_package", "Not.A-Package")])
def test_unsafe_or_malformed_field_values_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        resolve_fields(table(), get_target("x86-cpu"), {field: value}, None, "m")


def test_stored_fields_are_reused_and_the_caller_wins():
    stored = {"registry": "old.example/r", "region": "eu-west-1", "cluster": "c1"}
    fields = resolve_fields(table(), get_target("aws-ecs"), {"cluster": "c2"}, stored, "Model")
    assert fields["registry"] == "old.example/r" and fields["cluster"] == "c2" and fields["name"] == "model"


@pytest.mark.parametrize("text, name", [("My Model_v2", "my-model-v2"), ("123abc", "tango-123abc"), ("--", "tango"),
                                        ("a" * 80, "a" * 63)])
def test_dns_names(text, name):
    assert dns_name(text) == name


def test_a_broken_table_names_the_file_and_field(tmp_path):
    import shutil

    bad = tmp_path / "packages.yaml"
    shutil.copy(table().path, bad)
    bad.write_text(bad.read_text().replace("runtimes: [onnxruntime, openvino, litert, tvm, torchscript, tensorrt]",
                                           "runtimes: [onnxruntime, onnx-rt]"))
    with pytest.raises(ConfigError, match=r"packages\.server\.runtimes.*onnx-rt"):
        load_table(bad)
