"""Reading users' own smear images for ``bloodcell detect``: any common format, depth, layout
and size.

Two ways in, one conversion path:

- ``read_smear(path)`` decodes the whole image: a uint8 array of shape (H, W, 3) in BGR order
  (OpenCV's convention), what the rest of the project uses.
- ``open_smear(path)`` opens a :class:`SmearImage` that is read region by region:
  ``region(x0, y0, x1, y1)`` gives exactly ``read_smear(path)[y0:y1, x0:x1]``;
  ``scaled(scale)`` a band-cached RGB view at the detector's scale that
  ``whole_smear.detect_slide`` tiles like an array (:class:`ScaledSmear`); ``overview(max_side)`` a
  downscaled copy built band by band. TIFFs are read through tifffile's Zarr store, so only the
  strips or tiles covering a region are decoded (uncompressed strips are read row by row from
  the file) and a whole slide is never held in memory. PNG, JPEG and BMP cannot be decoded by
  region: they are decoded whole and served from memory.

Coordinates are pixels, top-left origin, ranges half-open: ``region(x0, y0, x1, y1)`` covers
columns x0..x1-1 and rows y0..y1-1 of the input image; a ScaledSmear is indexed in pixels of
the resized image. How other layouts are brought to 8-bit BGR:

- **Formats.** TIFF (recognised by its magic bytes, whatever the suffix; classic and BigTIFF,
  striped or tiled) is read with tifffile: the first series' full-resolution level (level 0 of
  a pyramid), first page (plane) only. TIFF compressions tifffile cannot decode without the
  optional ``imagecodecs`` package (LZW, JPEG, PackBits...) are decoded whole with OpenCV
  instead, as are TIFFs whose strips or tiles are too large to decode one by one (a single
  compressed strip). PNG, JPEG and BMP are decoded with OpenCV. JPEG EXIF orientation is *not*
  applied: boxes are in the stored pixel grid, the one QuPath and tifffile use.
- **Channel order.** TIFF samples are stored R, G, B and are swapped to B, G, R; OpenCV already
  returns B, G, R for the other formats. (ScaledSmear returns R, G, B, as the detector wants.)
- **Bit depth.** Integer images are scaled by the largest value of their type
  (``v * 255 / max``, rounded; for a TIFF whose BitsPerSample is smaller than its container,
  such as 12-bit data in 16-bit words, by ``2**bits - 1``); negative values clip to 0. Float
  images are taken as [0, 1] when their largest finite value is <= 1, otherwise divided by that
  largest value (of the whole image, so a float TIFF read by region is scanned once first); NaN
  becomes 0. Boolean (1-bit) images map to 0 / 255. Palette TIFFs go through their colour map;
  MINISWHITE TIFFs are inverted (by the largest value of their bit depth).
- **Channels.** 1 channel (gray) is replicated to 3; 2 channels are gray + alpha; 3 are colour;
  4 are colour + alpha. Alpha is composited on white (a transparent background reads as empty
  glass, not as black); a TIFF extra sample that is not marked as alpha is dropped instead.
  More than 4 channels (multispectral, fluorescence stacks) and CMYK/Lab TIFFs are rejected.
- **Size.** Sides shorter than ``MIN_SIDE_PX`` are rejected. An image decoded whole
  (``read_smear``; PNG, JPEG, BMP and TIFFs that cannot be read by region in ``open_smear``)
  may have at most ``MAX_PIXELS`` pixels, a TIFF read by region at most ``MAX_REGION_PIXELS``.
  Sizes are checked from the header before anything is decoded (TIFF tags, PNG IHDR, JPEG SOFn
  marker, BMP DIB header: bloodcell.detect.smear_headers).

Every problem the user can fix raises UserError with one line naming the file and the fix,
when the file is opened or, for damage inside a TIFF's image data, when that region is read.

This module is the public API and ties the steps together; each step has its own module:

- :mod:`bloodcell.detect.smear_headers`: format signatures, sizes from headers, the size limits.
- :mod:`bloodcell.detect.smear_tiff`: pixel sources, TIFF pages read by region or whole images held
  in memory, decoded samples not yet converted.
- :mod:`bloodcell.detect.smear_convert`: decoded samples of any depth and channels to uint8
  BGR / RGB.
- :mod:`bloodcell.detect.smear_view`: ScaledSmear, the band-cached resized view, and its weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from bloodcell.common.errors import UserError
from bloodcell.common.tile import MODEL_RBC_PX
from bloodcell.detect.smear_convert import (
    BLOCK_VALUES,
    RESAVE,
    Layout,
    convert,
    float_peaks,
    make_layout,
)
from bloodcell.detect.smear_headers import (
    JPEG_MAGIC,
    PNG_MAGIC,
    TIFF_MAGIC,
    check_size,
    header_size,
    read_head,
)
from bloodcell.detect.smear_tiff import ArrayPixels, Pixels, open_tiff
from bloodcell.detect.smear_view import (
    BAND_ROWS,
    TILE,
    ScaledSmear,
    interpolation,
    round_up,
    scaled_size,
)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Suffixes picked up from folders by list_images (compared case-insensitively)."""


MAX_REGION_PIXELS = 2**32
"""Most pixels of a TIFF read region by region by open_smear (about 65536 x 65536). Only the
strips or tiles in use are decoded, so memory does not grow with the image; images decoded
whole (read_smear, PNG, JPEG, BMP) keep the smaller ``MAX_PIXELS``
(bloodcell.common.image_files)."""


def list_images(paths: Sequence[Path]) -> list[Path]:
    """The image files to process: each file given directly, then each folder's images.

    A folder contributes its files (not sub-folders) whose suffix is in IMAGE_SUFFIXES, sorted
    by name; hidden files (``.name``, such as macOS ``._x.png``) are skipped. Files given
    directly are kept whatever their suffix (read_smear judges them). The result keeps the
    order of ``paths`` and lists each file once. A missing path, or a folder without images,
    raises UserError.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)});"
                                " put the smear images there or name the files directly")
        elif path.is_file():
            found = [path]
        elif path.exists():
            raise UserError(f"{path}: not a regular file or folder; give an image file or a "
                            "folder of images")
        else:
            raise UserError(f"{path}: no such file or folder; check the path")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def read_smear(path: Path) -> np.ndarray:
    """Read a PNG, JPEG, BMP or TIFF smear image as uint8 (H, W, 3) BGR (see module docstring).

    The whole image is decoded, so it may have at most MAX_PIXELS pixels; use open_smear for
    larger TIFFs. Raises UserError (one line naming the file) for a missing, empty, truncated,
    unreadable, unsupported, too small or too large image.
    """
    with open_smear(path) as smear:
        check_size(smear.path, smear.width, smear.height)
        return smear._read(0, 0, smear.width, smear.height, "bgr", copy=False)


def open_smear(path: Path) -> SmearImage:
    """Open a PNG, JPEG, BMP or TIFF smear image for reading by region (see SmearImage).

    TIFFs are decoded lazily, region by region, up to MAX_REGION_PIXELS; other formats (and
    TIFFs that cannot be read by region) are decoded here, whole, up to MAX_PIXELS. Raises
    UserError (one line naming the file) as read_smear does. Close the result (or use it as a
    context manager): a TIFF stays open until then.
    """
    path = Path(path)
    head = read_head(path)
    if head[:4] in TIFF_MAGIC:
        pixels, layout = open_tiff(path, MAX_REGION_PIXELS)
    else:
        pixels, layout = _open_other(path, head)
    return SmearImage(path, pixels, layout)


def resize_smear(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` (output side = round(side * scale), at least 1 px).

    Area averaging when shrinking, bilinear interpolation when enlarging. ``image`` itself is
    returned, not a copy, when the size does not change. ``scale`` must be finite and > 0.
    """
    h, w = image.shape[:2]
    size = scaled_size(w, h, scale)
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=interpolation(scale))


def scale_from_rbc_diameter(diameter_px: float, model_rbc_px: float = MODEL_RBC_PX) -> float:
    """The factor that brings red cells of ``diameter_px`` to the model's ``model_rbc_px``.

    Rescale the image by it before detection and divide box coordinates by it afterwards.
    """
    if not (math.isfinite(diameter_px) and diameter_px > 0):
        raise UserError(f"red-cell diameter must be a positive number of pixels, got "
                        f"{diameter_px}; measure a typical red cell across in the image")
    if not (math.isfinite(model_rbc_px) and model_rbc_px > 0):
        raise ValueError(f"model_rbc_px must be finite and > 0, got {model_rbc_px}")
    return model_rbc_px / diameter_px


# --- images decoded whole (PNG, JPEG, BMP) --------------------------------------------------------


def _open_other(path: Path, head: bytes) -> tuple[Pixels, Layout]:
    """Decode a non-TIFF file whole with OpenCV (depth and channels kept, BGR order), its size
    checked against MAX_PIXELS from the header first."""
    size = header_size(head)
    if size is not None:
        check_size(path, *size)
    data = path.read_bytes()
    if size is None and (size := header_size(data)) is not None:
        check_size(path, *size)
    if head[:8] == PNG_MAGIC and data.rfind(b"IEND") < 0:
        raise UserError(f"{path}: truncated PNG (no end marker); copy or export the image again")
    if head[:3] == JPEG_MAGIC and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda"):
        raise UserError(f"{path}: truncated JPEG (no end marker); copy or export the image again")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image (or truncated); "
                        f"open it in an image viewer and {RESAVE}")
    layout = make_layout(path, img, "bgr")
    check_size(path, img.shape[1], img.shape[0])
    return ArrayPixels(img), layout


# --- reading by region ----------------------------------------------------------------------------


class SmearImage:
    """An open smear image, read region by region (see the module docstring and open_smear).

    ``path``; ``width`` and ``height``: the input image's size in px. ``by_region``: True when
    pixels are decoded on demand (TIFF), False when the whole image was decoded into memory
    (PNG, JPEG, BMP, TIFFs that cannot be read by region). ``chunk_rows``: height in px of the
    file's strips or tiles (1 when any rows cost the same); full-width reads aligned to it
    decode each strip or tile once. Close it, or use it as a context manager.
    """

    def __init__(self, path: Path, pixels: Pixels, layout: Layout) -> None:
        self.path = path
        self.width, self.height = pixels.width, pixels.height
        self._pixels, self._layout = pixels, layout

    @property
    def by_region(self) -> bool:
        return self._pixels.by_region

    @property
    def chunk_rows(self) -> int:
        return self._pixels.chunk_rows

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Input columns x0..x1-1 and rows y0..y1-1 as a new uint8 (y1 - y0, x1 - x0, 3) BGR
        array, equal to ``read_smear(path)[y0:y1, x0:x1]``. ValueError unless
        0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height; UserError for damaged image data."""
        return self._read(x0, y0, x1, y1, "bgr")

    def scaled(self, scale: float) -> ScaledSmear | np.ndarray:
        """This image resized by ``scale`` for the detector, in RGB order: a ScaledSmear view,
        or, when the resized image is smaller than a detector tile (224 px) on a side, the
        whole resized image as a plain uint8 array (whole_smear.pad_to_tile needs one)."""
        view = ScaledSmear(self, scale)
        return view[:, :] if min(view.shape[:2]) < TILE else view

    def overview(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole image downscaled so that its longer side is at most ``max_side`` px:
        (uint8 (h, w, 3) BGR array, factor). ``factor`` is overview px per input px (1.0, the
        full image, when it is small enough already); sides are round(side * factor), so
        multiply input coordinates by factor to draw on it. Built band by band (memory holds
        the result and one band); equal to resize_smear(read_smear(path), factor) within
        ScaledSmear's tolerance."""
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1 px, got {max_side}")
        factor = min(1.0, max_side / max(self.width, self.height))
        view = ScaledSmear(self, factor, order="bgr")
        out = np.empty(view.shape, np.uint8)
        for y in range(0, view.shape[0], BAND_ROWS):
            end = min(view.shape[0], y + BAND_ROWS)
            out[y:end] = view.rows(y, end)
        return out, factor

    def close(self) -> None:
        """Release the file (a TIFF stays open while the SmearImage is)."""
        self._pixels.close()

    def __enter__(self) -> SmearImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "by region" if self.by_region else "in memory"
        return f"SmearImage({str(self.path)!r}, {self.width}x{self.height} px, {how})"

    def _read(self, x0: int, y0: int, x1: int, y1: int, order: str,
              copy: bool = True) -> np.ndarray:
        """region() in ``order`` ("bgr" or "rgb"); ``copy`` False: may be a view of the
        decoded image of an in-memory format (do not modify it then)."""
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
            raise ValueError(f"region x {x0}..{x1}, y {y0}..{y1} is empty or outside the "
                             f"{self.width}x{self.height} px image")
        raw = self._pixels.read(y0, y1, x0, x1)
        out = convert(raw, self._ready_layout(), order)
        if copy and self._pixels.shared and np.may_share_memory(out, raw):
            out = out.copy()
        return out

    def _ready_layout(self) -> Layout:
        """The layout, after one scan of all values of a float image for its peaks."""
        if self._layout.colour_peak is None:
            self._layout.colour_peak, self._layout.alpha_peak = float_peaks(
                self._row_blocks(), self._layout)
        return self._layout

    def _row_blocks(self) -> Iterator[np.ndarray]:
        """All decoded rows, full width, in blocks of whole strips or tiles."""
        step = max(1, BLOCK_VALUES // (self.width * self._layout.channels))
        step = round_up(step, self.chunk_rows)
        for y in range(0, self.height, step):
            yield self._pixels.read(y, min(self.height, y + step), 0, self.width)
