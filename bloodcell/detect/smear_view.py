"""Resizing a smear image for the detector without decoding it whole: :class:`ScaledSmear`.

Part of reading smear images (overview: :mod:`bloodcell.detect.smear_reader`). A ScaledSmear is a
SmearImage (smear_reader.open_smear) resized by a scale factor and used like a read-only uint8
(H, W, 3) array, in RGB order (the detector's) by default or BGR (OpenCV's, for overviews); it
decodes and caches a band of full-width rows at a time. Its pixels match OpenCV's whole-image
resize (area averaging when shrinking, bilinear when enlarging) because rows are combined with
OpenCV's own 1-D weights (``_resize_weights``: ``_linear_weights``, ``_area_taps``).
``scaled_size`` and ``interpolation`` are the size and method of any such resize (smear_reader's
``resize_smear`` uses them too). Coordinates are pixels, top-left origin, ranges half-open; sizes
are (width, height) and shapes (rows, columns, 3).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from bloodcell.common.tile import TILE_PX as TILE
from bloodcell.detect.smear_convert import BLOCK_VALUES

if TYPE_CHECKING:  # smear_reader imports this module
    from bloodcell.detect.smear_reader import SmearImage

BAND_ROWS = 2 * TILE
"""Rows of the resized image a ScaledSmear decodes and caches at least at a time."""


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) px of an image resized by ``scale``: round(side * scale), at least 1."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    return max(1, round(width * scale)), max(1, round(height * scale))


def interpolation(scale: float) -> int:
    """OpenCV interpolation for a resize by ``scale``: area when shrinking, else bilinear."""
    return cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (both > 0)."""
    return -(-n // multiple) * multiple


class ScaledSmear:
    """A SmearImage resized by ``scale``, used like a read-only uint8 (H, W, 3) array.

    ``shape`` is (round(height * scale), round(width * scale), 3), at least 1 px a side;
    ``view[y0:y1, x0:x1]`` (ints or slices with step >= 1 on the first two axes, any numpy
    index on the channel axis) returns a new array in ``order`` ("rgb", the detector's, or
    "bgr"), in pixels of the resized image, top-left origin. np.asarray(view) gives the whole
    image (for small ones only).

    Slices are cut from a cached band of full-width rows. A miss decodes the input rows under
    at least ``band_rows`` resized rows from the first one asked for (on to the end of the
    file's last strip or tile decoded, plus the rows the interpolation needs at the band's
    edges), converts and resizes them, and caches the result: walking a row of 224 px tiles
    left to right decodes the file once, and memory holds one band.

    Pixels: when the size does not change (scale 1) exactly those of read_smear(path) in RGB.
    Otherwise those of ``resize_smear(read_smear(path), scale)`` (area averaging when shrinking,
    bilinear when enlarging) within rounding, everywhere including band edges: rows are
    combined with OpenCV's own weights for the whole image's height and then resized along
    the row with cv2.resize, in float32. Tolerance (tested at scales 0.5, 0.37 and 1.7, with
    bands of 448 and 33 rows): no value differs by more than 1 grey level, and the mean
    absolute difference is below 0.2 (OpenCV rounds the whole-image resize in fixed point).
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, smear: SmearImage, scale: float, order: str = "rgb",
                 band_rows: int = BAND_ROWS) -> None:
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
        w, h = scaled_size(smear.width, smear.height, scale)
        self.smear, self.scale, self.order = smear, scale, order
        self.shape = (h, w, 3)
        self._band_rows = max(1, int(band_rows))
        self._same = (w, h) == (smear.width, smear.height)
        self._interp = interpolation(scale)
        if not self._same:
            self._taps, self._weights = _resize_weights(smear.height, h, self._interp)
            self._first, self._last = self._taps.min(axis=1), self._taps.max(axis=1)
        self._band: np.ndarray | None = None
        self._band_y0 = 0
        self._tail: np.ndarray | None = None
        self._tail_y0 = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: object) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-D image: {len(key)}")
        ky, kx = (*key[:2], slice(None), slice(None))[:2]
        y0, y1, rel_y = _axis_span(ky, self.shape[0])
        x0, x1, rel_x = _axis_span(kx, self.shape[1])
        if y1 > y0 and x1 > x0:
            block = self.rows(y0, y1)[:, x0:x1]
        else:
            block = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        return np.array(block[(rel_y, rel_x, *key[2:])])

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Resized rows y0..y1-1, full width: a read-only view of the cache (copy it to keep
        it past the next call)."""
        if not 0 <= y0 < y1 <= self.shape[0]:
            raise ValueError(f"rows {y0}..{y1} are empty or outside 0..{self.shape[0]}")
        band = self._band
        if band is None or y0 < self._band_y0 or y1 > self._band_y0 + len(band):
            self._fill(y0, y1)
        return self._band[y0 - self._band_y0 : y1 - self._band_y0]

    def _fill(self, y0: int, y1: int) -> None:
        """Cache resized rows from y0: at least to y1 and band_rows rows, and on as far as the
        input rows decoded (ending with a strip or tile) allow."""
        smear = self.smear
        self._band = None  # freed before the next band is decoded: memory holds one
        want = min(self.shape[0], max(y1, y0 + self._band_rows))
        if self._same:
            end = min(smear.height, round_up(want, smear.chunk_rows))
            band = smear._read(0, y0, smear.width, end, self.order, copy=False)
        else:
            i0 = int(self._first[y0])
            i1 = min(smear.height, round_up(int(self._last[want - 1]) + 1, smear.chunk_rows))
            end = int(np.searchsorted(self._last, i1 - 1, side="right"))
            src = self._input(i0, i1)
            band = self._resize(src, i0, y0, end)
            self._keep_tail(src, i0, end)
        band.flags.writeable = False
        self._band, self._band_y0 = band, y0

    def _input(self, i0: int, i1: int) -> np.ndarray:
        """Input rows i0..i1-1, full width, converted to ``order``; rows that the previous band
        decoded and the next one needs again (interpolation overlap) are reused."""
        smear, tail, t0 = self.smear, self._tail, self._tail_y0
        if tail is None or not t0 <= i0 < t0 + len(tail):
            return smear._read(0, i0, smear.width, i1, self.order, copy=False)
        if i1 <= t0 + len(tail):
            return tail[i0 - t0 : i1 - t0]
        rest = smear._read(0, t0 + len(tail), smear.width, i1, self.order, copy=False)
        return np.concatenate([tail[i0 - t0 :], rest])

    def _keep_tail(self, src: np.ndarray, i0: int, end: int) -> None:
        """Keep the input rows from the first one resized row ``end`` needs (a few rows)."""
        if end >= self.shape[0]:
            self._tail = None
            return
        start = int(self._first[end])
        self._tail = src[start - i0 :].copy() if start - i0 < len(src) else None
        self._tail_y0 = start

    def _resize(self, src: np.ndarray, i0: int, j0: int, j1: int) -> np.ndarray:
        """Resized rows j0..j1-1 from full-width input rows ``src`` that start at input row i0:
        a weighted sum of rows, then cv2.resize along the row, in float32, blocks of rows."""
        w_out = self.shape[1]
        out = np.empty((j1 - j0, w_out, 3), np.uint8)
        step = max(1, BLOCK_VALUES // 4 // (src.shape[1] * 3))
        for a in range(j0, j1, step):
            b = min(j1, a + step)
            taps, weights = self._taps[a:b] - i0, self._weights[a:b]
            acc = src[taps[:, 0]] * weights[:, 0, None, None]
            for k in range(1, taps.shape[1]):
                acc += src[taps[:, k]] * weights[:, k, None, None]
            if w_out != src.shape[1]:
                acc = cv2.resize(acc, (w_out, b - a), interpolation=self._interp)
            out[a - j0 : b - j0] = np.clip(np.rint(acc), 0, 255)
        return out


def _axis_span(key: object, n: int) -> tuple[int, int, int | slice]:
    """The range lo..hi-1 that an int or a slice (step >= 1) selects on an axis of n px, and
    the same index relative to lo."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        i = int(key) + (n if key < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {key} is out of bounds for an axis of {n} px")
        return i, i + 1, 0
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        if step < 1:
            raise IndexError("ScaledSmear slices need a step >= 1")
        stop = max(start, stop)
        return start, stop, slice(0, stop - start, step)
    raise TypeError(f"ScaledSmear takes ints and slices on its first two axes, got {key!r}")


def _resize_weights(n_in: int, n_out: int, interp: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's 1-D resize of n_in samples to n_out as (taps, weights), both (n_out, k):
    output i = sum over k of weights[i, k] * input[taps[i, k]] (unused taps: weight 0)."""
    if interp == cv2.INTER_LINEAR:
        return _linear_weights(n_in, n_out)
    rows = _area_taps(n_in, n_out)
    k = max(len(r) for r in rows)
    taps = np.zeros((n_out, k), np.int64)
    weights = np.zeros((n_out, k), np.float32)
    for i, row in enumerate(rows):
        taps[i] = row[0][0]
        for j, (t, w) in enumerate(row):
            taps[i, j], weights[i, j] = t, w
    return taps, weights


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.INTER_LINEAR: pixel centres aligned, input position (i + 0.5) * n_in / n_out - 0.5
    computed in float32 as OpenCV does, edge samples repeated."""
    scale = 1.0 / (n_out / n_in)
    pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    base = np.floor(pos)
    frac = pos - base
    base = base.astype(np.int64)
    taps = np.clip(np.stack([base, base + 1], axis=1), 0, n_in - 1)
    return taps, np.stack([1 - frac, frac], axis=1).astype(np.float32)


def _area_taps(n_in: int, n_out: int) -> list[list[tuple[int, float]]]:
    """cv2.INTER_AREA when shrinking (OpenCV's computeResizeAreaTab): each output sample
    averages the input interval [i, i + 1) * n_in / n_out it covers, partial samples weighted
    by the part covered."""
    scale = 1.0 / (n_out / n_in)
    rows = []
    for i in range(n_out):
        f1 = i * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s2 = min(math.floor(f2), n_in - 1)
        s1 = min(math.ceil(f1), s2)
        row = [(s1 - 1, (s1 - f1) / cell)] if s1 - f1 > 1e-3 else []
        row += [(s, 1.0 / cell) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            row.append((s2, min(f2 - s2, 1.0, cell) / cell))
        rows.append(row)
    return rows
