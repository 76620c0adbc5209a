"""Cutting a sample out around its mask and bringing it to the common 40x scale (pure)."""

from __future__ import annotations

import cv2
import numpy as np

from bloodcell.dataset.masks import Box


def mask_box(mask: np.ndarray, pad: int) -> Box:
    """Tight box (x, y, w, h) of the True pixels, grown by ``pad`` px and clipped to the mask."""
    ys, xs = np.nonzero(mask)
    x0 = max(int(xs.min()) - pad, 0)
    y0 = max(int(ys.min()) - pad, 0)
    x1 = min(int(xs.max()) + 1 + pad, mask.shape[1])
    y1 = min(int(ys.max()) + 1 + pad, mask.shape[0])
    return x0, y0, x1 - x0, y1 - y0


def crop(img: np.ndarray, box: Box) -> np.ndarray:
    """The (h, w, ...) region of ``img`` at box (x, y, w, h), top-left, pixels (a copy)."""
    x, y, w, h = box
    return img[y : y + h, x : x + w].copy()


def rescale(img: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a BGR sample and its bool mask by ``factor`` (native px -> 40x-scale px).

    Sizes round to the nearest pixel (at least 1). The image uses area averaging when it
    shrinks and bilinear interpolation when it grows; the mask is resized as a coverage map
    and kept where at least half covered.
    """
    h, w = mask.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size == (w, h):
        return img.copy(), mask.copy()
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    small = cv2.resize(img, size, interpolation=interp)
    cover = cv2.resize(mask.astype(np.float32), size, interpolation=interp)
    return small, cover >= 0.5
