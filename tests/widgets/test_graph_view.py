"""The graph viewer: node pop-ups driven from the fake front-end, static drawing."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tango_core.errors import UnknownNameError
from tango_core.graph import model_graph
from tango_widgets import GraphViewer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cifar_graph():
    return model_graph("resnet-cifar20", depth=3)


def test_graph_is_sent_once_as_plain_state(frontend, cifar_graph):
    viewer = GraphViewer(None, graph=cifar_graph)
    state = viewer.get_state()
    assert state["graph"]["name"] == "resnet-cifar20"
    assert [n["id"] for n in state["graph"]["nodes"]][:3] == ["x", "conv1", "bn1"]
    assert "export default" in state["_esm"] and ".tango-graph-popup" in state["_css"]
    assert state["selected"] == "" and state["zoom"] == 0.0  # 0: fit to the width when first drawn


def test_clicking_nodes_opens_their_inside_and_drills_down(frontend, cifar_graph):
    viewer = GraphViewer(None, graph=cifar_graph)
    frontend.set(viewer, selected="layer1")  # what a click on the node sends
    d = viewer.details
    assert d["type"] == "Sequential" and d["inside"] == ["_BasicBlock ×3"]
    assert d["params"] == cifar_graph.node("layer1").params and d["shape"] == [1, 16, 32, 32]
    frontend.set(viewer, selected="layer1/_0")  # a click inside the pop-up
    d = viewer.details
    assert d["repeat"] == 3 and d["members"] == ["_0", "_1", "_2"]
    assert {"Conv2d", "BatchNorm2d", "add", "relu"} <= set(d["inside"])
    frontend.set(viewer, selected="")  # the pop-up's close button
    assert viewer.details is None


def test_python_side_selection_reaches_the_browser(frontend, cifar_graph):
    viewer = GraphViewer(None, graph=cifar_graph)
    viewer.select(["layer2", "_0"])
    assert {"selected": "layer2/_0"} in frontend.updates(viewer)
    with pytest.raises(UnknownNameError, match="graph node 'nope'"):
        viewer.select("layer2/nope")
    assert viewer.selected == "layer2/_0"


def test_zoom_and_pan_from_the_browser(frontend, cifar_graph):
    viewer = GraphViewer(None, graph=cifar_graph)
    frontend.set(viewer, zoom=0.5, pan=[10.0, -300.0])
    assert viewer.zoom == 0.5 and viewer.pan == [10.0, -300.0]
    viewer.zoom = 99
    assert viewer.zoom == 4.0


def test_model_name_builds_the_graph(frontend):
    viewer = GraphViewer("resnet-cifar20", depth=2)
    assert viewer.graph["params"] == 269_722
    assert viewer.model_graph.node("layer3").children is not None


def test_static_png_and_html(frontend, cifar_graph):
    viewer = GraphViewer(None, graph=cifar_graph)
    bundle = viewer._repr_mimebundle_()
    img = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert img.height > img.width > 100  # top-to-bottom drawing
    page = bundle["text/html"]
    assert "270k parameters" in page and "<img" in page and "layer3" in page
    assert "application/vnd.jupyter.widget-view+json" in bundle
