"""The labeler, driven headless: canvas messages and control clicks as a browser sends them;
every assertion on labels reads the store back from disk."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from tango_core.data import Box, Dataset, Polygon, import_dataset, load_dataset
from tango_core.errors import ConfigError
from tango_widgets import Labeler

pytestmark = pytest.mark.unit


def _png(w: int, h: int, shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (shade, 100, 200 - shade)).save(buf, "PNG")
    return buf.getvalue()


def make_dataset(root, task="detection", n=3, classes=("cat", "dog")) -> Dataset:
    ds = Dataset.create(root, task=task, classes=list(classes))
    for i in range(n):
        ds.add_image(_png(64, 48, 40 * i), name=f"img{i}.png")
    ds.save()
    return ds


def on_disk(ds: Dataset):
    return load_dataset(ds.root)


def key(frontend, lab, k, ctrl=False, shift=False):
    frontend.send(lab.canvas, {"op": "key", "key": k, "ctrl": ctrl, "shift": shift})


@pytest.fixture
def det(tmp_path, frontend):
    ds = make_dataset(tmp_path / "det")
    return ds, Labeler(ds)


def test_image_is_sent_once_and_edits_send_only_shapes(det, frontend):
    ds, lab = det
    assert lab.canvas.image == (ds.root / ds.records[0].file).read_bytes()
    assert lab.canvas.image_size == [64, 48]

    def image_messages():
        return sum(1 for kind, d, bufs in frontend.sent(lab.canvas) if kind == "comm_msg" and bufs)

    before = image_messages()
    n_updates = len(frontend.updates(lab.canvas))
    frontend.send(lab.canvas, {"op": "add_box", "box": [4, 5, 30, 40]})
    assert image_messages() == before                       # no image re-sent for an edit
    assert len(frontend.updates(lab.canvas)) == n_updates + 1  # one batched update per edit
    frontend.click(lab._next)
    assert image_messages() == before + 1                   # a new image: sent once
    assert lab.canvas.image_id == ds.records[1].id


def test_draw_select_move_resize_delete_box(det, frontend):
    ds, lab = det
    frontend.send(lab.canvas, {"op": "add_box", "box": [30, 40, 4, 5]})  # dragged up-left
    box = on_disk(ds).records[0].boxes[0]
    assert (box.cls, box.xyxy) == (0, (4.0, 5.0, 30.0, 40.0))
    assert lab.canvas.selected == box.id and lab.canvas.shapes[0]["box"] == [4.0, 5.0, 30.0, 40.0]
    frontend.send(lab.canvas, {"op": "add_box", "box": [10, 10, 10.4, 30]})  # a click, not a box
    assert len(on_disk(ds).records[0].boxes) == 1
    frontend.send(lab.canvas, {"op": "select", "id": ""})
    assert lab.canvas.selected == ""
    frontend.send(lab.canvas, {"op": "select", "id": box.id})
    frontend.send(lab.canvas, {"op": "move", "id": box.id, "dx": 10, "dy": -2})
    assert on_disk(ds).records[0].boxes[0].xyxy == (14.0, 3.0, 40.0, 38.0)
    frontend.send(lab.canvas, {"op": "move", "id": box.id, "dx": 100, "dy": 100})  # stays inside the image
    assert on_disk(ds).records[0].boxes[0].xyxy == (38.0, 13.0, 64.0, 48.0)
    frontend.send(lab.canvas, {"op": "set_box", "id": box.id, "box": [50, 20, 10, 2]})  # resize past a corner
    assert on_disk(ds).records[0].boxes[0].xyxy == (10.0, 2.0, 50.0, 20.0)
    key(frontend, lab, "Delete")
    assert on_disk(ds).records[0].boxes == [] and lab.canvas.shapes == []


def test_editing_a_crowd_box_keeps_its_crowd_flag(tmp_path, frontend):
    ds = make_dataset(tmp_path / "crowd")
    ds.add_box(ds.records[0].id, Box(1, 4, 4, 30, 30, iscrowd=True))  # from a COCO file with iscrowd: 1
    ds.save()
    lab = Labeler(ds)
    box_id = on_disk(ds).records[0].boxes[0].id
    frontend.send(lab.canvas, {"op": "move", "id": box_id, "dx": 3, "dy": 2})
    frontend.send(lab.canvas, {"op": "set_box", "id": box_id, "box": [5, 5, 40, 44]})
    box = on_disk(ds).records[0].boxes[0]
    assert box.xyxy == (5.0, 5.0, 40.0, 44.0) and box.cls == 1 and box.iscrowd


def test_polygon_vertices_add_move_delete(tmp_path, frontend):
    ds = make_dataset(tmp_path / "seg", task="segmentation")
    lab = Labeler(ds)
    assert lab.canvas.tool == "polygon"
    frontend.send(lab.canvas, {"op": "add_polygon", "points": [[5, 5], [40, 5], [40, 30]]})
    poly = on_disk(ds).records[0].polygons[0]
    assert poly.points == [(5.0, 5.0), (40.0, 5.0), (40.0, 30.0)]
    frontend.send(lab.canvas, {"op": "insert_vertex", "id": poly.id, "index": 3, "x": 5, "y": 30})
    assert on_disk(ds).records[0].polygons[0].points[3] == (5.0, 30.0)
    frontend.send(lab.canvas, {"op": "move_vertex", "id": poly.id, "index": 0, "x": 2, "y": -9})
    assert on_disk(ds).records[0].polygons[0].points[0] == (2.0, 0.0)  # clamped to the image
    frontend.send(lab.canvas, {"op": "delete_vertex", "id": poly.id, "index": 1})
    assert on_disk(ds).records[0].polygons[0].points == [(2.0, 0.0), (40.0, 30.0), (5.0, 30.0)]
    frontend.send(lab.canvas, {"op": "delete_vertex", "id": poly.id, "index": 0})
    assert "only 3 vertices" in lab._status.value          # refused, with the reason shown
    assert len(on_disk(ds).records[0].polygons[0].points) == 3
    frontend.send(lab.canvas, {"op": "add_polygon", "points": [[1, 1], [2, 2]]})  # two points: no polygon
    assert len(on_disk(ds).records[0].polygons) == 1


def test_class_hotkeys_on_shapes_and_for_new_shapes(det, frontend):
    ds, lab = det
    frontend.send(lab.canvas, {"op": "add_box", "box": [4, 5, 30, 40]})
    key(frontend, lab, "2")
    assert on_disk(ds).records[0].boxes[0].cls == 1
    assert lab._classes.value == 1 and lab.canvas.current_class == 1
    frontend.send(lab.canvas, {"op": "select", "id": ""})
    frontend.send(lab.canvas, {"op": "add_box", "box": [40, 5, 60, 40]})
    assert on_disk(ds).records[0].boxes[1].cls == 1             # new shapes take the current class
    key(frontend, lab, "7")                                      # no 7th class: ignored
    assert lab.canvas.current_class == 1
    frontend.set(lab._classes, index=0)                          # the class bar, clicked
    assert on_disk(ds).records[0].boxes[1].cls == 0


def test_classification_labels_with_hotkeys(tmp_path, frontend):
    ds = make_dataset(tmp_path / "cls", task="classification", classes=("a", "b", "c"))
    lab = Labeler(ds)
    assert lab._tool.layout.display == "none"
    key(frontend, lab, "3")
    assert on_disk(ds).records[0].label == 2 and lab.canvas.label["cls"] == 2
    assert lab._progress_text.value == "1 of 3 labeled" and lab._progress.value == 1
    key(frontend, lab, "n")
    key(frontend, lab, "1")
    assert [r.label for r in on_disk(ds).records] == [2, 0, None]
    frontend.send(lab.canvas, {"op": "add_box", "box": [1, 1, 9, 9]})  # refused, with the reason shown
    assert "take a label, not boxes" in lab._status.value


def test_undo_redo_with_keys_and_buttons_across_images(det, frontend):
    ds, lab = det
    assert lab._undo.disabled and lab._redo.disabled
    frontend.send(lab.canvas, {"op": "add_box", "box": [4, 5, 30, 40]})
    key(frontend, lab, "2")
    frontend.click(lab._next)
    frontend.send(lab.canvas, {"op": "add_box", "box": [1, 1, 20, 20]})
    assert not lab._undo.disabled
    key(frontend, lab, "z", ctrl=True)
    assert on_disk(ds).records[1].boxes == []
    key(frontend, lab, "z", ctrl=True)                          # the change was on the first image:
    assert lab.canvas.image_id == ds.records[0].id              # undo goes back to it
    assert on_disk(ds).records[0].boxes[0].cls == 0
    frontend.click(lab._undo)
    assert on_disk(ds).records[0].boxes == []
    assert lab._undo.disabled and not lab._redo.disabled
    key(frontend, lab, "z", ctrl=True, shift=True)
    assert len(on_disk(ds).records[0].boxes) == 1
    key(frontend, lab, "y", ctrl=True)
    assert on_disk(ds).records[0].boxes[0].cls == 1
    frontend.click(lab._redo)
    assert lab.canvas.image_id == ds.records[1].id and len(on_disk(ds).records[1].boxes) == 1
    frontend.send(lab.canvas, {"op": "add_box", "box": [30, 30, 40, 40]})  # a new edit clears redo
    assert lab._redo.disabled


def test_navigation_nudging_and_the_unlabeled_filter(det, frontend):
    ds, lab = det
    key(frontend, lab, "ArrowRight")                            # nothing selected: next image
    assert lab.canvas.image_id == ds.records[1].id and lab._position.value.startswith("2 / 3")
    frontend.send(lab.canvas, {"op": "add_box", "box": [10, 10, 20, 20]})
    key(frontend, lab, "ArrowRight")                            # selected: nudge 1 px
    key(frontend, lab, "ArrowDown", shift=True)                 # shift: 10 px
    assert on_disk(ds).records[1].boxes[0].xyxy == (11.0, 20.0, 21.0, 30.0)
    key(frontend, lab, "Escape")
    key(frontend, lab, "p")
    assert lab.canvas.image_id == ds.records[0].id
    key(frontend, lab, "u")                                     # unlabeled only
    assert lab._filter.value == "unlabeled"
    assert lab._position.value.startswith("1 / 2")
    frontend.click(lab._next)
    assert lab.canvas.image_id == ds.records[2].id              # image 1 is labelled: skipped
    frontend.click(lab._next)
    assert lab.canvas.image_id == ds.records[2].id              # the last one: stays
    frontend.set(lab._filter, index=0)                          # "all" clicked in the browser
    assert lab._position.value.startswith("3 / 3")
    frontend.click(lab._prev)
    assert lab.canvas.image_id == ds.records[1].id
    assert lab._progress_text.value == "1 of 3 labeled"


def test_tool_keys_and_tab_selection(det, frontend):
    ds, lab = det
    key(frontend, lab, "g")
    assert lab._tool.value == "polygon" and lab.canvas.tool == "polygon"
    key(frontend, lab, "v")
    assert lab.canvas.tool == "select"
    frontend.set(lab._tool, index=1)
    assert lab.canvas.tool == "box"
    a = lab.session.add_box(1, 1, 10, 10)
    b = lab.session.add_box(20, 20, 30, 30)
    key(frontend, lab, "Tab")
    assert lab.canvas.selected == a.id
    key(frontend, lab, "Tab")
    assert lab.canvas.selected == b.id


def test_class_management_add_rename_colour(det, frontend):
    ds, lab = det
    frontend.set(lab._new_name, value="bird")
    frontend.click(lab._add_class)
    assert on_disk(ds).classes == ["cat", "dog", "bird"]
    assert [label for label, _ in lab._classes.options] == ["1 cat", "2 dog", "3 bird"]
    frontend.click(lab._add_class)                               # the same name again
    assert "exists already" in lab._status.value and on_disk(ds).classes == ["cat", "dog", "bird"]
    key(frontend, lab, "3")
    frontend.set(lab._color, value="#00ff88")
    assert on_disk(ds).meta["class_colors"]["bird"] == "#00ff88"
    assert lab.canvas.classes[2] == {"name": "bird", "color": "#00ff88"}
    frontend.set(lab._new_name, value="eagle")
    frontend.click(lab._rename)
    stored = on_disk(ds)
    assert stored.classes == ["cat", "dog", "eagle"] and stored.meta["class_colors"] == {"eagle": "#00ff88"}
    with pytest.raises(ConfigError, match="'red' is not a colour.*#rrggbb"):
        lab.session.set_color("eagle", "red")
    key(frontend, lab, "z", ctrl=True)                           # class edits undo too
    assert on_disk(ds).classes == ["cat", "dog", "bird"]


def test_model_suggestions_are_editable(det, frontend):
    ds, lab = det
    frontend.send(lab.canvas, {"op": "add_box", "box": [1, 1, 9, 9]})  # image 0 is labelled

    def model(paths):
        assert [p.name for p in paths] == ["img1.png", "img2.png"]  # unlabeled images only
        return [[Box(1, 10, 10, 30, 30, score=0.9), Box(0, 40, 5, 60, 20, score=0.1)],
                [Box(0, 2, 2, 20, 20, score=0.8), Polygon(1, [(30, 5), (50, 5), (40, 30)], score=0.7)]]

    lab.model = model
    frontend.click(lab._suggest)
    key(frontend, lab, "n")
    sugg = [s for s in lab.canvas.shapes if s["suggestion"]]
    assert [(s["cls"], s["score"]) for s in sugg] == [(1, 0.9)]   # below min_score: dropped
    assert on_disk(ds).records[1].boxes == []                     # not a label until accepted
    frontend.send(lab.canvas, {"op": "select", "id": sugg[0]["id"]})
    key(frontend, lab, "Enter")                                   # accept the selected suggestion
    assert on_disk(ds).records[1].boxes[0].xyxy == (10.0, 10.0, 30.0, 30.0)
    assert on_disk(ds).records[1].boxes[0].score is None
    key(frontend, lab, "n")
    first = next(s for s in lab.canvas.shapes if s["suggestion"] and s["kind"] == "box")
    frontend.send(lab.canvas, {"op": "move", "id": first["id"], "dx": 5, "dy": 0})  # editing accepts it
    assert on_disk(ds).records[2].boxes[0].xyxy == (7.0, 2.0, 25.0, 20.0)
    poly = next(s for s in lab.canvas.shapes if s["suggestion"])
    frontend.send(lab.canvas, {"op": "select", "id": poly["id"]})
    key(frontend, lab, "Delete")                                  # rejected: gone, store untouched
    assert not any(s["suggestion"] for s in lab.canvas.shapes)
    assert on_disk(ds).records[2].polygons == []


def test_classification_suggestions_accept_all(tmp_path, frontend):
    ds = make_dataset(tmp_path / "cls", task="classification", classes=("a", "b"))
    lab = Labeler(ds, model=lambda paths: [(1, 0.8), (0, 0.9), (1, 0.1)])
    assert lab.prelabel() == 2
    assert lab.canvas.label == {"cls": None, "suggested": [1, 0.8]}
    key(frontend, lab, "a")
    assert on_disk(ds).records[0].label == 1
    frontend.click(lab._suggest)
    assert "no model" not in lab._status.value


def test_prelabel_without_a_model_says_what_to_do(det, frontend):
    ds, lab = det
    frontend.click(lab._suggest)
    assert "no model to make suggestions with" in lab._status.value and "train one first" in lab._status.value


def yolo_weights(path, model="yolov9-t", classes=("cat", "dog"), task="detection"):
    """A built (untrained) YOLO saved with tango's own save function and the metadata the trainer writes."""
    import torch

    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    torch.manual_seed(0)
    net = create_model(model, num_classes=len(classes))
    if task == "segmentation":  # untrained masks are empty; a coefficient bias gives them regions
        for branch in net.head.main.coef:
            torch.nn.init.constant_(branch[-1].bias, 3.0)
    return save_weights(net, path, task=task, classes=list(classes), imgsz=64, in_channels=3,
                        preprocess={"resize": "letterbox", "pad_value": 114, "scale": 1 / 255,
                                    "mean": [0.0] * 3, "std": [1.0] * 3},
                        postprocess={"nms_iou": 0.7, "conf": 0.25})


LOW = 0.0005  # an untrained model scores everything near its class prior


def test_detection_weights_prelabel_editable_boxes_in_image_pixels(det, frontend, tmp_path):
    from tango_core.detection import DetectionPredictor

    ds, lab = det
    weights = yolo_weights(tmp_path / "det.pt")
    lab.model = str(weights)
    frontend.click(lab._suggest)                                    # the default 0.25: nothing from this model
    assert not any(s["suggestion"] for s in lab.canvas.shapes) and "suggestions on 0 of 3" in lab._status.value
    frontend.set(lab._min_score, value=LOW)
    frontend.click(lab._suggest)
    assert "suggestions on 3 of 3 images" in lab._status.value
    expected = DetectionPredictor(weights, conf=LOW, agnostic=True, max_det=100)([ds.image_path(ds.records[0])])[0]
    sugg = [s for s in lab.canvas.shapes if s["suggestion"]]
    assert sugg and all(s["kind"] == "box" for s in sugg)
    assert [(s["cls"], s["box"], s["score"]) for s in sugg] == [
        (d.cls, list(d.box), d.score) for d in expected.detections]   # in the image's pixels (64 x 48)
    assert all(0 <= s["box"][0] <= s["box"][2] <= 64 and 0 <= s["box"][1] <= s["box"][3] <= 48 for s in sugg)
    assert on_disk(ds).records[0].boxes == []                       # suggestions are not labels yet
    frontend.send(lab.canvas, {"op": "select", "id": sugg[0]["id"]})
    key(frontend, lab, "Enter")                                     # accept the selected one
    stored = on_disk(ds).records[0].boxes
    assert [b.xyxy for b in stored] == [tuple(sugg[0]["box"])] and stored[0].score is None
    rest = [s for s in lab.canvas.shapes if s["suggestion"]]
    assert len(rest) == len(sugg) - 1
    if rest:                                                         # editing a suggestion accepts it
        frontend.send(lab.canvas, {"op": "move", "id": rest[0]["id"], "dx": -1000, "dy": -1000})
        moved = on_disk(ds).records[0].boxes[-1]
        w, h = rest[0]["box"][2] - rest[0]["box"][0], rest[0]["box"][3] - rest[0]["box"][1]
        assert moved.xyxy == pytest.approx((0, 0, w, h), abs=0.011)
    key(frontend, lab, "n")
    assert any(s["suggestion"] for s in lab.canvas.shapes)          # the next image has its own


def test_segmentation_weights_prelabel_polygons(tmp_path, frontend):
    ds = make_dataset(tmp_path / "seg", task="segmentation")
    weights = yolo_weights(tmp_path / "seg.pt", model="yolov9-t-seg", task="segmentation")
    lab = Labeler(ds, model=weights)
    assert lab.prelabel(min_score=LOW, max_per_image=3) == 3
    sugg = [s for s in lab.canvas.shapes if s["suggestion"]]
    assert 0 < len(sugg) <= 3 and all(s["kind"] == "polygon" and len(s["points"]) >= 3 for s in sugg)
    assert all(0 <= x <= 64 and 0 <= y <= 48 for s in sugg for x, y in s["points"])
    key(frontend, lab, "a")                                         # accept all of this image
    stored = on_disk(ds).records[0].polygons
    assert [[list(p) for p in q.points] for q in stored] == [s["points"] for s in sugg]
    det_ds = make_dataset(tmp_path / "det2")                       # a segmentation model on a box dataset
    assert Labeler(det_ds, model=weights).prelabel(min_score=LOW) == 3


def test_a_box_model_prelabels_a_segmentation_dataset_with_rectangles(tmp_path, frontend):
    ds = make_dataset(tmp_path / "seg", task="segmentation")
    lab = Labeler(ds, model=yolo_weights(tmp_path / "det.pt"))
    lab.prelabel(min_score=LOW, max_per_image=1)
    (s,) = [s for s in lab.canvas.shapes if s["suggestion"]]
    assert s["kind"] == "polygon" and len(s["points"]) == 4


def test_prelabel_refuses_models_of_another_task_or_other_classes(det, frontend, tmp_path):
    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    ds, lab = det
    cls_weights = save_weights(create_model("resnet-cifar20", num_classes=2), tmp_path / "cls.pt",
                               task="classification", classes=["cat", "dog"], imgsz=32, in_channels=3)
    lab.model = cls_weights
    frontend.click(lab._suggest)
    assert "a classification model cannot pre-label detection images" in lab._status.value
    lab.model = yolo_weights(tmp_path / "other.pt", classes=("car", "bus"))
    frontend.click(lab._suggest)
    assert "none of the model&#x27;s classes" in lab._status.value and "add the classes" in lab._status.value
    lab.model = tmp_path / "missing.pt"
    frontend.click(lab._suggest)
    assert "weights file not found" in lab._status.value
    cls_ds = make_dataset(tmp_path / "cls", task="classification")
    cls_lab = Labeler(cls_ds, model=yolo_weights(tmp_path / "det.pt"))
    frontend.click(cls_lab._suggest)
    assert "a detection model cannot pre-label classification images" in cls_lab._status.value
    assert not any(s["suggestion"] for s in lab.canvas.shapes)


def test_export_through_the_data_formats(det, frontend, tmp_path):
    ds, lab = det
    frontend.send(lab.canvas, {"op": "add_box", "box": [4, 5, 30, 40]})
    key(frontend, lab, "2")
    frontend.set(lab._export_format, index=lab._export_format.options.index("yolo"))
    frontend.set(lab._export_dest, value=str(tmp_path / "out"))
    frontend.click(lab._export)
    assert "exported yolo" in lab._status.value
    back = import_dataset(tmp_path / "out", tmp_path / "back", format="yolo")
    rec = next(r for r in back.records if r.boxes)
    assert back.classes == ["cat", "dog"] and rec.boxes[0].cls == 1
    assert rec.boxes[0].xyxy == pytest.approx((4.0, 5.0, 30.0, 40.0), abs=0.01)


def test_zoom_pan_and_fit(det, frontend):
    ds, lab = det
    frontend.set(lab.canvas, zoom=2.5, pan=[-10.0, 4.0])
    assert lab.canvas.zoom == 2.5 and lab.canvas.pan == [-10.0, 4.0]
    frontend.click(lab._fit)
    assert frontend.customs(lab.canvas)[-1] == {"cmd": "fit"}


def test_static_png_shows_the_labels(det, frontend):
    ds, lab = det
    frontend.send(lab.canvas, {"op": "add_box", "box": [4, 5, 30, 40]})
    bundle = lab._repr_mimebundle_()
    img = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")
    scale = img.width / 64
    red = img.getpixel((round(4 * scale), round(20 * scale)))    # the cat box's left edge, in cat's colour
    assert red[0] > 180 and red[1] < 80


def test_edits_survive_a_killed_kernel(tmp_path):
    ds = make_dataset(tmp_path / "det")
    script = textwrap.dedent(f"""
        import sys, os, signal
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r})
        from tango_widgets import Labeler
        lab = Labeler({str(ds.root)!r})
        lab._on_canvas_msg(None, {{"op": "add_box", "box": [4, 5, 30, 40]}}, [])
        lab._on_canvas_msg(None, {{"op": "key", "key": "2"}}, [])
        lab._on_canvas_msg(None, {{"op": "key", "key": "n"}}, [])
        lab._on_canvas_msg(None, {{"op": "add_box", "box": [1, 1, 9, 9]}}, [])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    stored = load_dataset(ds.root)
    assert stored.records[0].boxes[0].cls == 1 and stored.records[1].boxes[0].xyxy == (1.0, 1.0, 9.0, 9.0)


def test_many_shapes_one_message_per_edit(det, frontend):
    ds, lab = det
    for i in range(200):
        ds.add_box(ds.records[0].id, Box(i % 2, i % 50, i % 40, i % 50 + 10, i % 40 + 8))
    ds.save()
    lab = Labeler(ds)
    n = len(frontend.updates(lab.canvas))
    frontend.send(lab.canvas, {"op": "move", "id": lab.canvas.shapes[0]["id"], "dx": 1, "dy": 1})
    updates = frontend.updates(lab.canvas)[n:]
    assert len(updates) == 1 and len(updates[0]["shapes"]) == 200
