"""Reading users' smear images: every format, depth and channel layout, and the user errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from bloodcell import smear_io
from bloodcell.errors import UserError
from bloodcell.smear_io import list_images, read_smear, rescale, scale_from_rbc_diameter


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
    monkeypatch.setattr(smear_io, "MAX_PIXELS", 100)
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
    assert rescale(img, 0.5).shape == (25, 50, 3)
    assert rescale(img, 2.0).shape == (100, 200, 3)
    assert rescale(img, 0.333).shape == (17, 33, 3)
    assert rescale(img, 1e-6).shape == (1, 1, 3)
    assert rescale(img, 1.0) is img
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            rescale(img, bad)


def test_rescale_interpolation() -> None:
    img = np.zeros((4, 4), np.uint8)
    img[:, 2:] = 200
    np.testing.assert_array_equal(rescale(img, 0.5), [[0, 200], [0, 200]])
    assert rescale(img, 2.0)[0].tolist() == [0, 0, 0, 50, 150, 200, 200, 200]


def test_scale_from_rbc_diameter() -> None:
    assert scale_from_rbc_diameter(68.0) == pytest.approx(0.5)
    assert scale_from_rbc_diameter(17.0) == pytest.approx(2.0)
    assert scale_from_rbc_diameter(40.0, model_rbc_px=20.0) == pytest.approx(0.5)
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(UserError):
            scale_from_rbc_diameter(bad)
