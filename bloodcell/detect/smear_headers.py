"""Image sizes read from file headers, before anything is decoded, and the size limits.

Part of reading smear images (overview: :mod:`bloodcell.detect.smear_reader`). ``read_head`` reads
the first bytes of a file, which tell its format (the ``*_MAGIC`` signatures); ``header_size`` reads
(width, height) in pixels from a PNG's IHDR chunk, a JPEG's start-of-frame (SOFn) marker or a BMP's
DIB header, without decoding; ``check_size`` refuses sides shorter than ``MIN_SIDE_PX`` and more
pixels than a limit (default ``MAX_PIXELS``, bloodcell.common.image_files) with a one-line UserError
naming the file. Sizes are always (width, height), in pixels.
"""

from __future__ import annotations

import struct
from pathlib import Path

from bloodcell.common.errors import UserError
from bloodcell.common.image_files import MAX_PIXELS, MIN_SIDE_PX

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_HEAD_BYTES = 1 << 16
"""Bytes read first to tell the format and size (a JPEG's frame header may come later)."""


def check_size(path: Path, width: int, height: int, limit: int | None = None) -> None:
    """UserError for a side below MIN_SIDE_PX or more than ``limit`` px (default MAX_PIXELS)."""
    limit = MAX_PIXELS if limit is None else limit
    if min(width, height) < MIN_SIDE_PX:
        raise UserError(f"{path}: image is {width}x{height} px, too small to hold a cell "
                        f"(min {MIN_SIDE_PX} px a side); use the full-size image")
    if width * height > limit:
        raise UserError(f"{path}: image is {width}x{height} px, more than {limit:,} px; "
                        "crop it or export a region or lower-resolution level")


def read_head(path: Path) -> bytes:
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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) px from the header of PNG, JPEG or BMP bytes, without decoding; None
    for other formats or when ``data`` ends before the size."""
    if data[:8] == PNG_MAGIC:
        return _png_size(data)
    if data[:3] == JPEG_MAGIC:
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
