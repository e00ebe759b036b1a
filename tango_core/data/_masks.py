"""COCO run-length encoding and exact mask -> polygon tracing (no OpenCV needed).

Masks come back as polygons along pixel edges, so rasterising the polygon with
:meth:`Polygon.mask` gives back exactly the mask's pixels (holes are filled: a polygon
has no holes).
"""

from __future__ import annotations

import numpy as np


def rle_decode(rle: dict) -> np.ndarray:
    """A COCO RLE (``{"size": [h, w], "counts": list | str}``) to a ``(h, w)`` bool mask."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = _decode_counts(counts.decode() if isinstance(counts, bytes) else counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h} x {w} = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True  # runs alternate, starting with background
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T  # COCO runs go down the columns


def rle_encode(mask: np.ndarray, compress: bool = True) -> dict:
    """A bool mask to COCO RLE, compressed (string counts) like pycocotools by default."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": _encode_counts(counts) if compress else counts}


def _decode_counts(s: str) -> list[int]:
    # pycocotools' LEB128 variant: 5 bits a char offset by 48, sign in bit 4 of the last char,
    # and from the third run on each count is stored as a difference to the count two before.
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _encode_counts(counts: list[int]) -> str:
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def polygon_mask(points, width: int, height: int) -> np.ndarray:
    """Even-odd fill of a polygon: a pixel is in when its centre is (ties go to the left/top edge).

    Vectorised over rows: every edge crossing a row's centre line toggles the fill from the
    first pixel centre at or right of the crossing, and a cumulative sum applies the toggles.
    """
    out = np.zeros((int(height), int(width) + 1), dtype=np.int32)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3 or height <= 0 or width <= 0:
        return np.zeros((int(height), int(width)), dtype=bool)
    x0, y0 = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    ys = np.arange(int(height))[:, None] + 0.5
    crosses = (y0 <= ys) != (y1 <= ys)  # half-open, so a vertex on the line counts once
    rows, edge = np.nonzero(crosses)
    t = (ys[rows, 0] - y0[edge]) / (y1[edge] - y0[edge])
    xc = x0[edge] + t * (x1[edge] - x0[edge])
    cols = np.clip(np.ceil(xc - 0.5), 0, width).astype(np.int64)
    np.add.at(out, (rows, cols), 1)
    return (np.cumsum(out, axis=1)[:, : int(width)] % 2).astype(bool)


# directions on the pixel-corner grid (x right, y down) and the turn order that hugs the inside
_DIRS = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}


def mask_to_polygons(mask: np.ndarray, min_area: float = 1.0) -> list[list[tuple[float, float]]]:
    """Outer boundaries of the 4-connected regions of ``mask``, as pixel-corner polygons.

    Every boundary edge is directed with the inside on its right; at a corner where two
    regions touch diagonally the walk turns right first, which keeps those regions apart.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    inside = m[1:-1, 1:-1]
    rows, cols = np.nonzero(inside & ~m[:-2, 1:-1])  # top edges: (c, r) -> (c+1, r)
    edges = [(c, r, 1, 0) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    rows, cols = np.nonzero(inside & ~m[1:-1, 2:])  # right edges: (c+1, r) -> (c+1, r+1)
    edges += [(c + 1, r, 0, 1) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    rows, cols = np.nonzero(inside & ~m[2:, 1:-1])  # bottom edges: (c+1, r+1) -> (c, r+1)
    edges += [(c + 1, r + 1, -1, 0) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    rows, cols = np.nonzero(inside & ~m[1:-1, :-2])  # left edges: (c, r+1) -> (c, r)
    edges += [(c, r + 1, 0, -1) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]

    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for x, y, dx, dy in edges:
        outgoing.setdefault((x, y), []).append((dx, dy))
    polygons = []
    for x0, y0, dx0, dy0 in edges:
        if (dx0, dy0) not in outgoing.get((x0, y0), ()):
            continue  # already walked
        loop = []
        x, y, dx, dy = x0, y0, dx0, dy0
        while True:
            outgoing[(x, y)].remove((dx, dy))
            loop.append((x, y, dx, dy))
            x, y = x + dx, y + dy
            options = outgoing.get((x, y), [])
            if not options:
                break
            # right turn, then straight, then left (y points down, so right of (dx, dy) is (-dy, dx))
            rank = {(-dy, dx): 0, (dx, dy): 1, (dy, -dx): 2}
            dx, dy = min(options, key=lambda d: rank.get(d, 3))
        corners = [(float(px), float(py)) for i, (px, py, ddx, ddy) in enumerate(loop)
                   if (ddx, ddy) != (loop[i - 1][2], loop[i - 1][3])]
        area = _signed_area(corners)
        if area >= min_area:  # outer boundaries run clockwise on screen (positive); holes negative
            polygons.append(corners)
    return polygons


def _signed_area(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    p = np.asarray(points)
    x, y = p[:, 0], p[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2
