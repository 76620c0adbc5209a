"""Contact sheets: a grid of captioned tiles, so a user can see what a stage made.

Images are uint8 (H, W, 3) BGR. Each tile is letterboxed into a ``tile_px`` square (shrunk to
fit if larger, never enlarged, so tiles drawn at one scale stay comparable) with its caption
under it.
"""

from __future__ import annotations

import cv2
import numpy as np

CAPTION_PX = 16
"""Height of the caption strip under each tile, pixels."""
GAP_PX = 4
"""Space between tiles and around the sheet, pixels."""
SHEET_BGR = (255, 255, 255)
TEXT_BGR = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.38


def letterbox(img: np.ndarray, side: int, fill: tuple[int, int, int] = SHEET_BGR) -> np.ndarray:
    """``img`` centred in a ``side`` x ``side`` square of colour ``fill`` (BGR); shrunk with area
    averaging if either side exceeds ``side``, never enlarged. Grey images are made BGR."""
    if img.ndim == 2:
        img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    f = min(1.0, side / h, side / w)
    if f < 1.0:
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    tile = np.full((side, side, 3), fill, np.uint8)
    y, x = (side - h) // 2, (side - w) // 2
    tile[y : y + h, x : x + w] = img[..., :3]
    return tile


def fit_caption(text: str, width_px: int) -> str:
    """``text`` shortened with '..' until it fits ``width_px`` pixels in the caption font."""
    def width(s: str) -> int:
        return cv2.getTextSize(s, FONT, FONT_SCALE, 1)[0][0]

    if width(text) <= width_px:
        return text
    while text and width(text + "..") > width_px:
        text = text[:-1]
    return text + ".."


def contact_sheet(tiles: list[tuple[np.ndarray, str]], cols: int, tile_px: int) -> np.ndarray:
    """A uint8 BGR grid of ``cols`` columns: each (image, caption) letterboxed into a
    ``tile_px`` square (see ``letterbox``) with its caption under it, in reading order."""
    if cols < 1 or tile_px < 1:
        raise ValueError("cols and tile_px must be positive")
    rows = max(1, -(-len(tiles) // cols))
    cell_w, cell_h = tile_px + GAP_PX, tile_px + CAPTION_PX + GAP_PX
    sheet = np.full((rows * cell_h + GAP_PX, cols * cell_w + GAP_PX, 3), SHEET_BGR, np.uint8)
    for i, (img, caption) in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = GAP_PX + r * cell_h, GAP_PX + c * cell_w
        sheet[y : y + tile_px, x : x + tile_px] = letterbox(img, tile_px)
        text = fit_caption(caption, tile_px)
        cv2.putText(sheet, text, (x + 1, y + tile_px + CAPTION_PX - 4), FONT, FONT_SCALE,
                    TEXT_BGR, 1, cv2.LINE_AA)
    return sheet


SHEET_LEVEL = 9
"""zlib level of contact sheets (bloodcell.common.image_files.write_png): small figures."""
