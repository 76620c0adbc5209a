"""Estimate the typical red-blood-cell (RBC) diameter of a smear image from the image itself.

Used by ``bloodcell detect --rbc-diameter auto`` to set the scale at which the detector sees an
image (smear_reader.scale_from_rbc_diameter). Images are uint8 (H, W, 3) in BGR order (OpenCV's, as
smear_reader.read_smear returns them); every length is in the image's own pixels.

Method. Cells are the pixels darker than the background in the green channel (stained cells
absorb green light; Otsu's threshold), with holes (central pallor) filled. The *pattern
spectrum* of that mask is measured: A(r), the area that survives a morphological opening by a
disc of radius r, for a ladder of r. A cell of inscribed radius R survives every opening with
r <= R and vanishes once r > R, whether it lies alone, touches others or overlaps them (a union
of discs of radius R is open for discs of radius R), so the area lost per px of radius,
-dA/dr, peaks at the radius of the commonest cells. Debris and platelets (small), white cells,
clumps and merged clusters (large, a small share of the area) lie beside that mode instead of
dragging it as a mean would. A coarse pass (radii in steps of 2**(1/4), on a mask pyramid)
finds the mode; a fine pass (5 % steps, on the mask shrunk so that the mode is about 10 px)
places it, interpolated between steps.

The diameter returned is 2 * R * ``TIGHT_FACTOR`` * ``BOX_MARGIN``, the side sqrt(w * h) of a
typical RBC's *box*. ``TIGHT_FACTOR`` turns the modal inscribed diameter into the side of a
cell's tight bounding box (cells are slightly oval and pixelated, and the spectrum's mode sits
a little below the radius at which a disc vanishes). ``BOX_MARGIN`` then adds the margin of a
drawn box between the two conventions ``--rbc-diameter`` meets: tight boxes (the demo's
synthetic slides and cut cells) and boxes drawn by annotators, which are about 13 % larger than
the cell on BCCD and IML. So the estimate reads about 8 % above the synthetic slides' boxes and
6-8 % below annotated ones (benchmarks/rbc_diameter.py).

Assumptions: a thin smear (mostly a monolayer) on a background lighter than the cells in the
green channel; RBCs are the commonest objects by area; cells at least ``MIN_DIAMETER_PX``
across and at most half the shorter side of the image (or of a crop). Images with a side over
1.25 * ``CROP_PX`` are estimated on up to ``MAX_CROPS`` fixed windows of ``CROP_PX`` px
centred on the image's quadrants (deterministic; bounded time: about 0.02-0.09 s for a
0.3-1.2 Mpx image and 0.15-0.25 s for 2000 x 2000 px, one core). No estimate (None) when the
field has too little contrast or foreground, too few cells, or when less than ``MIN_SHARE``
of the foreground is made of objects of the modal size (not a field of similar cells).
Known limit: where cells overlap heavily and are blurred (BCCD), the mask merges them into
clusters and a few images read far off (up to +80 %); hence the estimate is printed per image.
"""

from __future__ import annotations

import argparse
import math

import cv2
import numpy as np

from bloodcell.common.errors import UserError

MIN_DIAMETER_PX = 8.0
"""Smallest cell diameter, in px, that can be estimated (smaller cells are not resolved)."""
CROP_PX = 1024
"""Side, in px, of the windows a large image is estimated on."""
MAX_CROPS = 4
"""Most windows estimated per image (2 x 2: one centred on each quadrant)."""
TIGHT_FACTOR = 1.07
"""Tight-box side sqrt(w * h) / twice the modal radius, calibrated on real cells with tight
boxes (benchmarks/rbc_diameter.py): with it alone the estimate reads 0.3 % low on isolated
IML cells (median), 1-3 % off on the demo's synthetic slides (1.2 % low on 9 slides of an
earlier run, 2.9 % high on 22 of a later one) and 3-8 % high on drawn sharp round discs
(tests/test_rbc_size.py), which are rounder than real cells."""
BOX_MARGIN = 1.05
"""Estimated RBC box side / tight-box side. Annotators' boxes are about 1.13-1.14 x the tight
box of the same cells on BCCD and IML (the ratio of the estimate's median signed errors against
the two references in benchmarks/rbc_diameter.py). 1.05 balances the median errors against the
demo's synthetic slides (tight boxes: +8 %) and IML's annotated boxes (the loosest: -8 %), with
BCCD's at -6 %, so the estimate is within 10 % of the median RBC box of either kind."""
MIN_CONTRAST = 12.0
"""Least gap, in green-channel grey levels (0-255), between mean cell and background."""
MIN_CELLS = 3.0
"""Least foreground area, in cells of the estimated size, for an estimate to be made."""
ENOUGH_CELLS = 400.0
"""The fine pass and the share use the first crops that hold this many cells' worth of
foreground (by the coarse radius); the coarse pass uses all crops."""
MIN_SHARE = 0.3
"""Least share of the foreground area that vanishes between 0.75 and 1.33 x the modal radius
(0.6-0.9 on ordinary smears; below 0.3 on fields that are mostly clumps, rings or debris)."""
PALLOR_SHARE = 0.75
"""For MIN_SHARE, a hole is filled only when its area is at most pi * (PALLOR_SHARE * R)**2: a
central pallor, not a wide gap enclosed by a ring of touching cells."""
_COARSE_STEP = 2**0.25
_FINE_STEP = 1.05
_FINE_SPAN = 8
"""The fine ladder spans _FINE_STEP**-8 .. **8 (0.68 .. 1.48 x) the coarse radius."""
_COARSE_PX = 3.0
"""Smallest radius, in working px, measured in the coarse pass (sets its pyramid levels)."""
_WORK_PX = 10.0
"""Radius, in working px, of the coarse mode in the fine pass (sets the shrink factor)."""


def estimate_rbc_diameter(bgr: np.ndarray) -> float | None:
    """Typical RBC diameter, in px of ``bgr`` (uint8 (H, W, 3) BGR), or None when unsure.

    See the module docstring for the method and its assumptions. Deterministic. None means no
    usable contrast (a blank or saturated field), too little foreground, too few cells or not
    a field of similar cells: the caller should ask for the diameter instead.
    """
    found = measure(bgr)
    return None if found is None else found[0]


def measure(bgr: np.ndarray) -> tuple[float, float] | None:
    """(diameter px, share of the foreground that vanishes within 0.75 .. 1.33 x the modal
    radius) of a uint8 (H, W, 3) BGR image, or None (see estimate_rbc_diameter)."""
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) BGR image, got shape {bgr.shape}")
    raw = [m for m in (cell_mask(c) for c in crops(bgr)) if m is not None]
    if not raw:
        return None
    filled = [fill_small_holes(m, math.inf) for m in raw]
    top = min(min(m.shape) for m in filled) / 4
    coarse = _coarse_mode(filled, top)
    if coarse is None:
        return None
    areas = np.cumsum([int(m.sum()) for m in filled])
    keep = 1 + int(np.searchsorted(areas, ENOUGH_CELLS * math.pi * coarse**2))
    radius = _fine_mode(filled[:keep], coarse, top)
    masks = [fill_small_holes(m, math.pi * (PALLOR_SHARE * radius) ** 2) for m in raw[:keep]]
    total = sum(int(m.sum()) for m in masks)
    if total < MIN_CELLS * math.pi * radius**2:
        return None
    near = granulometry(masks, np.array([0.75, 1.33]) * radius, max(1.0, radius / _WORK_PX))
    share = float(near[0] - near[1]) / total
    if share < MIN_SHARE:
        return None
    return 2.0 * radius * TIGHT_FACTOR * BOX_MARGIN, share


def resolve_scale(bgr: np.ndarray, scale: float,
                  rbc_diameter: float | str | None) -> tuple[float, float | None]:
    """The detector's scale for one image: (scale, estimated RBC diameter in px, or None).

    ``rbc_diameter`` None: ``scale`` as given. A number (px): the scale that brings such cells
    to the model's size (smear_reader.scale_from_rbc_diameter; ``scale`` is ignored). ``"auto"``:
    the diameter estimated on ``bgr`` (uint8 (H, W, 3) BGR) and its scale. Raises ValueError
    when no estimate is possible (callers name the image and the fix: require_estimate).
    """
    from bloodcell.detect.smear_reader import scale_from_rbc_diameter

    if rbc_diameter is None:
        return scale, None
    if isinstance(rbc_diameter, str):
        if rbc_diameter != "auto":
            raise ValueError(f"rbc_diameter must be px or 'auto', got {rbc_diameter!r}")
        estimate = estimate_rbc_diameter(bgr)
        if estimate is None:
            raise ValueError("cannot estimate the red-cell diameter (too little contrast, too "
                             "few cells, or not a field of similar cells)")
        return scale_from_rbc_diameter(estimate), estimate
    return scale_from_rbc_diameter(float(rbc_diameter)), None


def require_estimate(name: str, bgr: np.ndarray, scale: float,
                     rbc_diameter: float | str | None) -> tuple[float, float | None]:
    """resolve_scale for the command line: a failed estimate is a one-line UserError naming
    the image ``name`` and the fix."""
    try:
        return resolve_scale(bgr, scale, rbc_diameter)
    except ValueError as e:
        raise UserError(f"{name}: {e}; pass --rbc-diameter PX (a typical red cell across, in "
                        "px) or --scale instead of --rbc-diameter auto") from None


def rbc_diameter_arg(text: str) -> float | str:
    """argparse type of ``--rbc-diameter``: a number of px > 0, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of px or auto, got {text}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of px > 0 or auto, got {text}")
    return value


def crops(bgr: np.ndarray, side: int = CROP_PX) -> list[np.ndarray]:
    """The windows an image is estimated on: the image itself when no side exceeds
    1.25 * ``side``, else up to 2 x 2 windows of ``side`` px centred on its quadrants (along
    an axis of at most 1.25 * ``side`` px, one window centred instead). Views, not copies."""
    h, w = bgr.shape[:2]
    if max(h, w) <= 1.25 * side:
        return [bgr]
    return [bgr[y : y + side, x : x + side]
            for y in _starts(h, side) for x in _starts(w, side)][:MAX_CROPS]


def _starts(length: int, side: int) -> list[int]:
    """Offsets of the windows along one axis: one centred, or one centred on each half."""
    if length <= 1.25 * side:
        return [max(0, (length - side) // 2)]
    return [min(max(0, c - side // 2), length - side) for c in (length // 4, 3 * length // 4)]


def cell_mask(bgr: np.ndarray) -> np.ndarray | None:
    """Bool (H, W) mask of stained matter in a uint8 BGR image: the green channel (blurred,
    5 x 5) at or below Otsu's threshold, specks of 1-2 px removed. None when the field has too
    little contrast (``MIN_CONTRAST``) or foreground (under 0.5 % or over 95 %)."""
    green = cv2.GaussianBlur(np.ascontiguousarray(bgr[..., 1]), (5, 5), 0)
    if int(green.min()) == int(green.max()):
        return None
    otsu, _ = cv2.threshold(green, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = green <= otsu
    if not 0.005 <= float(fg.mean()) <= 0.95:
        return None
    if float(green[~fg].mean()) - float(green[fg].mean()) < MIN_CONTRAST:
        return None
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` with its holes (background regions, 4-connected, that do not reach the image
    border) of at most ``max_area`` px filled."""
    inv = np.pad((~mask).astype(np.uint8), 1, constant_values=1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    fill = stats[:, cv2.CC_STAT_AREA] <= max_area
    fill[0] = fill[labels[0, 0]] = False  # the mask itself; the background around it
    return mask | fill[labels[1:-1, 1:-1]]


def shrink(mask: np.ndarray, factor: float) -> np.ndarray:
    """A bool mask resized by 1 / ``factor`` (area averaging, then at least half covered)."""
    if factor <= 1:
        return mask
    h, w = mask.shape
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5


def opened_area(dist: np.ndarray, radius: float) -> int:
    """Area, px, of the opening by a disc of ``radius`` px of the mask whose Euclidean
    distance transform is ``dist``: the union of the discs of that radius that fit in it."""
    core = dist >= radius
    if not core.any():
        return 0
    reach = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 5)
    return int(np.count_nonzero(reach < radius))


def granulometry(masks: list[np.ndarray], radii: np.ndarray, factor: float) -> np.ndarray:
    """Opened area per radius, summed over ``masks``, in px of the full-size masks; radii in
    px of the full-size masks, measured on the masks shrunk by ``factor`` (>= 1) for speed."""
    areas = np.zeros(len(radii))
    for mask in masks:
        small = shrink(mask, factor).astype(np.uint8)
        dist = cv2.distanceTransform(small, cv2.DIST_L2, 5)
        areas += [opened_area(dist, r / factor) * factor**2 for r in radii]
    return areas


def _fine_mode(masks: list[np.ndarray], coarse: float, top: float) -> float:
    """The radius, px, where -dA/dr of the masks' pattern spectrum peaks, searched within
    0.68 .. 1.48 x the ``coarse`` one on masks shrunk to put it at about _WORK_PX px, smoothed
    and interpolated between steps (``coarse`` where the ladder does not fit in 4 .. ``top``)."""
    radii = coarse * _FINE_STEP ** np.arange(-_FINE_SPAN, _FINE_SPAN + 1)
    radii = radii[(radii >= MIN_DIAMETER_PX / 2) & (radii <= top)]
    if len(radii) < 3:
        return coarse
    lost = -np.diff(granulometry(masks, radii, max(1.0, coarse / _WORK_PX)))
    density = lost / np.diff(radii)
    if density.max() <= 0:
        return coarse
    smooth = np.convolve(density, np.array([1, 2, 3, 2, 1]) / 9, mode="same")
    i = int(np.argmax(smooth))
    return float(np.sqrt(radii[i] * radii[i + 1]) * _FINE_STEP ** _parabola_peak(smooth, i))


def _coarse_mode(masks: list[np.ndarray], top: float) -> float | None:
    """Coarse modal radius (px): radii from MIN_DIAMETER_PX / 2 to ``top`` in steps of
    2**(1/4), each radius and the next measured on the pyramid level (a shrink by a power of
    2) where the smaller is 3 .. 6 px (4 .. 6 px unshrunk)."""
    r0 = MIN_DIAMETER_PX / 2
    if top <= r0 * _COARSE_STEP:
        return None
    n = int(math.floor(math.log(top / r0) / math.log(_COARSE_STEP))) + 1
    radii = r0 * _COARSE_STEP ** np.arange(n)
    levels = np.maximum(1, np.floor(np.log2(radii[:-1] / _COARSE_PX) + 1e-9))
    lost = np.zeros(n - 1)
    for level in np.unique(levels):
        (idx,) = np.nonzero(levels == level)
        lost[idx] = -np.diff(granulometry(masks, radii[idx[0] : idx[-1] + 2], 2.0**level))
    density = lost / np.diff(radii)
    if density.max() <= 0:
        return None
    i = int(np.argmax(density))
    return float(np.sqrt(radii[i] * radii[i + 1]))


def _parabola_peak(values: np.ndarray, i: int) -> float:
    """Offset, in steps (-0.5 .. 0.5), of the top of the parabola through values[i - 1 .. i + 1]
    from i (0 at either end of the array or where the three do not bend down)."""
    if not 0 < i < len(values) - 1:
        return 0.0
    y0, y1, y2 = values[i - 1], values[i], values[i + 1]
    bend = y0 - 2 * y1 + y2
    return float(np.clip(0.5 * (y0 - y2) / bend, -0.5, 0.5)) if bend < 0 else 0.0
