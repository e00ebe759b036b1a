"""Run the model over images, folders, video files or a camera; write predictions.json and pictures.

    python -m app.predict photo.jpg images/ clip.mp4 --out runs/predict
    python -m app.predict 0 --max-frames 300          # camera index 0

Each input gives one record in ``predictions.json`` (a frame of a video or camera one record per
frame); annotated images go beside it (videos are written as annotated ``.mp4``).  Video and
camera need OpenCV (``pip install -r requirements-video.txt``); images need only Pillow.
An unreadable input is recorded with its error and the run goes on; the exit code is 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import processing
from .predictor import PackageError, Predictor


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SystemExit("video files and cameras need OpenCV: pip install -r requirements-video.txt") from None
    return cv2


def expand(sources: list[str], recursive: bool) -> Iterator[tuple[str, Any]]:
    """(kind, value) for each input: ("image", path), ("video", path), ("camera", index), ("missing", path)."""
    for src in sources:
        if src.isdigit() and not Path(src).exists():
            yield "camera", int(src)
            continue
        path = Path(src)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for p in sorted(path.glob(pattern)):
                if p.is_file() and processing.is_image(p):
                    yield "image", p
                elif p.is_file() and processing.is_video(p):
                    yield "video", p
        elif path.is_file():
            yield ("video" if processing.is_video(path) else "image"), path
        else:
            yield "missing", path


def frames(kind: str, value: Any, every: int, max_frames: int) -> Iterator[tuple[int, Any, float]]:
    """(frame index, RGB array, frames per second) of a video file or camera."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(value)
    if not cap.isOpened():
        raise OSError(f"cannot open {'camera' if kind == 'camera' else 'video'} {value}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    index = kept = 0
    try:
        while max_frames <= 0 or kept < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
                kept += 1
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fps / every
            index += 1
    finally:
        cap.release()


def _unique(out: Path, stem: str, suffix: str, used: set) -> Path:
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}{suffix}"
    used.add(name)
    return out / name


def run(args: argparse.Namespace) -> int:
    predictor = Predictor(backend=args.backend, threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = {"top_k": args.top_k, "conf": args.conf, "iou": args.iou, "max_det": args.max_det}
    records: list[dict[str, Any]] = []
    used: set = set()
    failed = 0
    started = time.perf_counter()
    for kind, value in expand(args.sources, args.recursive):
        if kind == "missing":
            records.append({"source": str(value), "error": "no such file, folder or camera"})
            failed += 1
            continue
        if kind == "image":
            try:
                result = predictor.predict(value, keep_masks=True, **options)
            except processing.BadImage as exc:
                records.append({"source": str(value), "error": str(exc)})
                failed += 1
                continue
            record = {"source": str(value), "frame": None, **processing.public(result)}
            if args.save_images:
                path = _unique(out, Path(value).stem, ".jpg", used)
                processing.draw(value, result, predictor.channels).save(path, quality=92)
                record["annotated"] = path.name
            records.append(record)
            continue
        writer = None
        label = f"camera{value}" if kind == "camera" else str(value)
        try:
            for index, rgb, fps in frames(kind, value, max(1, args.every), args.max_frames):
                result = predictor.predict(rgb, keep_masks=True, **options)
                records.append({"source": label, "frame": index, **processing.public(result)})
                if args.save_images:
                    cv2 = _cv2()
                    drawn = cv2.cvtColor(np.asarray(processing.draw(rgb, result)), cv2.COLOR_RGB2BGR)
                    if writer is None:
                        stem = f"camera{value}" if kind == "camera" else Path(value).stem
                        path = _unique(out, stem, ".mp4", used)
                        h, w = drawn.shape[:2]
                        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    writer.write(drawn)
        except OSError as exc:
            records.append({"source": label, "error": str(exc)})
            failed += 1
        finally:
            if writer is not None:
                writer.release()
    summary = {"model": predictor.name, "backend": predictor.backend_name, "task": predictor.task,
               "inputs": len(records), "failed": failed, "seconds": round(time.perf_counter() - started, 3)}
    tmp = out / ".predictions.json.tmp"
    tmp.write_text(json.dumps({"summary": summary, "predictions": records}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "predictions.json")
    print(json.dumps(summary))
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="+", help="image files, folders, video files, or a camera index (0, 1...)")
    p.add_argument("--out", default="runs/predict", help="output folder (predictions.json + annotated images)")
    p.add_argument("--no-images", dest="save_images", action="store_false", help="write predictions.json only")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of folder inputs")
    p.add_argument("--top-k", type=int, default=5, help="classification: how many classes to list")
    p.add_argument("--conf", type=float, default=None, help="detection: score threshold (default: the export's)")
    p.add_argument("--iou", type=float, default=None, help="detection: NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=None, help="detection: most boxes per image")
    p.add_argument("--every", type=int, default=1, help="video / camera: use every n-th frame")
    p.add_argument("--max-frames", type=int, default=0, help="video / camera: stop after this many frames (0: all)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's)")
    p.add_argument("--backend", default=None, help="another backend of this package (see tango-package.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (PackageError, ImportError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
