"""Reading and encoding images. Colour images are uint8 arrays of shape (H, W, 3) in BGR order
(OpenCV's convention); masks are bool arrays of shape (H, W), True on the cell.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

MIN_SIDE_PX = 8
"""Images with a side shorter than this are rejected as too small to hold a cell."""

MAX_PIXELS = 400_000_000
"""Images with more pixels than this are rejected before decoding (about 20000 x 20000)."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageProblem(ValueError):
    """A file that cannot be used as a database image; the message is the reason and the fix."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) px from the header of PNG, BMP or JPEG bytes, without decoding; None
    for other formats or a header too short to tell."""
    if data[:8] == _PNG_MAGIC and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:3] == _JPEG_MAGIC:
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _decode_raw(data: bytes) -> np.ndarray:
    """Decode encoded image bytes unchanged (bit depth and channels kept). The size in the
    header is checked before decoding (a forged or huge header allocates nothing), and a PNG
    or JPEG without its end marker is refused as truncated."""
    size = header_size(data)
    if size is not None:
        check_size(size[::-1])
    if (data[:8] == _PNG_MAGIC and data.rfind(b"IEND") < 0) or (
            data[:3] == _JPEG_MAGIC and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda")):
        raise ImageProblem("truncated image (no end marker); re-download or replace the file")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ImageProblem("unreadable or truncated image; re-download or replace the file")
    return img


def _read_raw(path: Path) -> np.ndarray:
    """Decode ``path`` unchanged; raise ImageProblem if it is missing or unreadable."""
    if not path.is_file():
        raise ImageProblem("file not found")
    return _decode_raw(path.read_bytes())


def decode_color(data: bytes) -> np.ndarray:
    """Decode an 8-bit 3-channel colour image (PNG, BMP, JPEG, TIFF bytes) as uint8 BGR.

    Stained smears need colour and the source databases are 8-bit RGB, so grayscale, RGBA and
    16-bit files are rejected with ImageProblem rather than silently converted.
    """
    img = _decode_raw(data)
    if img.dtype != np.uint8:
        bits = img.dtype.itemsize * 8
        raise ImageProblem(f"{bits}-bit image; save it as 8-bit RGB")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        raise ImageProblem("grayscale image; the stain colour is needed, use the colour original")
    if img.shape[2] == 4:
        raise ImageProblem("RGBA image (4 channels); save it as 3-channel RGB without alpha")
    if img.shape[2] != 3:
        raise ImageProblem(f"{img.shape[2]}-channel image; save it as 3-channel RGB")
    check_size(img.shape[:2])
    return img


def check_size(shape: tuple[int, int]) -> None:
    """Reject images smaller than MIN_SIDE_PX or larger than MAX_PIXELS (shape is (H, W))."""
    h, w = shape
    if min(h, w) < MIN_SIDE_PX:
        raise ImageProblem(f"image is {w}x{h} px, too small to hold a cell (min {MIN_SIDE_PX} "
                           "px); use the full-size image")
    if h * w > MAX_PIXELS:
        raise ImageProblem(f"image is {w}x{h} px, too large; tile it first")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file of any bit depth and channel count as bool (H, W): True where non-zero."""
    img = _read_raw(Path(path))
    if img.ndim == 3:
        img = img[..., :3].max(axis=2)
    return img > 0


def encode_png(img: np.ndarray, level: int = 3) -> bytes:
    """Encode a uint8 (H, W, 3) BGR image or (H, W) mask as PNG bytes (deterministic), with
    zlib ``level`` 0-9 (3: fast, for data; 9: small, for figures)."""
    arr = img.astype(np.uint8) * 255 if img.dtype == bool else img
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | Path, image: np.ndarray, level: int = 3) -> None:
    """Write a uint8 (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) gray image as a PNG file,
    atomically (the bytes depend only on ``image`` and ``level``, see encode_png)."""
    from bloodcell.common.atomic import atomic_file

    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                           and image.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected a uint8 BGR or gray image, got {image.dtype} {image.shape}")
    data = encode_png(image, level)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def decode_png(data: bytes, mask: bool = False) -> np.ndarray:
    """Decode PNG bytes: a uint8 (H, W, 3) BGR image, or a bool (H, W) mask if ``mask``."""
    flag = cv2.IMREAD_GRAYSCALE if mask else cv2.IMREAD_COLOR
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    return img > 0 if mask else img
