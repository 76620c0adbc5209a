"""Contact sheets: a grid of captioned tiles, so a user can see what a stage made."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bloodcell.atomic import atomic_file

CAPTION_PX = 14


def letterbox(img: np.ndarray, side: int) -> np.ndarray:
    """Fit a uint8 BGR image into a white side x side square, keeping its aspect ratio."""
    h, w = img.shape[:2]
    f = min(side / h, side / w, 1.0 if max(h, w) <= side else side / max(h, w))
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    tile = np.full((side, side, 3), 255, np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    tile[y : y + small.shape[0], x : x + small.shape[1]] = small
    return tile


def contact_sheet(tiles: list[tuple[np.ndarray, str]], cols: int, tile_px: int) -> np.ndarray:
    """A BGR grid of letterboxed tiles (no upscaling), each with its caption under it."""
    rows = max(1, -(-len(tiles) // cols))
    cell_h = tile_px + CAPTION_PX
    sheet = np.full((rows * cell_h + 4, cols * (tile_px + 4) + 4, 3), 255, np.uint8)
    for i, (img, caption) in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = 4 + r * cell_h, 4 + c * (tile_px + 4)
        sheet[y : y + tile_px, x : x + tile_px] = letterbox(img, tile_px)
        cv2.putText(sheet, caption[: tile_px // 6], (x, y + tile_px + 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3, (40, 40, 40), 1, cv2.LINE_AA)
    return sheet


def write_png(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 BGR image as PNG, atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    with atomic_file(Path(path)) as tmp:
        tmp.write_bytes(buf.tobytes())
