"""Reading users' own smear images for ``bloodcell detect``: any common format, depth and layout.

``read_smear`` returns what the rest of the project uses: a uint8 array of shape (H, W, 3) in
BGR order (OpenCV's convention). How other layouts are brought there:

- **Formats.** TIFF (recognised by its magic bytes, whatever the suffix; classic and BigTIFF,
  striped or tiled) is read with tifffile: the first series' full-resolution level (level 0 of
  a pyramid), first page (plane) only. TIFF compressions tifffile cannot decode without the
  optional ``imagecodecs`` package (LZW, JPEG, PackBits...) are decoded with OpenCV instead.
  PNG, JPEG and BMP are decoded with OpenCV. JPEG EXIF orientation is *not* applied: boxes are
  in the stored pixel grid, the one QuPath and tifffile use.
- **Channel order.** TIFF samples are stored R, G, B and are swapped to B, G, R; OpenCV already
  returns B, G, R for the other formats.
- **Bit depth.** Integer images are scaled by the largest value of their type
  (``v * 255 / max``, rounded; for a TIFF whose BitsPerSample is smaller than its container,
  such as 12-bit data in 16-bit words, by ``2**bits - 1``); negative values clip to 0. Float
  images are taken as [0, 1] when their largest finite value is <= 1, otherwise divided by that
  largest value; NaN becomes 0. Boolean (1-bit) images map to 0 / 255.
- **Channels.** 1 channel (gray) is replicated to 3; 2 channels are gray + alpha; 3 are colour;
  4 are colour + alpha. Alpha is composited on white (a transparent background reads as empty
  glass, not as black); a TIFF extra sample that is not marked as alpha is dropped instead.
  More than 4 channels (multispectral, fluorescence stacks) and CMYK/Lab TIFFs are rejected.
- **Size.** Sides shorter than ``MIN_SIDE_PX`` and more than ``MAX_PIXELS`` pixels (checked
  from the header, before decoding, where the format allows) are rejected.

Every problem the user can fix raises UserError with one line naming the file and the fix.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

from bloodcell.errors import UserError
from bloodcell.imageio import MAX_PIXELS, MIN_SIDE_PX

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Suffixes picked up from folders by list_images (compared case-insensitively)."""

MODEL_RBC_PX = 34.0
"""Typical red-cell diameter, in pixels, of the images the detector was trained on."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_BLOCK_VALUES = 1 << 24
"""Values converted per block of rows, which bounds the temporary memory for large images."""
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

    Raises UserError (one line naming the file) for a missing, empty, truncated, unreadable,
    unsupported, too small or too large image.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path")
    try:
        with path.open("rb") as f:
            head = f.read(32)
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror}); check its permissions") from e
    if not head:
        raise UserError(f"{path}: empty file (0 bytes); copy the image again")
    if head[:4] in _TIFF_MAGIC:
        img, order, alpha, peak = _read_tiff(path)
    else:
        img, order, alpha, peak = _read_other(path, head), "bgr", "straight", None
    return _to_bgr8(img, order, alpha, peak, path)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` (output side = round(side * scale), at least 1 px).

    Area averaging when shrinking, bilinear interpolation when enlarging. ``image`` itself is
    returned, not a copy, when the size does not change. ``scale`` must be finite and > 0.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


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


def _check_size(path: Path, width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE_PX:
        raise UserError(f"{path}: image is {width}x{height} px, too small to hold a cell "
                        f"(min {MIN_SIDE_PX} px a side); use the full-size image")
    if width * height > MAX_PIXELS:
        raise UserError(f"{path}: image is {width}x{height} px, more than {MAX_PIXELS:,} px; "
                        "crop it or export a region or lower-resolution level")


def _png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when the header is not one."""
    if head[:8] == _PNG_MAGIC and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    return None


def _read_other(path: Path, head: bytes) -> np.ndarray:
    """Decode a non-TIFF file with OpenCV, unchanged (depth and channels kept, BGR order)."""
    size = _png_size(head)
    if size is not None:
        _check_size(path, *size)
    data = path.read_bytes()
    if head[:8] == _PNG_MAGIC and data.rfind(b"IEND") < 0:
        raise UserError(f"{path}: truncated PNG (no end marker); copy or export the image again")
    if head[:3] == _JPEG_MAGIC and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda"):
        raise UserError(f"{path}: truncated JPEG (no end marker); copy or export the image again")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image (or truncated); "
                        f"open it in an image viewer and {_RESAVE}")
    return img


def _read_tiff(path: Path) -> tuple[np.ndarray, str, str, float | None]:
    """Decode a TIFF's first full-resolution plane: (array, channel order, alpha kind, peak)."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.series[0].levels[0].keyframe if tif.series else tif.pages[0]
            _check_size(path, int(page.imagewidth), int(page.imagelength))
            photometric = page.photometric
            if photometric in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.CIELAB,
                               tifffile.PHOTOMETRIC.ICCLAB, tifffile.PHOTOMETRIC.ITULAB):
                raise UserError(f"{path}: {photometric.name} colour TIFF is not supported; "
                                f"{_RESAVE}")
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            if ends and max(ends) > path.stat().st_size:
                raise UserError(f"{path}: truncated TIFF (image data runs past the end of the "
                                "file); copy or export the image again")
            try:
                img = page.asarray()
            except (KeyError, ValueError, NotImplementedError) as e:
                if "imagecodecs" not in str(e):
                    raise
                return _read_tiff_cv2(path, page.compression.name), "bgr", "straight", None
            img = _tiff_samples_last(img, page.axes, path)
            alpha = "straight"
            extra = tuple(int(s) for s in page.extrasamples)
            if extra and img.ndim == 3 and img.shape[2] in (2, 4):
                alpha = {1: "premultiplied", 2: "straight"}.get(extra[0], "drop")
            if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                cmap = np.asarray(page.colormap)
                lut = (cmap.T >> 8 if cmap.max() > 255 else cmap.T).astype(np.uint8)
                return lut[img], "rgb", alpha, None
            if photometric == tifffile.PHOTOMETRIC.MINISWHITE and img.dtype.kind in "ui":
                img = np.iinfo(img.dtype).max - img
            peak = None
            bits = int(page.bitspersample)
            if img.dtype.kind == "u" and 1 < bits < img.dtype.itemsize * 8:
                peak = float(2**bits - 1)
            return img, "rgb", alpha, peak
    except UserError:
        raise
    except MemoryError as e:
        raise UserError(f"{path}: not enough memory to decode this image; crop it or export a "
                        "lower-resolution level") from e
    except Exception as e:  # tifffile raises many types for damaged files
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path}: unreadable or damaged TIFF ({reason}); copy it again or "
                        f"{_RESAVE}") from e


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


def _peak(values: np.ndarray, peak: float | None) -> float:
    """The value that maps to 255 (module docstring, "Bit depth")."""
    if values.dtype == bool:
        return 1.0
    if values.dtype.kind in "ui":
        return peak if peak is not None else float(np.iinfo(values.dtype).max)
    top = 0.0
    rows = max(1, _BLOCK_VALUES // max(1, values[:1].size))
    for r0 in range(0, values.shape[0], rows):
        block = values[r0 : r0 + rows]
        finite = block[np.isfinite(block)]
        if finite.size:
            top = max(top, float(finite.max()))
    return 1.0 if top <= 1 else top


def _to_bgr8(img: np.ndarray, order: str, alpha: str, peak: float | None,
             path: Path) -> np.ndarray:
    """Convert a decoded (H, W) or (H, W, C) array of any depth to uint8 (H, W, 3) BGR."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.ndim not in (2, 3) or channels > 4:
        raise UserError(f"{path}: image has {channels} channels, at most 4 are supported "
                        "(gray, gray+alpha, RGB, RGBA); export an RGB image")
    h, w = img.shape[:2]
    _check_size(path, w, h)
    n_colour = 1 if channels <= 2 else 3
    has_alpha = channels in (2, 4) and alpha != "drop"
    if img.dtype == np.uint8 and not has_alpha:
        colour = img if channels != 2 and channels != 4 else img[..., :n_colour]
        if n_colour == 1:
            return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_GRAY2BGR)
        if order == "rgb":
            return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2BGR)
        return np.ascontiguousarray(colour)
    if img.dtype.kind not in "uifb":
        raise UserError(f"{path}: unsupported pixel type {img.dtype}; {_RESAVE}")
    colour_peak = _peak(img[..., :n_colour] if channels > 1 else img, peak)
    alpha_peak = _peak(img[..., n_colour], peak) if has_alpha else 1.0
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _BLOCK_VALUES // max(1, w * channels))
    for r0 in range(0, h, rows):
        block = img[r0 : r0 + rows]
        part = block if channels == 1 else block[..., :n_colour]
        c = np.nan_to_num(part.astype(np.float32), nan=0.0, posinf=colour_peak, neginf=0.0)
        c = np.clip(c * np.float32(255.0 / colour_peak), 0, 255)
        if has_alpha:
            a = np.nan_to_num(block[..., n_colour].astype(np.float32), nan=1.0)
            a = np.clip(a / np.float32(alpha_peak), 0, 1)
            if n_colour == 3:
                a = a[..., None]
            white = np.float32(255.0) * (1 - a)
            c = np.clip(c + white if alpha == "premultiplied" else c * a + white, 0, 255)
        c = np.rint(c).astype(np.uint8)
        if n_colour == 1:
            out[r0 : r0 + rows] = c[..., None]
        elif order == "rgb":
            out[r0 : r0 + rows] = c[..., ::-1]
        else:
            out[r0 : r0 + rows] = c
    return out
