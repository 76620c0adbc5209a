"""Box geometry, one home: IoU and intersection tests, a uniform-grid spatial index over boxes,
and pairwise measures on candidate pairs only.

Boxes are (n, 4) float arrays of (x, y, w, h) in pixels, top-left origin; a box covers the
closed rectangle [x, x + w] x [y, y + h]. The grid has square cells of ``cell`` px; cell (cx, cy)
is [cx * cell, (cx + 1) * cell) x [cy * cell, (cy + 1) * cell). Each box goes into every cell
its rectangle (grown by ``margin`` px a side) covers; two boxes are candidates when they share a
cell. Boxes whose grown rectangles overlap or touch always share the cell of a common point, so
the candidates are a superset of the overlapping pairs, and the work grows with the number of
boxes times the boxes per cell, not with the square of the number of boxes.

A box spanning more than ``MAX_CELLS`` cells, or with coordinates that are not finite or lie
beyond ``MAX_INDEX`` cells from the origin, is not put in the grid: it is compared with every
box directly (exact closed-rectangle overlap), which costs n per such box.
"""

from __future__ import annotations

import numpy as np

MAX_CELLS = 256
"""Most cells one box is put in; bigger boxes are compared with all boxes directly."""
MAX_INDEX = 2**30
"""Largest |cell index| in the grid (keeps the cell keys inside int64)."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (n, 4) and ``b`` (m, 4), both x, y, w, h in pixels (top-left).

    Continuous coordinates (no ``+1``, unlike the original's ``findIOU``): identical boxes give
    1.0 and boxes that only touch give 0.0. Returns an (n, m) float array; 0 where the union is 0.
    """
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.minimum(iou, 1.0)  # (y + h) - y may exceed h by a rounding step


def intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
               ) -> bool:
    """Whether boxes ``a`` and ``b`` (x, y, w, h) overlap with a positive area (touching edges
    do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def cell_size(xywh: np.ndarray, margin: float = 0.0, percentile: float = 90.0) -> float:
    """Grid cell side in px: the ``percentile`` of max(w, h) over finite boxes, plus the two
    margins, at least 1 px (1 px when there are no boxes)."""
    b = np.asarray(xywh, float).reshape(-1, 4)
    side = np.maximum(b[:, 2], b[:, 3])
    side = side[np.isfinite(side)]
    size = float(np.percentile(side, percentile)) + 2 * margin if side.size else 1.0
    return max(size, 1.0)


def grown(xywh: np.ndarray, margin: float) -> tuple[np.ndarray, ...]:
    """(x0, y0, x1, y1) px of the boxes grown by ``margin`` px a side: x - margin and
    (x + w) + margin, the same float operations as the callers' exact tests."""
    b = np.asarray(xywh, float).reshape(-1, 4)
    return (b[:, 0] - margin, b[:, 1] - margin,
            b[:, 0] + b[:, 2] + margin, b[:, 1] + b[:, 3] + margin)


def cell_ranges(xywh: np.ndarray, cell: float, margin: float) -> tuple[np.ndarray, ...]:
    """Per box: the first cell index along x and y covered by the grown box (int64), the number
    of cells along x and y (0 for boxes not in the grid), and whether the box is big (see the
    module). An inverted grown box (negative size) covers no cell; a box with a NaN coordinate
    overlaps nothing, so it is neither in the grid nor big."""
    x0, y0, x1, y1 = grown(xywh, margin)
    edges = np.stack([x0, y0, x1, y1]) / cell
    with np.errstate(invalid="ignore"):
        safe = (np.abs(edges) < MAX_INDEX).all(axis=0)
    idx = np.floor(np.where(safe, edges, 0.0)).astype(np.int64)
    nx, ny = np.maximum(idx[2] - idx[0] + 1, 0), np.maximum(idx[3] - idx[1] + 1, 0)
    gridded = safe & (nx * ny <= MAX_CELLS)
    big = ~gridded & ~np.isnan(edges).any(axis=0)
    return idx[0], idx[1], np.where(gridded, nx, 0), np.where(gridded, ny, 0), big


def cell_entries(xywh: np.ndarray, cell: float, margin: float) -> tuple[np.ndarray, ...]:
    """(box, cell key) per cell covered by each box in the grid, and the big-box mask. The key
    packs (cx, cy) into one int64."""
    cx0, cy0, nx, ny, big = cell_ranges(xywh, cell, margin)
    count = nx * ny
    box = np.repeat(np.arange(len(count)), count)
    local = np.arange(box.size) - np.repeat(np.cumsum(count) - count, count)
    cx = cx0[box] + local % nx[box]
    cy = cy0[box] + local // nx[box]
    key = ((cx + MAX_INDEX) << 31) | (cy + MAX_INDEX)
    return box, key, big


def pairs_in_cells(box: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) pair of entries' boxes sharing a cell key (a, b as given, possibly repeated
    across cells)."""
    order = np.argsort(key, kind="stable")
    box, key = box[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.size]
    end = np.repeat(ends, ends - starts)
    count = end - np.arange(key.size) - 1
    left = np.repeat(np.arange(key.size), count)
    right = left + 1 + np.arange(left.size) - np.repeat(np.cumsum(count) - count, count)
    return box[left], box[right]


def pairs_with_big(xywh: np.ndarray, big: np.ndarray, margin: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (big box, any other box) whose grown boxes overlap or touch, by direct test."""
    x0, y0, x1, y1 = grown(xywh, margin)
    first, second = [], []
    for i in np.flatnonzero(big):
        j = np.flatnonzero((x0 <= x1[i]) & (x0[i] <= x1) & (y0 <= y1[i]) & (y0[i] <= y1))
        j = j[j != i]
        first.append(np.full(j.size, i))
        second.append(j)
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(first), np.concatenate(second)


def candidate_pairs(xywh: np.ndarray, margin: float = 0.0, cell: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i, j), i < j, of boxes (x, y, w, h px, top-left) that share a grid cell
    once grown by ``margin`` px a side: every pair whose grown closed rectangles overlap or touch
    is included. Sorted by i, then j, without repeats. ``cell``: cell side in px (default
    :func:`cell_size`)."""
    b = np.asarray(xywh, float).reshape(-1, 4)
    n = len(b)
    cell = cell_size(b, margin) if cell is None else float(cell)
    if not cell > 0:
        raise ValueError(f"grid cell side {cell} px must be positive")
    box, key, big = cell_entries(b, cell, margin)
    a1, b1 = pairs_in_cells(box, key)
    a2, b2 = pairs_with_big(b, big, margin)
    a, c = np.concatenate([a1, a2]), np.concatenate([b1, b2])
    code = np.unique(np.minimum(a, c).astype(np.int64) * n + np.maximum(a, c))
    return code // max(n, 1), code % max(n, 1)


def neighbours(xywh: np.ndarray, margin: float = 0.0, cell: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """For each box i, its candidates j != i (see :func:`candidate_pairs`) in CSR form:
    ``indices[indptr[i]:indptr[i + 1]]``, ascending."""
    n = len(np.asarray(xywh).reshape(-1, 4))
    return pairs_csr(*candidate_pairs(xywh, margin, cell), n)


def pairs_csr(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of ``n`` boxes, each given once -> each box's partners in CSR form:
    ``indices[indptr[k]:indptr[k + 1]]``, ascending."""
    src, dst = np.concatenate([i, j]), np.concatenate([j, i])
    order = np.lexsort((dst, src))
    return np.searchsorted(src[order], np.arange(n + 1)), dst[order]


def pair_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area px^2 of row-aligned boxes ``a`` and ``b`` (k, 4), 0 when apart."""
    iw = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row-aligned boxes ``a`` and ``b`` (k, 4), in the float operations of
    :func:`box_iou` (so equal to its entries bit for bit); 0 where the union is 0, at
    most 1."""
    inter = pair_intersection(a, b)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.minimum(iou, 1.0)


def pair_ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area of row-aligned boxes ``a`` and ``b`` (k, 4);
    0 where the smaller area is not positive or a coordinate is NaN, at most 1."""
    inter = pair_intersection(a, b)
    small = np.minimum(a[:, 2] * a[:, 3], b[:, 2] * b[:, 3])
    ios = np.divide(inter, small, out=np.zeros_like(inter), where=(small > 0) & (inter >= 0))
    return np.minimum(ios, 1.0)
