"""The labeler's static form: the current image with its labels, drawn with PIL."""

from __future__ import annotations

from PIL import Image, ImageDraw

from tango_core.data import Box

from .._static import pil_png
from ._session import LabelSession


def render_record(session: LabelSession, max_side: int = 640) -> bytes:
    ds, rec = session.ds, session.record
    colors = session.colors()
    with Image.open(ds.image_path(rec)) as im:
        img = im.convert("RGB")
    scale = min(1.0, max_side / max(img.size)) if max(img.size) > max_side else max(1.0, 256 / max(img.size))
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.NEAREST)
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)

    def colour(cls: int, alpha: int) -> tuple[int, int, int, int]:
        name = ds.classes[cls] if 0 <= cls < len(ds.classes) else None
        hexa = colors.get(name, "#ff0000")
        return int(hexa[1:3], 16), int(hexa[3:5], 16), int(hexa[5:7], 16), alpha

    for shape in (*rec.boxes, *rec.polygons):
        if isinstance(shape, Box):
            xy = [shape.x1 * scale, shape.y1 * scale, shape.x2 * scale, shape.y2 * scale]
            draw.rectangle(xy, outline=colour(shape.cls, 255), fill=colour(shape.cls, 40), width=2)
            anchor = (xy[0] + 2, xy[1] + 1)
        else:
            pts = [(x * scale, y * scale) for x, y in shape.points]
            draw.polygon(pts, outline=colour(shape.cls, 255), fill=colour(shape.cls, 50))
            anchor = (pts[0][0] + 2, pts[0][1] + 1)
        if 0 <= shape.cls < len(ds.classes):
            draw.text(anchor, ds.classes[shape.cls], fill=colour(shape.cls, 255))
    img = Image.alpha_composite(img.convert("RGBA"), overlay)
    done, total = session.progress
    caption = f"{rec.file}"
    if ds.task == "classification":
        caption += f" · label: {ds.classes[rec.label] if rec.label is not None else 'none'}"
    caption += f" · {done} of {total} labeled"
    sheet = Image.new("RGB", (img.width, img.height + 18), "white")
    sheet.paste(img, (0, 0))
    ImageDraw.Draw(sheet).text((4, img.height + 3), caption, fill="black")
    return pil_png(sheet)
