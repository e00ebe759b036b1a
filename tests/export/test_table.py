"""The format table: every runtime of the target catalog is a format, options are checked."""

from __future__ import annotations

import pytest

from tango_core.errors import ConfigError, UnknownNameError
from tango_core.export import get_format, list_formats
from tango_core.export._table import BUILDERS, load_table
from tango_core.targets import RUNTIMES

pytestmark = pytest.mark.unit


def test_every_runtime_of_the_catalog_is_a_format_with_a_builder():
    formats = list_formats()
    assert set(RUNTIMES) | {"saved_model"} == set(formats)
    for name in formats:
        assert name in BUILDERS, f"format {name} has no builder"
        spec = get_format(name)
        assert spec.suffix and spec.precisions and "imgsz" in spec.options
        if not spec.runs_here:
            assert spec.verify_with in formats, f"{name} runs nowhere here and names nothing to verify"


def test_unknown_format_suggests_the_closest():
    with pytest.raises(UnknownNameError) as err:
        get_format("onxx")
    assert "'onnx'" in str(err.value)


def test_unknown_option_is_rejected_with_a_suggestion():
    with pytest.raises(UnknownNameError) as err:
        get_format("onnx").validate({"opsett": 13})
    assert "'opset'" in str(err.value)


def test_option_of_another_format_says_where_it_belongs():
    with pytest.raises(UnknownNameError) as err:
        get_format("tflite").validate({"opset": 13})
    assert "is an option of" in str(err.value) and "onnx" in str(err.value)


@pytest.mark.parametrize("options, field", [
    ({"opset": "thirteen"}, "opset"),
    ({"opset": 7}, "opset"),
    ({"batch": 0}, "batch"),
    ({"dynamic": "maybe"}, "dynamic"),
    ({"imgsz": [32, 32, 3]}, "imgsz"),
    ({"imgsz": 4}, "imgsz"),
    ({"precision": "int4"}, "precision"),
])
def test_bad_option_values_name_the_option(options, field):
    with pytest.raises(ConfigError) as err:
        get_format("onnx").validate(options)
    assert err.value.field == field


def test_precision_must_be_one_the_format_has():
    with pytest.raises(ConfigError) as err:
        get_format("saved_model").validate({"precision": "int8"})
    assert "fp32" in str(err.value)


def test_values_are_coerced_and_defaults_filled():
    opts = get_format("onnx").validate({"imgsz": "48x64", "opset": "13", "dynamic": "true"})
    assert opts["imgsz"] == [48, 64] and opts["opset"] == 13 and opts["dynamic"] is True
    assert opts["precision"] == "fp32" and opts["simplify"] is True
    assert get_format("tensorrt").validate({})["precision"] == "fp16"
    assert get_format("edgetpu").validate({})["precision"] == "int8"


def test_a_broken_table_names_the_field(tmp_path):
    bad = tmp_path / "formats.yaml"
    bad.write_text("options: {imgsz: {type: imgsz}}\nformats:\n  x:\n    description: d\n    suffix: .x\n")
    with pytest.raises(ConfigError) as err:
        load_table(bad)
    assert err.value.field == "formats.x.runtime"
    bad.write_text("options: {imgsz: {type: imgsz}}\nformats:\n  x: {description: d, suffix: .x, runtime: r, "
                   "extra: null, gpu: false, runs_here: true, precisions: [fp32], options: [imgsz, opset]}\n")
    with pytest.raises(ConfigError) as err:
        load_table(bad)
    assert "opset" in str(err.value)
