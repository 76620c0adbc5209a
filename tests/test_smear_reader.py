"""Reading users' smear images: every format, depth and channel layout, and the user errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from bloodcell.common.errors import UserError
from bloodcell.detect import smear_headers, smear_reader
from bloodcell.detect.smear_reader import (
    list_images,
    read_smear,
    resize_smear,
    scale_from_rbc_diameter,
)


def bgr_pattern(h: int = 24, w: int = 32) -> np.ndarray:
    """A uint8 BGR image whose three channels all differ and vary across the image."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([(xx * 7) % 256, (yy * 11) % 256, (xx + yy) * 3 % 256]).astype(np.uint8)


def write_cv2(path: Path, img: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), img, params or [])
    return path


def user_error(path: Path) -> str:
    """The message of the UserError that reading ``path`` raises (checked to be one line)."""
    with pytest.raises(UserError) as info:
        read_smear(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message


def test_rgb_png_bgr_png_and_bmp_read_exactly(tmp_path: Path) -> None:
    img = bgr_pattern()
    for name in ("a.png", "a.bmp"):
        out = read_smear(write_cv2(tmp_path / name, img))
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(out, img)


def test_jpeg_reads_close_to_original(tmp_path: Path) -> None:
    img = cv2.GaussianBlur(bgr_pattern(64, 80), (9, 9), 3)
    out = read_smear(write_cv2(tmp_path / "a.JPG", img, [cv2.IMWRITE_JPEG_QUALITY, 98]))
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 3


def test_gray_png_is_replicated_to_three_channels(tmp_path: Path) -> None:
    gray = bgr_pattern()[..., 0]
    out = read_smear(write_cv2(tmp_path / "g.png", gray))
    assert out.shape == gray.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_gray_alpha_png_is_composited_on_white(tmp_path: Path) -> None:
    gray = np.full((10, 12), 100, np.uint8)
    alpha = np.zeros((10, 12), np.uint8)
    alpha[:, 4:8] = 128
    alpha[:, 8:] = 255
    buf = io.BytesIO()
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(buf, "PNG")
    path = tmp_path / "la.png"
    path.write_bytes(buf.getvalue())
    out = read_smear(path)
    assert out.shape == (10, 12, 3)
    assert (out[:, :4] == 255).all()  # transparent: white
    assert (out[:, 4:8] == round(100 * 128 / 255 + 255 * 127 / 255)).all()
    assert (out[:, 8:] == 100).all()


def test_rgba_png_drops_alpha_onto_white(tmp_path: Path) -> None:
    img = bgr_pattern()
    alpha = np.full(img.shape[:2], 255, np.uint8)
    alpha[:5] = 0
    out = read_smear(write_cv2(tmp_path / "a.png", np.dstack([img, alpha])))
    assert out.shape == img.shape
    assert (out[:5] == 255).all()
    np.testing.assert_array_equal(out[5:], img[5:])


def test_16bit_png_is_scaled_by_type_max(tmp_path: Path) -> None:
    img = bgr_pattern()
    out = read_smear(write_cv2(tmp_path / "a16.png", img.astype(np.uint16) * 257))
    np.testing.assert_array_equal(out, img)


def test_16bit_rgb_tiff_is_scaled_and_swapped_to_bgr(tmp_path: Path) -> None:
    img = bgr_pattern()
    tifffile.imwrite(tmp_path / "a16.tif", img[..., ::-1].astype(np.uint16) * 257,
                     photometric="rgb")
    np.testing.assert_array_equal(read_smear(tmp_path / "a16.tif"), img)


def test_pure_red_rgb_tiff_reads_as_bgr(tmp_path: Path) -> None:
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255  # R in RGB
    tifffile.imwrite(tmp_path / "red.tiff", red, photometric="rgb")
    out = read_smear(tmp_path / "red.tiff")
    assert out[0, 0].tolist() == [0, 0, 255]


def test_float32_tiff_in_unit_range_and_above(tmp_path: Path) -> None:
    img = bgr_pattern()
    unit = img[..., ::-1].astype(np.float32) / 255
    tifffile.imwrite(tmp_path / "f.tif", unit, photometric="rgb")
    np.testing.assert_array_equal(read_smear(tmp_path / "f.tif"), img)
    big = unit * 4000  # max above 1: divided by its largest value
    big[0, 0] = 4000
    tifffile.imwrite(tmp_path / "f2.tif", big, photometric="rgb")
    out = read_smear(tmp_path / "f2.tif")
    assert out[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(out[1:], img[1:])


def test_float_gray_tiff_with_nan(tmp_path: Path) -> None:
    gray = np.full((12, 12), 0.5, np.float32)
    gray[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "g.tif", gray)
    out = read_smear(tmp_path / "g.tif")
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[5, 5].tolist() == [128, 128, 128]


def test_rgba_tiff_and_planar_tiff(tmp_path: Path) -> None:
    img = bgr_pattern()
    rgba = np.dstack([img[..., ::-1], np.full(img.shape[:2], 255, np.uint8)])
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")
    np.testing.assert_array_equal(read_smear(tmp_path / "rgba.tif"), img)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(img[..., ::-1], 2, 0),
                     photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_smear(tmp_path / "planar.tif"), img)


def test_palette_and_min_is_white_tiff(tmp_path: Path) -> None:
    index = np.zeros((10, 10), np.uint8)
    index[5:] = 1
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, 1] = (65535, 0, 0)  # entry 1 is red
    tifffile.imwrite(tmp_path / "pal.tif", index, photometric="palette", colormap=cmap)
    out = read_smear(tmp_path / "pal.tif")
    assert out[0, 0].tolist() == [0, 0, 0] and out[9, 9].tolist() == [0, 0, 255]
    tifffile.imwrite(tmp_path / "w.tif", np.full((10, 10), 55, np.uint8),
                     photometric="miniswhite")
    assert read_smear(tmp_path / "w.tif")[0, 0].tolist() == [200, 200, 200]


def test_five_channel_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "multispectral.tif"
    tifffile.imwrite(path, np.zeros((20, 20, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    assert "5 channels" in user_error(path)


def test_large_tiled_bigtiff(tmp_path: Path) -> None:
    h, w = 4000, 5000
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, :, 0] = 200  # top half red
    rgb[h // 2 :, :, 2] = 150  # bottom half blue
    rgb[-1, -1] = (1, 2, 3)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", bigtiff=True, tile=(512, 512),
                     compression="zlib")
    out = read_smear(path)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 200]
    assert out[h - 2, 10].tolist() == [150, 0, 0]
    assert out[-1, -1].tolist() == [3, 2, 1]


def test_multipage_tiff_reads_first_page(tmp_path: Path) -> None:
    img = bgr_pattern()
    pages = np.stack([img[..., ::-1], 255 - img[..., ::-1]])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="rgb")
    np.testing.assert_array_equal(read_smear(tmp_path / "stack.tif"), img)


def test_pyramidal_tiff_reads_level_0(tmp_path: Path) -> None:
    img = bgr_pattern(64, 96)
    with tifffile.TiffWriter(tmp_path / "pyr.tif", bigtiff=True) as tif:
        tif.write(img[..., ::-1], photometric="rgb", tile=(32, 32), subifds=1)
        tif.write(img[::2, ::2, ::-1], photometric="rgb", tile=(32, 32), subfiletype=1)
    np.testing.assert_array_equal(read_smear(tmp_path / "pyr.tif"), img)


def test_lzw_tiff_from_opencv(tmp_path: Path) -> None:
    """OpenCV writes LZW TIFFs; they read even without the optional imagecodecs package."""
    img = bgr_pattern()
    np.testing.assert_array_equal(read_smear(write_cv2(tmp_path / "cv.tif", img)), img)


def test_truncated_png_names_the_file(tmp_path: Path) -> None:
    data = (write_cv2(tmp_path / "full.png", bgr_pattern(64, 64))).read_bytes()
    for cut in (len(data) // 2, len(data) - 6):
        path = tmp_path / f"cut_{cut}.png"
        path.write_bytes(data[:cut])
        assert "truncated" in user_error(path)


def test_truncated_jpeg_and_tiff(tmp_path: Path) -> None:
    img = bgr_pattern(64, 64)
    data = write_cv2(tmp_path / "full.jpg", img).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    user_error(tmp_path / "cut.jpg")
    tifffile.imwrite(tmp_path / "full.tif", img, photometric="rgb")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert "truncated" in user_error(tmp_path / "cut.tif")
    (tmp_path / "head.tif").write_bytes(data[:6])
    user_error(tmp_path / "head.tif")


def test_not_an_image_empty_missing_and_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    assert "not a readable" in user_error(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in user_error(tmp_path / "empty.jpg")
    user_error(tmp_path / "missing.png")
    (tmp_path / "dir.png").mkdir()
    user_error(tmp_path / "dir.png")


def test_too_small_image_is_refused(tmp_path: Path) -> None:
    assert "4x4" in user_error(write_cv2(tmp_path / "tiny.png", bgr_pattern(4, 4)))
    tifffile.imwrite(tmp_path / "tiny.tif", np.zeros((4, 30, 3), np.uint8), photometric="rgb")
    assert "30x4" in user_error(tmp_path / "tiny.tif")


def test_too_large_image_is_refused_before_decoding(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smear_headers, "MAX_PIXELS", 100)
    assert "more than 100 px" in user_error(write_cv2(tmp_path / "big.png", bgr_pattern()))
    tifffile.imwrite(tmp_path / "big.tif", bgr_pattern(), photometric="rgb")
    assert "32x24" in user_error(tmp_path / "big.tif")


def test_list_images(tmp_path: Path) -> None:
    folder = tmp_path / "smears"
    folder.mkdir()
    for name in ("b.PNG", "a.jpeg", "c.Tif", "d.bmp", "e.tiff", "f.jpg", "notes.txt", "._a.png"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "z.png").write_bytes(b"x")
    direct = tmp_path / "single.weird"
    direct.write_bytes(b"x")
    got = list_images([direct, folder, folder / "a.jpeg"])
    assert [p.name for p in got] == ["single.weird", "a.jpeg", "b.PNG", "c.Tif", "d.bmp",
                                     "e.tiff", "f.jpg"]
    with pytest.raises(UserError, match="no such file"):
        list_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        list_images([tmp_path / "empty"])


def test_rescale_sizes() -> None:
    img = np.zeros((50, 100, 3), np.uint8)
    assert resize_smear(img, 0.5).shape == (25, 50, 3)
    assert resize_smear(img, 2.0).shape == (100, 200, 3)
    assert resize_smear(img, 0.333).shape == (17, 33, 3)
    assert resize_smear(img, 1e-6).shape == (1, 1, 3)
    assert resize_smear(img, 1.0) is img
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            resize_smear(img, bad)


def test_rescale_interpolation() -> None:
    img = np.zeros((4, 4), np.uint8)
    img[:, 2:] = 200
    np.testing.assert_array_equal(resize_smear(img, 0.5), [[0, 200], [0, 200]])
    assert resize_smear(img, 2.0)[0].tolist() == [0, 0, 0, 50, 150, 200, 200, 200]


def test_scale_from_rbc_diameter() -> None:
    assert scale_from_rbc_diameter(68.0) == pytest.approx(0.5)
    assert scale_from_rbc_diameter(17.0) == pytest.approx(2.0)
    assert scale_from_rbc_diameter(40.0, model_rbc_px=20.0) == pytest.approx(0.5)
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(UserError):
            scale_from_rbc_diameter(bad)


# --- header sizes checked before decoding (JPEG, BMP) -----------------------------------------


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any OpenCV decode in smear_reader fail the test."""
    def boom(*args, **kwargs):
        raise AssertionError("decoded although the header is too large")
    monkeypatch.setattr(smear_reader.cv2, "imdecode", boom)


def test_jpeg_too_large_by_header_is_refused_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_cv2(tmp_path / "real.jpg", bgr_pattern(64, 80)).read_bytes()
    assert smear_headers.header_size(data) == (80, 64)
    sof = data.find(b"\xff\xc0")
    forged = bytearray(data)
    forged[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width
    exif = b"\xff\xe1" + (2 + 5000).to_bytes(2, "big") + b"Exif\x00" + bytes(4995)
    forged[2:2] = exif * 14 + b"\xff\xff"  # 70 kB of APP1 segments, a fill byte, then SOF0
    (tmp_path / "huge.jpg").write_bytes(bytes(forged))
    no_decoding(monkeypatch)
    assert "30000x30000 px, more than" in user_error(tmp_path / "huge.jpg")
    small = b"\xff\xd8\xff\xc0\x00\x11\x08" + (40000).to_bytes(2, "big") * 2 + b"\xff\xd9"
    (tmp_path / "forged.jpeg").write_bytes(small)  # a frame header alone, no image data
    assert "40000x40000" in user_error(tmp_path / "forged.jpeg")


def test_bmp_too_large_by_header_is_refused_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(write_cv2(tmp_path / "real.bmp", bgr_pattern()).read_bytes())
    assert smear_headers.header_size(bytes(data)) == (32, 24)
    data[18:26] = (30000).to_bytes(4, "little") + (-25000).to_bytes(4, "little", signed=True)
    (tmp_path / "top_down.bmp").write_bytes(bytes(data))
    core = b"BM" + bytes(12) + (12).to_bytes(4, "little") + b"\xff\xff\xff\xff" + bytes(8)
    (tmp_path / "core.bmp").write_bytes(core)  # OS/2 header: 16-bit sides
    no_decoding(monkeypatch)
    assert "30000x25000 px, more than" in user_error(tmp_path / "top_down.bmp")
    assert "65535x65535 px" in user_error(tmp_path / "core.bmp")


def test_top_down_bmp_reads_upright(tmp_path: Path) -> None:
    img = bgr_pattern()  # 32 px x 3 bytes: rows need no padding
    data = bytearray(write_cv2(tmp_path / "up.bmp", img).read_bytes())
    start = int.from_bytes(data[10:14], "little")
    rows = np.frombuffer(bytes(data[start:]), np.uint8).reshape(24, 32 * 3)
    data[start:] = rows[::-1].tobytes()  # stored top row first ...
    data[22:26] = (-24).to_bytes(4, "little", signed=True)  # ... as a negative height says
    (tmp_path / "down.bmp").write_bytes(bytes(data))
    np.testing.assert_array_equal(read_smear(tmp_path / "down.bmp"), img)


# --- reading TIFFs by region ------------------------------------------------------------------


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 BGR image with smooth areas and sharp edges (every 7th row random)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), np.uint8), (5, 5), 2)
    img[::7] = rng.integers(0, 256, img[::7].shape, np.uint8)
    return img


TIFF_LAYOUTS = {
    "tiled": {"tile": (128, 256), "compression": "zlib"},
    "bigtiff": {"tile": (256, 256), "bigtiff": True},
    "striped": {"rowsperstrip": 37, "compression": "zlib"},
    "one_strip": {},  # uncompressed, one strip: read row by row from the file
    "planar": {"planarconfig": "separate", "rowsperstrip": 64, "compression": "zlib"},
}


def write_tiff(path: Path, bgr: np.ndarray, **options) -> Path:
    data = bgr[..., ::-1]
    if options.get("planarconfig") == "separate":
        data = np.moveaxis(data, 2, 0)
    tifffile.imwrite(path, data, photometric="rgb", **options)
    return path


def random_regions(rng: np.random.Generator, width: int, height: int, n: int):
    for _ in range(n):
        x0, y0 = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
        yield x0, y0, int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, height + 1))


@pytest.mark.parametrize("layout", sorted(TIFF_LAYOUTS))
def test_tiff_regions_equal_the_whole_image(tmp_path: Path, layout: str) -> None:
    img = textured(500, 700)
    path = write_tiff(tmp_path / f"{layout}.tif", img, **TIFF_LAYOUTS[layout])
    whole = read_smear(path)
    np.testing.assert_array_equal(whole, img)
    rng = np.random.default_rng(3)
    with smear_reader.open_smear(path) as smear:
        assert smear.by_region and (smear.width, smear.height) == (700, 500)
        for x0, y0, x1, y1 in [(0, 0, 700, 500), (690, 0, 700, 5), *random_regions(
                rng, 700, 500, 25)]:
            region = smear.region(x0, y0, x1, y1)
            assert region.dtype == np.uint8 and region.flags.c_contiguous
            np.testing.assert_array_equal(region, img[y0:y1, x0:x1])
        for bad in [(0, 0, 0, 10), (5, 5, 701, 10), (-1, 0, 10, 10), (0, 10, 10, 5)]:
            with pytest.raises(ValueError):
                smear.region(*bad)


def test_region_reads_decode_only_the_tiles_they_cover(tmp_path: Path) -> None:
    path = write_tiff(tmp_path / "t.tif", textured(512, 1024), tile=(128, 128),
                      compression="zlib")
    with smear_reader.open_smear(path) as smear:
        assert smear.chunk_rows == 128
        store = smear._pixels._rows._store  # tifffile's Zarr store: one key per tile
        keys, get = [], store.get

        async def counted(key, *args, **kwargs):
            keys.append(key)
            return await get(key, *args, **kwargs)

        store.get = counted
        smear.region(130, 140, 250, 250)
        smear.region(250, 0, 260, 300)
    assert keys[0] == "1.1.0"  # x 130..249, y 140..249: tile column 1, tile row 1
    assert sorted(keys[1:]) == ["0.1.0", "0.2.0", "1.1.0", "1.2.0", "2.1.0", "2.2.0"]


def test_in_memory_formats_read_by_region_too(tmp_path: Path) -> None:
    img = textured(120, 90)
    for name in ("a.png", "a.bmp"):
        with smear_reader.open_smear(write_cv2(tmp_path / name, img)) as smear:
            assert not smear.by_region
            region = smear.region(10, 20, 60, 100)
            np.testing.assert_array_equal(region, img[20:100, 10:60])
            region[:] = 0  # a copy: the decoded image is untouched
            np.testing.assert_array_equal(smear.region(10, 20, 60, 100), img[20:100, 10:60])


def test_pyramid_reads_level_0_by_region(tmp_path: Path) -> None:
    img = textured(300, 400)
    with tifffile.TiffWriter(tmp_path / "pyr.ome.tif", bigtiff=True, ome=True) as tif:
        tif.write(img[..., ::-1], photometric="rgb", tile=(64, 64), subifds=1)
        tif.write(img[::2, ::2, ::-1], photometric="rgb", tile=(64, 64), subfiletype=1)
    with smear_reader.open_smear(tmp_path / "pyr.ome.tif") as smear:
        assert smear.by_region and (smear.width, smear.height) == (400, 300)
        np.testing.assert_array_equal(smear.region(37, 50, 333, 290), img[50:290, 37:333])


def test_large_region_tiffs_have_their_own_limit(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    img = textured(300, 400)
    path = write_tiff(tmp_path / "slide.tif", img, tile=(64, 64), compression="zlib")
    monkeypatch.setattr(smear_headers, "MAX_PIXELS", 10_000)  # too large to decode whole ...
    assert "400x300 px, more than 10,000 px" in user_error(path)
    with smear_reader.open_smear(path) as smear:  # ... but fine by region
        np.testing.assert_array_equal(smear.region(0, 0, 400, 300), img)
    lzw = write_cv2(tmp_path / "lzw.tif", img)  # needs imagecodecs: decoded whole, MAX_PIXELS
    with pytest.raises(UserError, match="more than 10,000 px"):
        smear_reader.open_smear(lzw)
    monkeypatch.setattr(smear_reader, "MAX_REGION_PIXELS", 100_000)
    with pytest.raises(UserError, match="400x300 px, more than 100,000 px") as info:
        smear_reader.open_smear(path)
    assert "\n" not in str(info.value)


def test_lzw_tiff_opens_decoded_whole(tmp_path: Path) -> None:
    img = textured(100, 120)
    with smear_reader.open_smear(write_cv2(tmp_path / "cv.tif", img)) as smear:
        assert not smear.by_region
        np.testing.assert_array_equal(smear.region(3, 4, 100, 90), img[4:90, 3:100])


def test_truncated_or_damaged_tiff_gives_one_line_user_error(tmp_path: Path) -> None:
    img = textured(256, 256)
    path = write_tiff(tmp_path / "full.tif", img, tile=(64, 64), compression="zlib",
                      bigtiff=True)
    data = path.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated TIFF") as info:
        smear_reader.open_smear(tmp_path / "cut.tif")
    assert "\n" not in str(info.value) and "cut.tif" in str(info.value)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    damaged = bytearray(data)
    damaged[offset : offset + count] = bytes(count)  # tile 5 (row 1, column 1): not zlib
    (tmp_path / "damaged.tif").write_bytes(bytes(damaged))
    with smear_reader.open_smear(tmp_path / "damaged.tif") as smear:
        np.testing.assert_array_equal(smear.region(0, 0, 64, 64), img[:64, :64])
        with pytest.raises(UserError, match="damaged TIFF") as info:
            smear.region(60, 60, 100, 100)
    assert "\n" not in str(info.value) and "damaged.tif" in str(info.value)


def test_float_tiff_by_region_is_scaled_by_the_whole_image_peak(tmp_path: Path) -> None:
    img = textured(200, 300)
    values = img[..., ::-1].astype(np.float32) * 4
    values[190, 290] = 255 * 4  # the peak sits in the last tile
    tifffile.imwrite(tmp_path / "f.tif", values, photometric="rgb", tile=(64, 64))
    with smear_reader.open_smear(tmp_path / "f.tif") as smear:
        np.testing.assert_array_equal(smear.region(0, 0, 50, 50), img[:50, :50])


def test_gray_alpha_tiff_and_bilevel_miniswhite(tmp_path: Path) -> None:
    gray = np.full((10, 12), 100, np.uint8)
    alpha = np.zeros((10, 12), np.uint8)
    alpha[:, 6:] = 255
    tifffile.imwrite(tmp_path / "ga.tif", np.dstack([gray, alpha]), photometric="minisblack",
                     extrasamples=["unassalpha"], planarconfig="contig")
    out = read_smear(tmp_path / "ga.tif")
    assert (out[:, :6] == 255).all() and (out[:, 6:] == 100).all()
    ink = np.zeros((10, 12), bool)
    ink[:5] = True
    tifffile.imwrite(tmp_path / "fax.tif", ink, photometric="miniswhite")
    out = read_smear(tmp_path / "fax.tif")
    assert (out[:5] == 0).all() and (out[5:] == 255).all()  # a set bit is black, as libtiff


# --- the scaled, band-cached view -------------------------------------------------------------


def walk_rows(view, step: int) -> np.ndarray:
    return np.concatenate([view[y : y + step] for y in range(0, view.shape[0], step)])


@pytest.mark.parametrize("name", ["t.tif", "s.tif", "a.png"])
def test_scaled_view_at_1_equals_the_whole_image(tmp_path: Path, name: str) -> None:
    img = textured(500, 700)
    path = tmp_path / name
    if name == "t.tif":
        write_tiff(path, img, tile=(128, 128), compression="zlib")
    elif name == "s.tif":
        write_tiff(path, img)
    else:
        write_cv2(path, img)
    rgb = read_smear(path)[..., ::-1]
    rng = np.random.default_rng(5)
    with smear_reader.open_smear(path) as smear:
        view = smear.scaled(1.0)
        assert isinstance(view, smear_reader.ScaledSmear) and view.shape == (500, 700, 3)
        np.testing.assert_array_equal(walk_rows(view, 224), rgb)
        np.testing.assert_array_equal(np.asarray(view), rgb)
        for x0, y0, x1, y1 in random_regions(rng, 700, 500, 30):
            np.testing.assert_array_equal(view[y0:y1, x0:x1], rgb[y0:y1, x0:x1])


@pytest.mark.parametrize("scale", [0.5, 0.37, 1.7])
@pytest.mark.parametrize("band_rows", [448, 33])
def test_scaled_view_is_close_to_rescale(tmp_path: Path, scale: float, band_rows: int) -> None:
    """The tolerance stated in ScaledSmear's docstring: at most 1 grey level, mean < 0.2, at
    band edges too (small bands put many edges in the image)."""
    img = textured(500, 700)
    path = write_tiff(tmp_path / "t.tif", img, tile=(64, 128), compression="zlib")
    expected = resize_smear(read_smear(path), scale)[..., ::-1]
    with smear_reader.open_smear(path) as smear:
        view = smear_reader.ScaledSmear(smear, scale, band_rows=band_rows)
        assert view.shape == expected.shape
        got = walk_rows(view, 50)
        diff = np.abs(got.astype(int) - expected)
        assert diff.max() <= 1 and diff.mean() < 0.2
        np.testing.assert_array_equal(view[100:180, 33:250], got[100:180, 33:250])


def test_scaled_view_indexing(tmp_path: Path) -> None:
    img = textured(300, 400)
    path = write_tiff(tmp_path / "t.tif", img, tile=(64, 64))
    rgb = img[..., ::-1]
    with smear_reader.open_smear(path) as smear:
        view = smear.scaled(1.0)
        assert len(view) == 300 and view.ndim == 3 and view.dtype == np.uint8
        for key in [(5, 7), (-1, slice(None)), (slice(10, 90, 3), slice(None, None, 7)),
                    (slice(250, 400), slice(-30, None)), (slice(5, 20), slice(0, 9), 1),
                    (slice(3, 3), slice(0, 10)), slice(280, None), (slice(0, 9), 399, [2, 0])]:
            got = view[key]
            np.testing.assert_array_equal(got, rgb[key])
        view[0:224, 0:224][:] = 0  # slices are copies: the cache is untouched
        np.testing.assert_array_equal(view[0:10, 0:10], rgb[:10, :10])
        with pytest.raises(IndexError):
            view[300, 0]
        with pytest.raises(IndexError):
            view[::-1]
        with pytest.raises(TypeError):
            view[[1, 2]]


def test_a_row_of_tiles_decodes_the_file_once(tmp_path: Path) -> None:
    path = write_tiff(tmp_path / "t.tif", textured(700, 1000), tile=(128, 128),
                      compression="zlib")
    with smear_reader.open_smear(path) as smear:
        reads = []
        read = smear._pixels.read
        smear._pixels.read = lambda *box: reads.append(box) or read(*box)
        view = smear.scaled(1.0)
        for y in (0, 224, 448, 476):  # whole_smear.tile_origins(700, 224)
            for x in (0, 224, 448, 672, 776):
                view[y : y + 224, x : x + 224]
        # full-width bands of whole tile rows: rows 0..511 (two rows of tiles) and 448..699
        assert reads == [(0, 512, 0, 1000), (448, 700, 0, 1000)]


def test_small_images_scale_to_a_plain_array(tmp_path: Path) -> None:
    img = textured(150, 400)
    path = write_cv2(tmp_path / "s.png", img)
    with smear_reader.open_smear(path) as smear:
        small = smear.scaled(1.0)
        assert isinstance(small, np.ndarray)
        np.testing.assert_array_equal(small, img[..., ::-1])
        assert isinstance(smear.scaled(1.6), smear_reader.ScaledSmear)


def test_overview_fits_max_side_and_matches_rescale(tmp_path: Path) -> None:
    img = textured(500, 700)
    path = write_tiff(tmp_path / "t.tif", img, tile=(64, 64), compression="zlib")
    with smear_reader.open_smear(path) as smear:
        small, factor = smear.overview(300)
        assert factor == pytest.approx(300 / 700) and small.shape == (214, 300, 3)
        diff = np.abs(small.astype(int) - resize_smear(img, factor))
        assert diff.max() <= 1 and diff.mean() < 0.2
        whole, one = smear.overview(5000)
        assert one == 1.0
        np.testing.assert_array_equal(whole, img)


def test_detect_slide_on_the_view_equals_the_in_memory_image(tmp_path: Path) -> None:
    """whole_smear.detect_slide on ScaledSmear at scale 1 gives exactly the detections it gives on
    the whole RGB image. The stand-in detector derives boxes from each tile's pixels (the
    brightest spots, classes and scores from their values), so any pixel difference shows."""
    from bloodcell.detect.whole_smear import SlideConfig, detect_slide

    def detect(tiles: np.ndarray) -> tuple[np.ndarray, ...]:
        n, k = len(tiles), 4
        level = tiles.astype(np.int64).sum(axis=3).reshape(n, -1)
        spots = np.argsort(-level, axis=1, kind="stable")[:, :k]
        ys, xs = np.divmod(spots, 224)
        side = 8 + level[np.arange(n)[:, None], spots] % 40
        boxes = np.stack([ys, xs, np.minimum(ys + side, 224), np.minimum(xs + side, 224)],
                         axis=2).astype(np.float32)
        scores = (0.3 + (level[np.arange(n)[:, None], spots] % 70) / 100).astype(np.float32)
        return boxes, scores, (spots % 10).astype(np.int32), np.full(n, k)

    rng = np.random.default_rng(9)
    img = textured(700, 900)
    for x, y in rng.integers(0, 900, (60, 2)):
        cv2.circle(img, (int(x), int(y) % 700), 17, (150, 90, 200), -1)
    path = write_tiff(tmp_path / "smear.tif", img, tile=(128, 128), compression="zlib")
    rgb = np.ascontiguousarray(read_smear(path)[..., ::-1])
    expected = detect_slide(detect, rgb, SlideConfig())
    assert len(expected) > 50
    with smear_reader.open_smear(path) as smear:
        got = detect_slide(detect, smear.scaled(1.0), SlideConfig())
    pd.testing.assert_frame_equal(got, expected)
