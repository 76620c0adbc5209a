"""Reading users' own smear images for ``bloodcell detect``: any common format, depth, layout
and size.

Two ways in, one conversion path:

- ``read_smear(path)`` decodes the whole image: a uint8 array of shape (H, W, 3) in BGR order
  (OpenCV's convention), what the rest of the project uses.
- ``open_smear(path)`` opens a :class:`SmearImage` that is read region by region:
  ``region(x0, y0, x1, y1)`` gives exactly ``read_smear(path)[y0:y1, x0:x1]``;
  ``scaled(scale)`` a band-cached RGB view at the detector's scale that
  ``slide.detect_slide`` tiles like an array (:class:`ScaledSmear`); ``overview(max_side)`` a
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
  marker, BMP DIB header).

Every problem the user can fix raises UserError with one line naming the file and the fix,
when the file is opened or, for damage inside a TIFF's image data, when that region is read.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import tifffile

from bloodcell.errors import UserError
from bloodcell.imageio import MAX_PIXELS, MIN_SIDE_PX

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Suffixes picked up from folders by list_images (compared case-insensitively)."""

MODEL_RBC_PX = 34.0
"""Typical red-cell diameter, in pixels, of the images the detector was trained on."""

MAX_REGION_PIXELS = 2**32
"""Most pixels of a TIFF read region by region by open_smear (about 65536 x 65536). Only the
strips or tiles in use are decoded, so memory does not grow with the image; images decoded
whole (read_smear, PNG, JPEG, BMP) keep the smaller ``MAX_PIXELS`` (bloodcell.imageio)."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_HEAD_BYTES = 1 << 16
"""Bytes read first to tell the format and size (a JPEG's frame header may come later)."""
_BLOCK_VALUES = 1 << 24
"""Values converted per block of rows, which bounds the temporary memory for large images."""
_MAX_CHUNK_BYTES = 1 << 28
"""Largest decoded TIFF strip or tile (bytes) read region by region; a TIFF with larger ones
(one huge compressed strip) is decoded whole instead, within MAX_PIXELS."""
_TILE = 224
"""Side of the detector's tiles, px (bloodcell.slide.TILE; slide is not imported here)."""
_BAND_ROWS = 2 * _TILE
"""Rows of the resized image a ScaledSmear decodes and caches at least at a time."""
_RESAVE = "re-save it as an 8- or 16-bit RGB PNG or TIFF"


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
        _check_size(smear.path, smear.width, smear.height)
        return smear._read(0, 0, smear.width, smear.height, "bgr", copy=False)


def open_smear(path: Path) -> SmearImage:
    """Open a PNG, JPEG, BMP or TIFF smear image for reading by region (see SmearImage).

    TIFFs are decoded lazily, region by region, up to MAX_REGION_PIXELS; other formats (and
    TIFFs that cannot be read by region) are decoded here, whole, up to MAX_PIXELS. Raises
    UserError (one line naming the file) as read_smear does. Close the result (or use it as a
    context manager): a TIFF stays open until then.
    """
    path = Path(path)
    head = _head(path)
    if head[:4] in _TIFF_MAGIC:
        pixels, layout = _open_tiff(path)
    else:
        pixels, layout = _open_other(path, head)
    return SmearImage(path, pixels, layout)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` (output side = round(side * scale), at least 1 px).

    Area averaging when shrinking, bilinear interpolation when enlarging. ``image`` itself is
    returned, not a copy, when the size does not change. ``scale`` must be finite and > 0.
    """
    h, w = image.shape[:2]
    size = _scaled_size(w, h, scale)
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=_interpolation(scale))


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


def _scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) px of an image resized by ``scale``: round(side * scale), at least 1."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    return max(1, round(width * scale)), max(1, round(height * scale))


def _interpolation(scale: float) -> int:
    """OpenCV interpolation for a resize by ``scale``: area when shrinking, else bilinear."""
    return cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR


def _check_size(path: Path, width: int, height: int, limit: int | None = None) -> None:
    """UserError for a side below MIN_SIDE_PX or more than ``limit`` px (default MAX_PIXELS)."""
    limit = MAX_PIXELS if limit is None else limit
    if min(width, height) < MIN_SIDE_PX:
        raise UserError(f"{path}: image is {width}x{height} px, too small to hold a cell "
                        f"(min {MIN_SIDE_PX} px a side); use the full-size image")
    if width * height > limit:
        raise UserError(f"{path}: image is {width}x{height} px, more than {limit:,} px; "
                        "crop it or export a region or lower-resolution level")


def _head(path: Path) -> bytes:
    """The first _HEAD_BYTES of the file; UserError if missing, unreadable or empty."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path")
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror}); check its permissions") from e
    if not head:
        raise UserError(f"{path}: empty file (0 bytes); copy the image again")
    return head


# --- header sizes (PNG, JPEG, BMP) ------------------------------------------------------------


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) px from the header of PNG, JPEG or BMP bytes, without decoding; None
    for other formats or when ``data`` ends before the size."""
    if data[:8] == _PNG_MAGIC:
        return _png_size(data)
    if data[:3] == _JPEG_MAGIC:
        return _jpeg_size(data)
    if data[:2] == b"BM":
        return _bmp_size(data)
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when the header is not one."""
    if data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame (SOFn) marker, found by walking the marker
    segments from the start; None when the scan or the end comes first, or the height is 0
    (given later by a DNL marker)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
        elif marker in (0xD9, 0xDA):  # end of image, start of scan
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return (w, h) if h else None
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a BMP's DIB header: 16-bit sides in an OS/2 core header (12 bytes),
    else signed 32-bit ones; a negative height marks rows stored top-down."""
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


# --- conversion to 8-bit colour ---------------------------------------------------------------


@dataclass
class _Layout:
    """How an image's decoded samples become 8-bit colour (module docstring, "Bit depth" and
    "Channels").

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


def _channels(img: np.ndarray) -> int:
    return 1 if img.ndim == 2 else img.shape[2]


def _make_layout(path: Path, sample: np.ndarray, order: str, alpha: str = "straight",
                 bits_peak: float | None = None) -> _Layout:
    """The layout of an image whose decoded samples look like ``sample`` (any rows of it);
    UserError for more than 4 channels or an unsupported pixel type. ``bits_peak``: the
    largest value of an unsigned integer image's bit depth when below its type's."""
    channels = _channels(sample)
    if sample.ndim not in (2, 3) or channels > 4:
        raise UserError(f"{path}: image has {channels} channels, at most 4 are supported "
                        "(gray, gray+alpha, RGB, RGBA); export an RGB image")
    if sample.dtype.kind not in "uifb":
        raise UserError(f"{path}: unsupported pixel type {sample.dtype}; {_RESAVE}")
    peak = None
    if sample.dtype == bool:
        peak = 1.0
    elif sample.dtype.kind in "ui":
        peak = bits_peak if bits_peak is not None else float(np.iinfo(sample.dtype).max)
    return _Layout(channels, order, alpha, peak, peak)


def _finite_top(values: np.ndarray, top: float) -> float:
    finite = values[np.isfinite(values)]
    return max(top, float(finite.max())) if finite.size else top


def _float_peaks(blocks: Iterator[np.ndarray], layout: _Layout) -> tuple[float, float]:
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


def _convert(img: np.ndarray, layout: _Layout, order: str) -> np.ndarray:
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
    rows = max(1, _BLOCK_VALUES // max(1, w * layout.channels))
    for r0 in range(0, h, rows):
        out[r0 : r0 + rows] = _convert_block(img[r0 : r0 + rows], layout, swap)
    return out


def _convert_block(block: np.ndarray, layout: _Layout, swap: bool) -> np.ndarray:
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


# --- pixel sources ----------------------------------------------------------------------------


class _Pixels(Protocol):
    """Decoded samples of an image's first plane, read by region: (h, w) or (h, w, c) arrays
    of the stored type. ``chunk_rows``: height of the file's strips or tiles (1 when any rows
    cost the same); ``by_region``: whether regions are decoded on demand; ``shared``: whether
    reads may return views of a buffer that later reads return again."""

    width: int
    height: int
    chunk_rows: int
    by_region: bool
    shared: bool

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...

    def close(self) -> None: ...


class _ArrayPixels:
    """A whole decoded image held in memory."""

    chunk_rows = 1
    by_region = False
    shared = True

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.height, self.width = img.shape[:2]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.img[y0:y1, x0:x1]

    def close(self) -> None:
        pass


def _open_other(path: Path, head: bytes) -> tuple[_Pixels, _Layout]:
    """Decode a non-TIFF file whole with OpenCV (depth and channels kept, BGR order), its size
    checked against MAX_PIXELS from the header first."""
    size = _header_size(head)
    if size is not None:
        _check_size(path, *size)
    data = path.read_bytes()
    if size is None and (size := _header_size(data)) is not None:
        _check_size(path, *size)
    if head[:8] == _PNG_MAGIC and data.rfind(b"IEND") < 0:
        raise UserError(f"{path}: truncated PNG (no end marker); copy or export the image again")
    if head[:3] == _JPEG_MAGIC and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda"):
        raise UserError(f"{path}: truncated JPEG (no end marker); copy or export the image again")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image (or truncated); "
                        f"open it in an image viewer and {_RESAVE}")
    layout = _make_layout(path, img, "bgr")
    _check_size(path, img.shape[1], img.shape[0])
    return _ArrayPixels(img), layout


# --- TIFF -------------------------------------------------------------------------------------


@contextmanager
def _tiff_errors(path: Path) -> Iterator[None]:
    """Turn what tifffile and the codecs raise for a damaged file into a one-line UserError."""
    try:
        yield
    except UserError:
        raise
    except MemoryError as e:
        raise UserError(f"{path}: not enough memory to decode this image; crop it or export a "
                        "lower-resolution level") from e
    except Exception as e:  # tifffile raises many types for damaged files
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path}: unreadable or damaged TIFF ({reason}); copy it again or "
                        f"{_RESAVE}") from e


@dataclass(frozen=True)
class _TiffFormat:
    """Per-page steps before _convert: a palette's colour map (uint8 RGB rows, indexed by the
    sample) or the value MINISWHITE samples are subtracted from."""

    lut: np.ndarray | None = None
    invert: int | None = None

    def apply(self, img: np.ndarray) -> np.ndarray:
        if self.lut is not None:
            return self.lut[img if img.ndim == 2 else img[..., 0]]
        if self.invert is not None and img.dtype == bool:
            return ~img
        if self.invert is not None:
            top = img.dtype.type(self.invert)
            return top - np.minimum(img, top)
        return img


def _bits_peak(page: tifffile.TiffPage, dtype: np.dtype) -> int | None:
    """2**bits - 1 for unsigned samples with fewer BitsPerSample than their type, else None."""
    bits = int(page.bitspersample)
    return 2**bits - 1 if dtype.kind == "u" and 1 < bits < dtype.itemsize * 8 else None


def _tiff_format(page: tifffile.TiffPage) -> _TiffFormat:
    """The palette or MINISWHITE step of a page (none for other photometrics)."""
    photometric = page.photometric
    if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        cmap = np.asarray(page.colormap)
        return _TiffFormat(lut=(cmap.T >> 8 if cmap.max() > 255 else cmap.T).astype(np.uint8))
    dtype = np.dtype(page.dtype) if page.dtype is not None else np.dtype(np.uint8)
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE and dtype.kind in "uib":
        peak = _bits_peak(page, dtype)
        top = 1 if dtype.kind == "b" else np.iinfo(dtype).max
        return _TiffFormat(invert=int(peak if peak is not None else top))
    return _TiffFormat()


def _tiff_layout(path: Path, page: tifffile.TiffPage, fmt: _TiffFormat,
                 sample: np.ndarray) -> _Layout:
    """Layout of a TIFF page from a few of its converted (_TiffFormat.apply) samples."""
    alpha = "straight"
    extra = tuple(int(s) for s in page.extrasamples)
    if extra and _channels(sample) in (2, 4):
        alpha = {1: "premultiplied", 2: "straight"}.get(extra[0], "drop")
    peak = None if fmt.lut is not None else _bits_peak(page, sample.dtype)
    return _make_layout(path, sample, "rgb", alpha, peak)


def _tiff_page(tif: tifffile.TiffFile) -> tifffile.TiffPage:
    """The first page of the first series' full-resolution level."""
    return tif.series[0].levels[0].keyframe if tif.series else tif.pages[0]


def _check_tiff_page(path: Path, page: tifffile.TiffPage) -> None:
    """UserError for an unsupported colour space or image data past the end of the file."""
    photometric = page.photometric
    if photometric in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.CIELAB,
                       tifffile.PHOTOMETRIC.ICCLAB, tifffile.PHOTOMETRIC.ITULAB):
        raise UserError(f"{path}: {photometric.name} colour TIFF is not supported; {_RESAVE}")
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
    if ends and max(ends) > path.stat().st_size:
        raise UserError(f"{path}: truncated TIFF (image data runs past the end of the file); "
                        "copy or export the image again")


def _open_tiff(path: Path) -> tuple[_Pixels, _Layout]:
    """A TIFF's first full-resolution plane, by region when tifffile can decode its strips or
    tiles one by one, else decoded whole (within MAX_PIXELS)."""
    with _tiff_errors(path):
        tif = tifffile.TiffFile(path)
    try:
        with _tiff_errors(path):
            page = _tiff_page(tif)
            _check_size(path, int(page.imagewidth), int(page.imagelength), MAX_REGION_PIXELS)
            _check_tiff_page(path, page)
            fmt = _tiff_format(page)
            rows = _StripRows.of(page, tif) or _ZarrRows.of(page)
            if rows is None:
                pixels, layout = _whole_tiff(path, page, fmt)
                tif.close()
                return pixels, layout
            layout = _tiff_layout(path, page, fmt, fmt.apply(rows(0, 1, 0, 1)))
            return _TiffPixels(path, tif, rows, fmt), layout
    except BaseException:
        tif.close()
        raise


def _whole_tiff(path: Path, page: tifffile.TiffPage, fmt: _TiffFormat
                ) -> tuple[_Pixels, _Layout]:
    """Decode a TIFF page whole: with tifffile, or with OpenCV for compressions tifffile needs
    imagecodecs for."""
    _check_size(path, int(page.imagewidth), int(page.imagelength))
    try:
        img = page.asarray()
    except (KeyError, ValueError, NotImplementedError) as e:
        if "imagecodecs" not in str(e):
            raise
        img = _read_tiff_cv2(path, page.compression.name)
        return _ArrayPixels(img), _make_layout(path, img, "bgr")
    img = fmt.apply(_tiff_samples_last(img, page.axes, path))
    return _ArrayPixels(img), _tiff_layout(path, page, fmt, img[:1, :1])


def _read_tiff_cv2(path: Path, compression: str) -> np.ndarray:
    """Decode a TIFF whose compression tifffile cannot handle without imagecodecs."""
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: cannot decode this {compression}-compressed TIFF; install "
                        f"imagecodecs (pip install imagecodecs) or {_RESAVE}")
    return img


def _tiff_samples_last(img: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """One 2-D plane of a TIFF page, with samples (channels) as the last axis if any."""
    if "S" in axes and axes.index("S") != len(axes) - 1:
        img = np.moveaxis(img, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    while img.ndim > (3 if axes.endswith("S") else 2):  # depth or other leading axes
        img, axes = img[0], axes[1:]
    if img.ndim not in (2, 3):
        raise UserError(f"{path}: TIFF page has axes {axes}, not an image; {_RESAVE}")
    return img


class _TiffPixels:
    """A TIFF page read region by region (through a _StripRows or _ZarrRows reader), with its
    palette or MINISWHITE step applied and damage reported as UserError."""

    by_region = True
    shared = False

    def __init__(self, path: Path, tif: tifffile.TiffFile, rows: _StripRows | _ZarrRows,
                 fmt: _TiffFormat) -> None:
        self.path, self._tif, self._rows, self._fmt = path, tif, rows, fmt
        self.width, self.height, self.chunk_rows = rows.width, rows.height, rows.chunk_rows

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with _tiff_errors(self.path):
            return self._fmt.apply(self._rows(y0, y1, x0, x1))

    def close(self) -> None:
        self._rows.close()
        self._tif.close()


class _StripRows:
    """Regions of an uncompressed, strip-organised TIFF page read straight from the file, row
    by row, so that even a single-strip image is never read whole. Samples are returned in the
    stored type, native byte order, (h, w) or (h, w, samples)."""

    chunk_rows = 1

    @classmethod
    def of(cls, page: tifffile.TiffPage, tif: tifffile.TiffFile) -> _StripRows | None:
        """A reader for ``page``, or None when its data is not plain uncompressed strips of
        whole-byte samples, interleaved (one plane), with every strip complete."""
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if (dtype is None or dtype.kind not in "uif" or page.is_tiled
                or page.compression != tifffile.COMPRESSION.NONE or page.predictor != 1
                or page.fillorder != 1 or page.imagedepth != 1 or page.is_subsampled
                or int(page.bitspersample) != dtype.itemsize * 8
                or (page.samplesperpixel > 1 and page.planarconfig != 1)):
            return None
        reader = cls(page, tif, dtype)
        counts = page.databytecounts
        if len(counts) < reader._strips or any(
                counts[k] < reader._strip_height(k) * reader._row_bytes
                for k in range(reader._strips)):
            return None
        return reader

    def __init__(self, page: tifffile.TiffPage, tif: tifffile.TiffFile, dtype: np.dtype) -> None:
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self._spp = int(page.samplesperpixel)
        self._stored = dtype.newbyteorder(tif.byteorder)
        self._native = dtype.newbyteorder("=")
        self._pixel = self._spp * dtype.itemsize
        self._row_bytes = self.width * self._pixel
        rps = int(page.rowsperstrip or self.height)
        self._rps = min(max(rps, 1), self.height)
        self._strips = -(-self.height // self._rps)
        self._offsets = page.dataoffsets
        self._fh = tif.filehandle

    def _strip_height(self, k: int) -> int:
        return min(self.height, (k + 1) * self._rps) - k * self._rps

    def _offset(self, y: int) -> int:
        """File offset of row y."""
        k = y // self._rps
        return int(self._offsets[k]) + (y - k * self._rps) * self._row_bytes

    def _bytes(self, offset: int, size: int) -> np.ndarray:
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise ValueError("image data runs past the end of the file")
        return np.frombuffer(data, self._stored)

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0, self._spp), self._native)
        if (x1 - x0) * 4 < self.width:  # narrow: read only the region's part of each row
            size = (x1 - x0) * self._pixel
            for y in range(y0, y1):
                out[y - y0] = self._bytes(self._offset(y) + x0 * self._pixel,
                                          size).reshape(x1 - x0, self._spp)
        else:  # wide: whole rows, one read per strip
            y = y0
            while y < y1:
                end = min(y1, (y // self._rps + 1) * self._rps)
                rows = self._bytes(self._offset(y), (end - y) * self._row_bytes)
                out[y - y0 : end - y0] = rows.reshape(end - y, self.width, self._spp)[:, x0:x1]
                y = end
        return out[..., 0] if self._spp == 1 else out

    def close(self) -> None:
        pass


class _ZarrRows:
    """Regions of a TIFF page through tifffile's Zarr store: only the strips or tiles covering
    a region are decoded. Samples in the stored type, (h, w) or (h, w, samples)."""

    @classmethod
    def of(cls, page: tifffile.TiffPage) -> _ZarrRows | None:
        """A reader for ``page``, or None when it cannot be read by region: axes other than a
        plain plane, a layout the Zarr store does not implement, strips or tiles larger than
        _MAX_CHUNK_BYTES, or a compression tifffile needs imagecodecs for (found by decoding
        the first strip or tile). A damaged first strip or tile raises."""
        kept = "".join(a for a in page.axes if a in "YXS")
        if kept not in ("YX", "YXS", "SYX"):
            return None
        try:
            reader = cls(page)
        except NotImplementedError:
            return None
        try:
            if math.prod(reader._array.chunks) * reader._array.dtype.itemsize > _MAX_CHUNK_BYTES:
                reader.close()
                return None
            reader(0, 1, 0, 1)
        except (KeyError, ValueError, NotImplementedError) as e:
            reader.close()
            if "imagecodecs" in str(e) or isinstance(e, NotImplementedError):
                return None
            raise
        return reader

    def __init__(self, page: tifffile.TiffPage) -> None:
        import zarr

        self._axes = page.axes
        self._store = page.aszarr()
        self._array = zarr.open_array(self._store, mode="r")
        y, x = self._axes.index("Y"), self._axes.index("X")
        self.height, self.width = int(self._array.shape[y]), int(self._array.shape[x])
        self.chunk_rows = int(self._array.chunks[y])

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        span = {"Y": slice(y0, y1), "X": slice(x0, x1), "S": slice(None)}
        out = np.asarray(self._array[tuple(span.get(a, 0) for a in self._axes)])
        if "S" in self._axes and self._axes.index("S") < self._axes.index("Y"):
            out = np.moveaxis(out, 0, -1)
        return out

    def close(self) -> None:
        self._store.close()


# --- reading by region ------------------------------------------------------------------------


class SmearImage:
    """An open smear image, read region by region (see the module docstring and open_smear).

    ``path``; ``width`` and ``height``: the input image's size in px. ``by_region``: True when
    pixels are decoded on demand (TIFF), False when the whole image was decoded into memory
    (PNG, JPEG, BMP, TIFFs that cannot be read by region). ``chunk_rows``: height in px of the
    file's strips or tiles (1 when any rows cost the same); full-width reads aligned to it
    decode each strip or tile once. Close it, or use it as a context manager.
    """

    def __init__(self, path: Path, pixels: _Pixels, layout: _Layout) -> None:
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
        whole resized image as a plain uint8 array (slide.pad_to_tile needs one)."""
        view = ScaledSmear(self, scale)
        return view[:, :] if min(view.shape[:2]) < _TILE else view

    def overview(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole image downscaled so that its longer side is at most ``max_side`` px:
        (uint8 (h, w, 3) BGR array, factor). ``factor`` is overview px per input px (1.0, the
        full image, when it is small enough already); sides are round(side * factor), so
        multiply input coordinates by factor to draw on it. Built band by band (memory holds
        the result and one band); equal to rescale(read_smear(path), factor) within
        ScaledSmear's tolerance."""
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1 px, got {max_side}")
        factor = min(1.0, max_side / max(self.width, self.height))
        view = ScaledSmear(self, factor, order="bgr")
        out = np.empty(view.shape, np.uint8)
        for y in range(0, view.shape[0], _BAND_ROWS):
            end = min(view.shape[0], y + _BAND_ROWS)
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
        out = _convert(raw, self._ready_layout(), order)
        if copy and self._pixels.shared and np.may_share_memory(out, raw):
            out = out.copy()
        return out

    def _ready_layout(self) -> _Layout:
        """The layout, after one scan of all values of a float image for its peaks."""
        if self._layout.colour_peak is None:
            self._layout.colour_peak, self._layout.alpha_peak = _float_peaks(
                self._row_blocks(), self._layout)
        return self._layout

    def _row_blocks(self) -> Iterator[np.ndarray]:
        """All decoded rows, full width, in blocks of whole strips or tiles."""
        step = max(1, _BLOCK_VALUES // (self.width * self._layout.channels))
        step = _round_up(step, self.chunk_rows)
        for y in range(0, self.height, step):
            yield self._pixels.read(y, min(self.height, y + step), 0, self.width)


def _round_up(n: int, multiple: int) -> int:
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
    Otherwise those of ``rescale(read_smear(path), scale)`` (area averaging when shrinking,
    bilinear when enlarging) within rounding, everywhere including band edges: rows are
    combined with OpenCV's own weights for the whole image's height and then resized along
    the row with cv2.resize, in float32. Tolerance (tested at scales 0.5, 0.37 and 1.7, with
    bands of 448 and 33 rows): no value differs by more than 1 grey level, and the mean
    absolute difference is below 0.2 (OpenCV rounds the whole-image resize in fixed point).
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, smear: SmearImage, scale: float, order: str = "rgb",
                 band_rows: int = _BAND_ROWS) -> None:
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
        w, h = _scaled_size(smear.width, smear.height, scale)
        self.smear, self.scale, self.order = smear, scale, order
        self.shape = (h, w, 3)
        self._band_rows = max(1, int(band_rows))
        self._same = (w, h) == (smear.width, smear.height)
        self._interp = _interpolation(scale)
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
            end = min(smear.height, _round_up(want, smear.chunk_rows))
            band = smear._read(0, y0, smear.width, end, self.order, copy=False)
        else:
            i0 = int(self._first[y0])
            i1 = min(smear.height, _round_up(int(self._last[want - 1]) + 1, smear.chunk_rows))
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
        step = max(1, _BLOCK_VALUES // 4 // (src.shape[1] * 3))
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
