"""Loading split samples and pasting them by their masks (shared by backgrounds, synth, slides).

Images are uint8 (H, W, 3) BGR, masks bool (H, W); positions are top-left (x, y) in pixels.
A label map is an int32 (H, W) array holding, per pixel, the index of the object painted last
there (-1 for none).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bloodcell.common.errors import UserError
from bloodcell.common.image_files import decode_png
from bloodcell.dataset.samples import PACK_NAME, read_pack


@dataclass(frozen=True)
class Cut:
    """A decoded sample: BGR image, bool mask, class and id."""

    sample_id: str
    class_name: str
    image: np.ndarray
    mask: np.ndarray


def split_ids(split_csv: Path, split: str) -> dict[str, str]:
    """sample_id -> class_name of every sample in ``split``."""
    if not split_csv.is_file():
        raise UserError(f"{split_csv}: split table not found; run the split stage first")
    need = ("sample_id", "class_name", "split")
    try:
        with open(split_csv, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(need) <= set(reader.fieldnames):
                raise UserError(f"{split_csv}: columns are {reader.fieldnames}, expected "
                                f"{', '.join(need)}; re-run the split stage")
            return {r["sample_id"]: r["class_name"] for r in reader if r["split"] == split}
    except UnicodeDecodeError as err:
        raise UserError(f"{split_csv}: not UTF-8 text (byte {err.start}); re-run the split "
                        "stage") from None


def load_cuts(extract_dirs: list[Path], ids: dict[str, str], classes: set[str]) -> list[Cut]:
    """Decode the samples whose id is in ``ids`` and whose class is in ``classes``, sorted by id."""
    cuts = []
    for d in extract_dirs:
        pack = d / PACK_NAME
        if not pack.is_file():
            raise UserError(f"{pack}: sample pack not found; run the extract stage first")
        t = read_pack(pack, ["sample_id", "class_name", "image_png", "mask_png"])
        keep = pc.is_in(t.column("class_name"), value_set=pa.array(sorted(classes)))
        t = t.filter(keep).to_pydict()
        for sid, cls, img, mask in zip(t["sample_id"], t["class_name"], t["image_png"],
                                       t["mask_png"]):
            if sid in ids:
                cuts.append(Cut(sid, cls, decode_png(img), decode_png(mask, mask=True)))
    return sorted(cuts, key=lambda c: c.sample_id)


def transform(img: np.ndarray, mask: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply transform t in 0..7: t % 4 quarter turns counter-clockwise, then a left-right flip
    if t >= 4."""
    img, mask = np.rot90(img, t % 4), np.rot90(mask, t % 4)
    if t >= 4:
        img, mask = img[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)


def rotate(img: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``degrees`` counter-clockwise about the centre on a canvas that holds it all.

    The image is interpolated bilinearly, the mask nearest-neighbour; the result is cropped to
    the rotated mask's tight box.
    """
    h, w = mask.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += (side - w) / 2, (side - h) / 2
    big = cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR)
    big_mask = cv2.warpAffine(mask.astype(np.uint8), m, (side, side),
                              flags=cv2.INTER_NEAREST).astype(bool)
    ys, xs = np.nonzero(big_mask)
    if len(xs) == 0:
        return img, mask
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return big[y0:y1, x0:x1], big_mask[y0:y1, x0:x1]


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x, y, w, h) of a bool mask's True pixels, pixels in the mask's frame."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1


def paste(canvas: np.ndarray, labels: np.ndarray, img: np.ndarray, mask: np.ndarray,
          x: int, y: int, label: int) -> None:
    """Copy ``img`` where ``mask`` onto canvas at top-left (x, y), clipped; mark ``label``."""
    h, w = mask.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    canvas[y0:y1, x0:x1][m] = img[y0 - y : y1 - y, x0 - x : x1 - x][m]
    labels[y0:y1, x0:x1][m] = label
