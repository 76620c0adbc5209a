"""Cell outlines and measurements for detected cells (QuPath detections with measurements).

Each detected box is segmented with the extractors' threshold mask (bloodcell.dataset.masks.
cell_on_light: green channel below Otsu's threshold, the component covering the box's centre,
holes filled; gaps of a few px closed first, so a pale centre open to the edge is filled too),
kept inside the box's inscribed ellipse (slightly enlarged), which cuts off the parts of
touching neighbours that reach into the box's corners. Its outer contour, simplified to within
OUTLINE_TOLERANCE_PX, is the cell's outline; where no component is found the box itself is the
outline (``CellShape.source == "box"``).

Coordinates: the segmentation runs on the image the detector saw (its ``view``, at the model's
scale, where a red cell is about 34 px), and outlines and measurements are given in the
INPUT image's pixels (top-left origin, x right, y down: QuPath's convention) by dividing by the
resize ``factor`` (input -> view). With ``pixel_size`` (µm per input pixel) lengths are in µm
and areas in µm². Mean OD is the mean optical density over the cell's pixels and the three
channels, ``-log10(I / 255)`` with I clipped to 1..255 (0 = white, about 2.4 = black); channel
order (RGB or BGR) does not change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from bloodcell.dataset.masks import cell_on_light, close_gaps, fill_holes

OUTLINE_TOLERANCE_PX = 0.8
"""Largest distance, in view px, between a cell's contour and its simplified outline."""
TRACE_UPSAMPLE = 4
"""The mask is traced at this many times its size, so the outline follows pixel edges (to
1/8 px) rather than the centres of the border pixels (half a pixel inside)."""
CLOSE_PX = 3
"""Gaps narrower than about twice this (view px; an RBC is about 34 px) are closed before the
holes are filled, so a pale centre that reaches the cell's edge is still inside it."""
ELLIPSE_MARGIN = 1.1
"""The segmented cell is kept inside its box's inscribed ellipse enlarged by this factor."""
MIN_CELL_SHARE = 0.15
"""A segmented cell must cover at least this share of its box, else the box is the outline."""


@dataclass(frozen=True)
class CellShape:
    """One cell's outline (closed ring of (x, y) input px, first point repeated) and
    measurements (QuPath names: ``Area px^2`` or ``Area µm^2``, ``Perimeter px`` or
    ``Perimeter µm``, ``Mean OD``), and whether it came from the mask or the box."""

    ring: np.ndarray  # (K + 1, 2) float64, input px rounded to 0.01, first point repeated
    measurements: dict[str, float]
    source: str  # "mask" or "box"


def box_ring(x: float, y: float, w: float, h: float) -> list[list[float]]:
    """The closed rectangle ring of a box (x, y top-left, px), as [[x, y], ...]."""
    x0, y0, x1, y1 = (round(float(v), 2) + 0.0 for v in (x, y, x + w, y + h))
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def mean_od(pixels: np.ndarray) -> float:
    """Mean optical density of uint8 pixels (N, 3): mean of -log10(clip(I, 1, 255) / 255)."""
    if not len(pixels):
        return 0.0
    inten = np.clip(pixels.astype(np.float64), 1.0, 255.0)
    return float(np.mean(-np.log10(inten / 255.0)))


def contour_of(mask: np.ndarray) -> np.ndarray:
    """The outer contour (K, 2) float of a bool mask's largest region, simplified, in mask px
    where pixel (i, j) spans [j, j+1) x [i, i+1), in OpenCV's tracing order."""
    k = TRACE_UPSAMPLE
    big = cv2.resize(mask.astype(np.uint8), None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    found, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    best = max(found, key=cv2.contourArea)
    points = cv2.approxPolyDP(best, OUTLINE_TOLERANCE_PX * k, True).reshape(-1, 2)
    return (points.astype(np.float64) + 0.5) / k


def box_ellipse(shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of the ellipse inscribed in an (H, W) box, enlarged by ELLIPSE_MARGIN: a
    detected box bounds its cell tightly, so a touching neighbour's part of the threshold mask
    lies in the box's corners, outside it."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    ry, rx = ELLIPSE_MARGIN * h / 2, ELLIPSE_MARGIN * w / 2
    return ((yy + 0.5 - h / 2) / ry) ** 2 + ((xx + 0.5 - w / 2) / rx) ** 2 <= 1.0


def largest_part(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected part of a bool mask, or None when it is empty."""
    from bloodcell.dataset.masks import largest_component

    return largest_component(mask)


def units(pixel_size: float | None) -> tuple[str, str, float]:
    """(length unit, area unit, µm per input px or 1.0) for the measurement names."""
    if pixel_size is None:
        return "px", "px^2", 1.0
    return "µm", "µm^2", float(pixel_size)


def measure(crop: np.ndarray, mask: np.ndarray, ring_len_px: float, factor: float,
            pixel_size: float | None) -> dict[str, float]:
    """Area, perimeter (input px or µm) and mean OD of a cell: ``mask`` on ``crop`` (view px),
    ``ring_len_px`` its outline's length in view px; ``factor``: input -> view."""
    length, area, size = units(pixel_size)
    px = size / factor  # µm (or input px) per view px
    return {f"Area {area}": round(float(mask.sum()) * px * px, 2),
            f"Perimeter {length}": round(ring_len_px * px, 2),
            "Mean OD": round(mean_od(crop[mask]), 4)}


def cell_shape(view, box: tuple[float, float, float, float], factor: float,
               pixel_size: float | None = None) -> CellShape:
    """Outline and measurements of the cell in ``box`` (x, y, w, h input px, top-left).

    ``view``: the image at the model's scale (uint8 (H, W, 3) array or smear_view.ScaledSmear),
    ``factor``: input -> view resize factor."""
    x, y, w, h = box
    height, width = view.shape[:2]
    x0, y0 = max(0, int(np.floor(x * factor))), max(0, int(np.floor(y * factor)))
    x1 = min(width, int(np.ceil((x + w) * factor)))
    y1 = min(height, int(np.ceil((y + h) * factor)))
    crop = np.asarray(view[y0:y1, x0:x1]) if x1 - x0 >= 3 and y1 - y0 >= 3 else None
    mask = None if crop is None else cell_on_light(crop, max(4, (x1 - x0) * (y1 - y0) // 20))
    if mask is not None:
        mask = largest_part(fill_holes(close_gaps(mask, CLOSE_PX)) & box_ellipse(mask.shape))
    if mask is None or mask.sum() < MIN_CELL_SHARE * mask.size:
        return box_shape(view, box, factor, pixel_size)
    points = contour_of(mask)
    ring = np.round((points + (x0, y0)) / factor, 2) + 0.0
    ring = np.vstack([ring, ring[:1]])
    perimeter = cv2.arcLength(points.reshape(-1, 1, 2).astype(np.float32), True)
    return CellShape(ring, measure(crop, mask, perimeter, factor, pixel_size), "mask")


def box_shape(view, box: tuple[float, float, float, float], factor: float,
              pixel_size: float | None) -> CellShape:
    """The box as the outline, measured as a filled rectangle (no cell was segmented)."""
    x, y, w, h = box
    length, area, size = units(pixel_size)
    height, width = view.shape[:2]
    x0, y0 = min(width - 1, max(0, int(x * factor))), min(height - 1, max(0, int(y * factor)))
    x1 = min(width, max(x0 + 1, round((x + w) * factor)))
    y1 = min(height, max(y0 + 1, round((y + h) * factor)))
    crop = np.asarray(view[y0:y1, x0:x1]).reshape(-1, 3)
    return CellShape(np.array(box_ring(x, y, w, h)),
                     {f"Area {area}": round(w * h * size * size, 2),
                      f"Perimeter {length}": round(2 * (w + h) * size, 2),
                      "Mean OD": round(mean_od(crop), 4)}, "box")


def cell_shapes(view, boxes: Iterable[tuple[float, float, float, float]], factor: float,
                pixel_size: float | None = None) -> list[CellShape]:
    """cell_shape of every box, in the given order (sort boxes by y first: a ScaledSmear view
    decodes the smear in bands of rows)."""
    return [cell_shape(view, tuple(map(float, b)), factor, pixel_size) for b in boxes]
