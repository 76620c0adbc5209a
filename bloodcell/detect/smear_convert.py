"""Converting decoded image samples of any depth, channel count and alpha to uint8 colour.

Part of reading smear images (overview, with the rules in full:
:mod:`bloodcell.detect.smear_reader`,
"Bit depth" and "Channels"). A :class:`Layout` says how an image's samples become colour
(``make_layout`` builds it from a few samples); ``convert`` turns (h, w) or (h, w, c) samples
into uint8 (h, w, 3) in BGR (OpenCV's order, the project's) or RGB (the detector's) order, in
blocks of rows so that temporary memory stays bounded. Integers are scaled by their peak, floats
by their largest finite value (``float_peaks``, one scan of the image), gray is replicated to 3
channels and alpha is composited on white. Arrays are indexed (row, column[, channel]) in
pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bloodcell.common.errors import UserError

BLOCK_VALUES = 1 << 24
"""Values converted per block of rows, which bounds the temporary memory for large images."""
RESAVE = "re-save it as an 8- or 16-bit RGB PNG or TIFF"
"""The fix that UserErrors suggest for images whose pixels cannot be read or converted."""


@dataclass
class Layout:
    """How an image's decoded samples become 8-bit colour (bloodcell.detect.smear_reader's
    docstring, "Bit depth" and "Channels").

    ``channels``: 1 gray, 2 gray + alpha, 3 colour, 4 colour + alpha. ``order``: order of the
    stored colour samples, "rgb" or "bgr". ``alpha``: "straight", "premultiplied" or "drop" (an
    extra sample that is not alpha). ``colour_peak`` / ``alpha_peak``: the values that map to
    255 / to opaque; None until known (float images need a scan of all values).
    """

    channels: int
    order: str
    alpha: str
    colour_peak: float | None
    alpha_peak: float | None

    @property
    def n_colour(self) -> int:
        return 1 if self.channels <= 2 else 3

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4) and self.alpha != "drop"


def channel_count(img: np.ndarray) -> int:
    """Channels of decoded samples: 1 for a (h, w) array, else the last axis's length."""
    return 1 if img.ndim == 2 else img.shape[2]


def make_layout(path: Path, sample: np.ndarray, order: str, alpha: str = "straight",
                bits_peak: float | None = None) -> Layout:
    """The layout of an image whose decoded samples look like ``sample`` (any rows of it);
    UserError for more than 4 channels or an unsupported pixel type. ``bits_peak``: the
    largest value of an unsigned integer image's bit depth when below its type's."""
    channels = channel_count(sample)
    if sample.ndim not in (2, 3) or channels > 4:
        raise UserError(f"{path}: image has {channels} channels, at most 4 are supported "
                        "(gray, gray+alpha, RGB, RGBA); export an RGB image")
    if sample.dtype.kind not in "uifb":
        raise UserError(f"{path}: unsupported pixel type {sample.dtype}; {RESAVE}")
    peak = None
    if sample.dtype == bool:
        peak = 1.0
    elif sample.dtype.kind in "ui":
        peak = bits_peak if bits_peak is not None else float(np.iinfo(sample.dtype).max)
    return Layout(channels, order, alpha, peak, peak)


def _finite_top(values: np.ndarray, top: float) -> float:
    finite = values[np.isfinite(values)]
    return max(top, float(finite.max())) if finite.size else top


def float_peaks(blocks: Iterator[np.ndarray], layout: Layout) -> tuple[float, float]:
    """(colour, alpha) peaks of a float image from all its row blocks: the largest finite
    value, or 1 when that is <= 1 (values are then taken as [0, 1])."""
    colour = alpha = 0.0
    n = layout.n_colour
    for block in blocks:
        b = block if block.ndim == 3 else block[..., None]
        colour = _finite_top(b[..., :n], colour)
        if layout.has_alpha:
            alpha = _finite_top(b[..., n], alpha)
    return (1.0 if colour <= 1 else colour), (1.0 if alpha <= 1 else alpha)


def convert(img: np.ndarray, layout: Layout, order: str) -> np.ndarray:
    """Decoded samples (h, w) or (h, w, c) -> uint8 (h, w, 3) in ``order`` ("bgr" or "rgb").
    ``layout``'s peaks must be known. A uint8 image already in that form may come back itself."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    n = layout.n_colour
    swap = n == 3 and layout.order != order
    if img.dtype == np.uint8 and not layout.has_alpha:
        colour = np.ascontiguousarray(img if layout.channels in (1, 3) else img[..., :n])
        if n == 1:
            return cv2.cvtColor(colour, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(colour, cv2.COLOR_RGB2BGR) if swap else colour
    h, w = img.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, BLOCK_VALUES // max(1, w * layout.channels))
    for r0 in range(0, h, rows):
        out[r0 : r0 + rows] = _convert_block(img[r0 : r0 + rows], layout, swap)
    return out


def _convert_block(block: np.ndarray, layout: Layout, swap: bool) -> np.ndarray:
    """One block of rows of any depth -> uint8 (h, w, 3), or (h, w, 1) for gray."""
    n = layout.n_colour
    part = block if layout.channels == 1 else block[..., 0] if n == 1 else block[..., :n]
    c = np.nan_to_num(part.astype(np.float32), nan=0.0, posinf=layout.colour_peak, neginf=0.0)
    c = np.clip(c * np.float32(255.0 / layout.colour_peak), 0, 255)
    if layout.has_alpha:
        a = np.nan_to_num(block[..., n].astype(np.float32), nan=1.0)
        a = np.clip(a / np.float32(layout.alpha_peak), 0, 1)
        if n == 3:
            a = a[..., None]
        white = np.float32(255.0) * (1 - a)
        c = np.clip(c + white if layout.alpha == "premultiplied" else c * a + white, 0, 255)
    c = np.rint(c).astype(np.uint8)
    if n == 1:
        return c[..., None]
    return c[..., ::-1] if swap else c
