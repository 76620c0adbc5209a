"""The pixel sources behind a SmearImage: TIFF pages read region by region, or whole images
held in memory.

Part of reading smear images (overview, with the TIFF rules in full:
:mod:`bloodcell.detect.smear_reader`, "Formats"). A source follows the :class:`Pixels` protocol:
``read(y0, y1, x0, x1)`` returns the decoded samples of rows y0..y1-1 and columns x0..x1-1 (pixels,
top-left origin, half-open) of the image's first plane, as a (h, w) or (h, w, c) array of the stored
type, not yet converted (bloodcell.detect.smear_convert does that). TIFF samples are stored R, G, B
(their Layout says "rgb"); an image decoded whole by OpenCV (PNG, JPEG and BMP in smear_reader,
TIFFs that tifffile cannot decode), held as :class:`ArrayPixels`, is B, G, R.

``open_tiff`` opens a TIFF's first full-resolution plane: uncompressed strips are read row by
row from the file (``_StripRows``), other strips or tiles through tifffile's Zarr store
(``_ZarrRows``), and TIFFs neither can read are decoded whole (within MAX_PIXELS). Damage found
in a TIFF's image data raises a one-line UserError naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import tifffile

from bloodcell.common.errors import UserError
from bloodcell.detect.smear_convert import RESAVE, Layout, channel_count, make_layout
from bloodcell.detect.smear_headers import check_size

_MAX_CHUNK_BYTES = 1 << 28
"""Largest decoded TIFF strip or tile (bytes) read region by region; a TIFF with larger ones
(one huge compressed strip) is decoded whole instead, within MAX_PIXELS."""


class Pixels(Protocol):
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


class ArrayPixels:
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


# --- TIFF -----------------------------------------------------------------------------------------


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
                        f"{RESAVE}") from e


@dataclass(frozen=True)
class _TiffFormat:
    """Per-page steps before convert: a palette's colour map (uint8 RGB rows, indexed by the
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
                 sample: np.ndarray) -> Layout:
    """Layout of a TIFF page from a few of its converted (_TiffFormat.apply) samples."""
    alpha = "straight"
    extra = tuple(int(s) for s in page.extrasamples)
    if extra and channel_count(sample) in (2, 4):
        alpha = {1: "premultiplied", 2: "straight"}.get(extra[0], "drop")
    peak = None if fmt.lut is not None else _bits_peak(page, sample.dtype)
    return make_layout(path, sample, "rgb", alpha, peak)


def _tiff_page(tif: tifffile.TiffFile) -> tifffile.TiffPage:
    """The first page of the first series' full-resolution level."""
    return tif.series[0].levels[0].keyframe if tif.series else tif.pages[0]


def _check_tiff_page(path: Path, page: tifffile.TiffPage) -> None:
    """UserError for an unsupported colour space or image data past the end of the file."""
    photometric = page.photometric
    if photometric in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.CIELAB,
                       tifffile.PHOTOMETRIC.ICCLAB, tifffile.PHOTOMETRIC.ITULAB):
        raise UserError(f"{path}: {photometric.name} colour TIFF is not supported; {RESAVE}")
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
    if ends and max(ends) > path.stat().st_size:
        raise UserError(f"{path}: truncated TIFF (image data runs past the end of the file); "
                        "copy or export the image again")


def open_tiff(path: Path, limit: int) -> tuple[Pixels, Layout]:
    """A TIFF's first full-resolution plane, by region (within ``limit`` px,
    smear_reader.MAX_REGION_PIXELS) when tifffile can decode its strips or tiles one by one, else
    decoded whole (within MAX_PIXELS)."""
    with _tiff_errors(path):
        tif = tifffile.TiffFile(path)
    try:
        with _tiff_errors(path):
            page = _tiff_page(tif)
            check_size(path, int(page.imagewidth), int(page.imagelength), limit)
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
                ) -> tuple[Pixels, Layout]:
    """Decode a TIFF page whole: with tifffile, or with OpenCV for compressions tifffile needs
    imagecodecs for."""
    check_size(path, int(page.imagewidth), int(page.imagelength))
    try:
        img = page.asarray()
    except (KeyError, ValueError, NotImplementedError) as e:
        if "imagecodecs" not in str(e):
            raise
        img = _read_tiff_cv2(path, page.compression.name)
        return ArrayPixels(img), make_layout(path, img, "bgr")
    img = fmt.apply(_tiff_samples_last(img, page.axes, path))
    return ArrayPixels(img), _tiff_layout(path, page, fmt, img[:1, :1])


def _read_tiff_cv2(path: Path, compression: str) -> np.ndarray:
    """Decode a TIFF whose compression tifffile cannot handle without imagecodecs."""
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: cannot decode this {compression}-compressed TIFF; install "
                        f"imagecodecs (pip install imagecodecs) or {RESAVE}")
    return img


def _tiff_samples_last(img: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """One 2-D plane of a TIFF page, with samples (channels) as the last axis if any."""
    if "S" in axes and axes.index("S") != len(axes) - 1:
        img = np.moveaxis(img, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    while img.ndim > (3 if axes.endswith("S") else 2):  # depth or other leading axes
        img, axes = img[0], axes[1:]
    if img.ndim not in (2, 3):
        raise UserError(f"{path}: TIFF page has axes {axes}, not an image; {RESAVE}")
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
