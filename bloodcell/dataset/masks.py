"""Pure mask functions: thresholds, hole filling and connected components.

Images are uint8 (H, W, 3) BGR; masks are bool (H, W), True on the cell. Boxes are
(x, y, w, h) in pixels with (x, y) the top-left corner.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

Box = tuple[int, int, int, int]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every background region not connected to the image border (e.g. RBC central pallor)."""
    m = mask.astype(np.uint8)
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def components(mask: np.ndarray, min_area: int) -> list[tuple[np.ndarray, Box]]:
    """Connected components (8-connectivity) of at least ``min_area`` pixels, largest first.

    Returns a list of (component mask, box) with box = (x, y, w, h), top-left, pixels.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    found = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= min_area:
            found.append((area, i, (x, y, w, h)))
    found.sort(key=lambda t: (-t[0], t[1]))
    return [(labels == i, box) for _, i, box in found]


def largest_component(mask: np.ndarray, min_area: int = 1) -> np.ndarray | None:
    """The largest 8-connected component of ``mask`` with at least ``min_area`` pixels, or None."""
    found = components(mask, min_area)
    return found[0][0] if found else None


def touches_border(box: Box, shape: tuple[int, int]) -> bool:
    """True if box (x, y, w, h) touches the edge of an image of shape (H, W)."""
    x, y, w, h = box
    return x == 0 or y == 0 or x + w >= shape[1] or y + h >= shape[0]


def open_small(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Morphological opening with an elliptic kernel: removes specks thinner than 2*radius+1."""
    size = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)


def close_gaps(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing with an elliptic kernel: joins parts less than 2*radius apart."""
    size = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    padded = np.pad(mask.astype(np.uint8), size)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)
    return closed[size:-size, size:-size].astype(bool)


def cell_on_black(img: np.ndarray, threshold: int | str, min_area: int) -> np.ndarray | None:
    """Mask of the one cell in an image whose surround is black (Kaggle/NIH single-cell crops).

    Foreground = brightest channel above ``threshold`` (0-255) or above Otsu's threshold of
    that channel when ``threshold == "otsu"``; then the largest 8-connected component of at
    least ``min_area`` px, holes filled. No opening: real NIH cells have necks 1-2 px wide
    that an opening would cut. Returns None when no such component exists.
    """
    bright = img.max(axis=2)
    if threshold == "otsu":
        t = float(threshold_otsu(bright)) if bright.min() != bright.max() else 0.0
    else:
        t = float(threshold)
    cell = largest_component(bright > t, min_area)
    return None if cell is None else fill_holes(cell)


def cell_on_light(img: np.ndarray, min_area: int, join_radius: int = 0) -> np.ndarray | None:
    """Mask of the cell at the centre of a crop from a smear with a light background (MAMIC).

    Stained cells absorb green light, so foreground = green channel below Otsu's threshold.
    With ``join_radius`` > 0, parts closer than about twice that are joined (platelet clumps).
    The component chosen is the largest one that covers the crop's central pixel region; if
    none does, the largest one overall. Holes are filled. None when nothing reaches min_area.
    """
    green = cv2.GaussianBlur(img[..., 1], (3, 3), 0)
    if green.min() == green.max():
        return None
    fg = green < threshold_otsu(green)
    joined = close_gaps(fg, join_radius) if join_radius > 0 else fg
    found = components(open_small(joined), min_area)
    if not found:
        return None
    h, w = fg.shape
    centre = np.zeros_like(fg)
    centre[h // 3 : h - h // 3 or None, w // 3 : w - w // 3 or None] = True
    central = [c for c, _ in found if (c & centre).any()]
    chosen = central[0] if central else found[0][0]
    if join_radius > 0:
        chosen = chosen & fg
    return fill_holes(chosen)
