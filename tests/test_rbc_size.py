"""bloodcell.detect.rbc_size: the RBC diameter estimated from the image, and `detect
--rbc-diameter`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.common.errors import UserError
from bloodcell.common.tile import MODEL_RBC_PX
from bloodcell.detect.rbc_size import (
    BOX_MARGIN,
    cell_mask,
    crops,
    estimate_rbc_diameter,
    fill_small_holes,
    rbc_diameter_arg,
    require_estimate,
    resolve_scale,
)
from conftest import run_cli

BACKGROUND = (215, 225, 232)  # BGR, light glass
RBC = (150, 130, 200)  # BGR, pink
WBC = (160, 90, 120)  # BGR, purple


def boxed(diameter: float) -> float:
    """The estimate's convention for a cell ``diameter`` px across: the side of its box with
    the margin the estimate adds (rbc_size.BOX_MARGIN)."""
    return diameter * BOX_MARGIN


def smear(diameter: float, touching: bool, pallor: bool = False, wbc: int = 3,
          seed: int = 0) -> np.ndarray:
    """A uint8 BGR smear with RBC discs of ``diameter`` px (each within +-4 %) covering about
    35 % of a light background, either touching (centres >= 0.95 diameter apart, so some
    overlap) or apart (>= 1.3), and ``wbc`` white-cell-like discs 1.8 x as wide; mildly
    blurred, with noise."""
    rng = np.random.default_rng(seed)
    w, h = max(640, int(12 * diameter)), max(480, int(9 * diameter))
    img = np.full((h, w, 3), BACKGROUND, np.uint8)
    gap = 0.95 if touching else 1.3
    want = int(0.35 * w * h / (np.pi * diameter**2 / 4))
    centres = np.empty((0, 2))
    for c in rng.uniform(0, 1, (20 * want, 2)) * (w, h):
        if len(centres) >= want:
            break
        if not len(centres) or np.hypot(*(centres - c).T).min() >= gap * diameter:
            centres = np.vstack([centres, c])
    for c in centres:
        r = diameter / 2 * rng.uniform(0.96, 1.04)
        centre = (int(c[0] * 16), int(c[1] * 16))
        cv2.circle(img, centre, int(r * 16), RBC, -1, cv2.LINE_AA, 4)
        if pallor:
            cv2.circle(img, centre, int(r * 0.35 * 16), (200, 205, 228), -1, cv2.LINE_AA, 4)
    for _ in range(wbc):
        c = rng.uniform(0.2, 0.8, 2) * (w, h)
        cv2.circle(img, (int(c[0]), int(c[1])), int(0.9 * diameter), WBC, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), max(0.7, diameter / 60))
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("diameter", [20, 34, 56, 90, 120])
@pytest.mark.parametrize("touching", [False, True])
def test_estimate_on_drawn_discs_is_within_10_percent(diameter, touching) -> None:
    estimate = estimate_rbc_diameter(smear(diameter, touching))
    assert estimate == pytest.approx(boxed(diameter), rel=0.10)


@pytest.mark.parametrize("diameter", [28, 80])
def test_central_pallor_is_filled(diameter) -> None:
    estimate = estimate_rbc_diameter(smear(diameter, touching=True, pallor=True, seed=1))
    assert estimate == pytest.approx(boxed(diameter), rel=0.10)


def test_few_large_white_cells_do_not_move_the_estimate() -> None:
    plain = estimate_rbc_diameter(smear(40, touching=False, wbc=0, seed=2))
    with_wbc = estimate_rbc_diameter(smear(40, touching=False, wbc=6, seed=2))
    assert with_wbc == pytest.approx(plain, rel=0.05)


def test_estimate_is_deterministic_and_in_the_images_pixels() -> None:
    img = smear(40, touching=True)
    assert estimate_rbc_diameter(img) == estimate_rbc_diameter(img.copy())
    doubled = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    assert estimate_rbc_diameter(doubled) == pytest.approx(2 * estimate_rbc_diameter(img),
                                                           rel=0.06)


@pytest.mark.parametrize("image", [
    np.full((400, 500, 3), 225, np.uint8),  # blank glass
    np.zeros((400, 500, 3), np.uint8),  # black
    np.clip(np.random.default_rng(0).normal(220, 3, (400, 500, 3)), 0, 255).astype(np.uint8),
])
def test_no_estimate_without_cells(image) -> None:
    assert estimate_rbc_diameter(image) is None


def test_no_estimate_for_one_cell() -> None:
    img = np.full((480, 640, 3), BACKGROUND, np.uint8)
    cv2.circle(img, (320, 240), 30, RBC, -1)
    assert estimate_rbc_diameter(img) is None


def test_rejects_non_bgr_arrays() -> None:
    with pytest.raises(ValueError, match="BGR"):
        estimate_rbc_diameter(np.zeros((100, 100), np.uint8))


def test_large_images_are_estimated_on_four_fixed_windows() -> None:
    img = np.zeros((3000, 5000, 3), np.uint8)
    windows = crops(img)
    assert len(windows) == 4 and all(w.shape == (1024, 1024, 3) for w in windows)
    assert all(np.shares_memory(w, img) for w in windows)
    assert [w.shape[:2] for w in crops(np.zeros((1200, 3000, 3), np.uint8))] == [(1024, 1024)] * 2
    assert crops(img[:1200, :1280])[0].shape == (1200, 1280, 3)  # small enough: whole image
    tiled = np.tile(smear(30, touching=False), (5, 4, 1))[:2200, :2400]
    assert estimate_rbc_diameter(np.ascontiguousarray(tiled)) == pytest.approx(boxed(30), rel=0.10)


def test_pallor_holes_are_filled_but_not_the_image_border_background() -> None:
    mask = np.zeros((50, 50), bool)
    mask[10:30, 10:30] = True
    mask[15:18, 15:18] = False  # a hole of 9 px
    mask[20:28, 20:28] = False  # a hole of 64 px
    filled = fill_small_holes(mask, 20)
    assert filled[16, 16] and not filled[24, 24] and not filled[0, 0]
    assert fill_small_holes(mask, np.inf)[24, 24]
    assert cell_mask(np.full((60, 60, 3), 200, np.uint8)) is None


def test_resolve_scale() -> None:
    img = smear(68, touching=False)
    assert resolve_scale(img, 0.7, None) == (0.7, None)
    assert resolve_scale(img, 0.7, 68.0) == (pytest.approx(MODEL_RBC_PX / 68), None)
    scale, estimate = resolve_scale(img, 0.7, "auto")
    assert estimate == pytest.approx(boxed(68), rel=0.10)
    assert scale == pytest.approx(MODEL_RBC_PX / estimate)
    with pytest.raises(ValueError, match="cannot estimate"):
        resolve_scale(np.full((300, 300, 3), 220, np.uint8), 1.0, "auto")


def test_require_estimate_names_the_image_and_the_fix() -> None:
    with pytest.raises(UserError) as info:
        require_estimate("blank.png", np.full((300, 300, 3), 220, np.uint8), 1.0, "auto")
    message = str(info.value)
    assert "\n" not in message and "blank.png" in message and "--rbc-diameter PX" in message


def test_rbc_diameter_arg() -> None:
    import argparse

    assert rbc_diameter_arg("auto") == "auto" and rbc_diameter_arg("AUTO") == "auto"
    assert rbc_diameter_arg("48.5") == 48.5
    for bad in ("foo", "0", "-3", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            rbc_diameter_arg(bad)


@pytest.mark.parametrize("value", ["foo", "-1"])
def test_detect_refuses_a_bad_rbc_diameter_in_one_line(value, tmp_path, capsys) -> None:
    code, err = run_cli(["detect", tmp_path / "a.png", "--out", tmp_path / "out",
                         "--rbc-diameter", value], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--rbc-diameter" in err and value in err
    assert not (tmp_path / "out").exists()


def test_detect_auto_scale_logs_the_estimate_and_refuses_a_blank_image(tmp_path, caplog):
    from bloodcell.detect.api import Detector
    from bloodcell.detect.commands import smear_scale
    from bloodcell.detect.smear_reader import open_smear
    from bloodcell.detect.whole_smear import SlideConfig

    detector = Detector(Path("stand-in.keras"), None, (), SlideConfig(), MODEL_RBC_PX)
    cv2.imwrite(str(tmp_path / "smear.png"), smear(68, touching=True))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((300, 300, 3), 220, np.uint8))
    with caplog.at_level("INFO", logger="bloodcell"), open_smear(tmp_path / "smear.png") as s:
        scale = smear_scale(detector, s, "auto")
    assert scale == pytest.approx(MODEL_RBC_PX / boxed(68), rel=0.10)
    assert "smear.png: estimated RBC diameter" in caplog.text and "-> scale" in caplog.text
    with pytest.raises(UserError, match="blank.png.*--rbc-diameter PX"), \
            open_smear(tmp_path / "blank.png") as s:
        smear_scale(detector, s, "auto")


# --------------------------------------------------------------------------- real smears

def _tight_size(bgr: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> float:
    """Median sqrt(w * h), px, of the cell's own extent inside each annotated box that
    overlaps no other: the tight box of the largest component of the cell mask in it
    (annotators' boxes carry a margin of several px a side)."""
    mask = fill_small_holes(cell_mask(bgr), np.inf).astype(np.uint8)
    sizes = []
    for i, (x, y, w, h) in enumerate(boxes):
        if any(x < u + s and u < x + w and y < v + t and v < y + h
               for j, (u, v, s, t) in enumerate(boxes) if j != i):
            continue
        part = np.ascontiguousarray(mask[max(0, int(y)) : int(y + h), max(0, int(x)) : int(x + w)])
        if part.size == 0:
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        if n > 1:
            k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            sizes.append(np.sqrt(stats[k, cv2.CC_STAT_WIDTH] * stats[k, cv2.CC_STAT_HEIGHT]))
    return float(statistics.median(sizes))


def _spread(items: list, n: int = 5) -> list:
    """``n`` items evenly spread over the list (fixed, not chosen by result)."""
    step = len(items) // n
    return items[step // 2 :: step][:n]


def test_iml_images_within_15_percent_of_their_cells(shared_data) -> None:
    root = shared_data / "iml-malaria"
    entries = json.loads((root / "annotations.json").read_text())
    items = []
    for e in sorted(entries, key=lambda e: e["image_name"]):
        boxes = [tuple(float(o["bbox"][k]) for k in "xywh") for o in e["objects"]
                 if o["type"] == "red blood cell"]
        if (root / "IML_Malaria" / e["image_name"]).is_file() and len(boxes) >= 5:
            items.append((root / "IML_Malaria" / e["image_name"], boxes))
    for path, boxes in _spread(items):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        estimate = estimate_rbc_diameter(bgr)
        assert estimate == pytest.approx(boxed(_tight_size(bgr, boxes)), rel=0.15), path.name
        annotated = statistics.median(np.sqrt(b[2] * b[3]) for b in boxes)
        assert estimate == pytest.approx(annotated, rel=0.15), path.name  # boxes: looser


def test_bccd_images_within_15_percent_of_the_annotated_boxes(shared_data) -> None:
    from defusedxml import ElementTree

    root = shared_data / "bccd" / "BCCD"
    items = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        boxes = []
        for obj in ElementTree.parse(xml).getroot().iter("object"):
            if obj.findtext("name") == "RBC":
                b = obj.find("bndbox")
                x0, y0, x1, y1 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append((x0, y0, x1 - x0, y1 - y0))
        if len(boxes) >= 5:  # some files under-label RBCs
            items.append((root / "JPEGImages" / f"{xml.stem}.jpg", boxes))
    ratios = []
    for path, boxes in _spread(items):
        estimate = estimate_rbc_diameter(cv2.imread(str(path), cv2.IMREAD_COLOR))
        annotated = statistics.median(np.sqrt(b[2] * b[3]) for b in boxes)
        assert estimate == pytest.approx(annotated, rel=0.30), path.name
        ratios.append(estimate / annotated)
    assert statistics.median(ratios) == pytest.approx(1.0, abs=0.15)
