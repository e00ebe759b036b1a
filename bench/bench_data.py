"""Data-layer timings, each against a baseline measured in the same run (reported as a ratio).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_data.py [--n 300] [--size 64]

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core.data import Box, analyse, convert, export_dataset, import_dataset, make_sample  # noqa: E402


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tango-bench-data-"))
    rows = []
    counter = iter(range(10**6))

    def sample():
        make_sample("shapes", tmp / f"s{next(counter)}", n=args.n, size=args.size, task="detection")

    def png_baseline():  # the least any generator must do: encode and write n noisy images
        out = tmp / f"png{next(counter)}"
        out.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)).save(
                buf, "PNG", compress_level=1)
            (out / f"{i}.png").write_bytes(buf.getvalue())

    t, b = best(sample), best(png_baseline)
    rows.append((f"make_sample shapes, {args.n} x {args.size}px", t, "encode + write as many noisy PNGs", b))

    ds = make_sample("shapes", tmp / "big", n=50, size=32, task="detection")
    while len(ds) < 1000:  # 1000 records of 5 boxes, sharing 50 files: only the store size matters
        rec = ds.records[len(ds) % 50]
        new = ds.add_image(ds.image_path(rec), name=f"copy/{len(ds)}.png", check=False, durable=False)
        for k in range(5):
            ds.add_box(new.id, Box(k % 5, k, k, k + 10.5, k + 12.25))

    def plain_write():
        (tmp / "plain.json").write_text(json.dumps(ds.to_dict()))

    t, b = best(ds.save, 5), best(plain_write, 5)
    rows.append(("Dataset.save(), 1000 images x 5 boxes (atomic + fsync)", t, "json.dumps + plain write", b))

    det = make_sample("shapes", tmp / "det", n=args.n, size=args.size, task="detection")
    paths = [det.image_path(r) for r in det]

    def decode_all():
        for p in paths:
            Image.open(p).load()

    t, b = best(lambda: analyse(det)), best(decode_all)
    rows.append((f"analyse(), {args.n} images", t, "decode every image with PIL", b))

    def round_trip():
        n = next(counter)
        yolo = export_dataset(det, tmp / f"yolo{n}", "yolo")
        convert(yolo, tmp / f"coco{n}", dst_format="coco")

    def copy_store():
        shutil.copytree(det.root, tmp / f"copy{next(counter)}")

    t, b = best(round_trip), best(copy_store)
    rows.append((f"export YOLO + convert YOLO -> COCO, {args.n} images", t, "copy the store folder", b))

    coco = export_dataset(det, tmp / "coco-in", "coco")
    t = best(lambda: import_dataset(coco, tmp / f"imp{next(counter)}"))
    rows.append((f"import_dataset COCO, {args.n} images", t, "copy the store folder", b))

    print("| operation | time | baseline | baseline time | ratio |")
    print("|---|---|---|---|---|")
    for name, t, base, bt in rows:
        print(f"| {name} | {t * 1000:.1f} ms | {base} | {bt * 1000:.1f} ms | {t / bt:.1f}x |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
