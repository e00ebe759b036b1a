from tango_core.report import Table


def test_table_html_and_text():
    t = Table([{"format": "onnx", "ms": 0.123456, "ok": True}, {"format": "tvm", "extra": None}], title="T")
    html = t._repr_html_()
    assert "<caption>T</caption>" in html and "<th>extra</th>" in html and "<td>0.1235</td>" in html
    assert "<td>yes</td>" in html and "<td>–</td>" in html
    text = str(t).splitlines()
    assert text[0] == "T" and text[1].split() == ["format", "ms", "ok", "extra"]


def test_table_escapes_html():
    assert "&lt;b&gt;" in Table([{"x": "<b>"}])._repr_html_()
