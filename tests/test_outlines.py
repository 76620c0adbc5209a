"""Cell outlines and measurements (bloodcell.detect.outlines) and their GeoJSON for QuPath."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bloodcell.detect.outlines import cell_shape, cell_shapes, mean_od
from bloodcell.detect.outputs import write_geojson


def disc_image(side: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    """A light smear background (RGB) with one stained disc."""
    img = np.full((side, side, 3), (235, 225, 230), np.uint8)
    cv2.circle(img, centre, radius, (200, 120, 140), -1)
    return img


def ring_area(ring: list[list[float]]) -> float:
    pts = np.asarray(ring[:-1], np.float64)
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_a_disc_gets_a_round_outline_and_its_area():
    img = disc_image(120, (60, 50), 15)
    shape = cell_shape(img, (43.0, 33.0, 34.0, 34.0), 1.0)
    assert shape.source == "mask"
    assert (shape.ring[0] == shape.ring[-1]).all() and len(shape.ring) > 8  # closed, round
    true_area = math.pi * 15**2
    assert shape.measurements["Area px^2"] == pytest.approx(true_area, rel=0.05)
    assert ring_area(shape.ring) == pytest.approx(shape.measurements["Area px^2"], rel=0.03)
    assert shape.measurements["Perimeter px"] == pytest.approx(2 * math.pi * 15, rel=0.08)
    xs, ys = zip(*shape.ring)
    assert 43 <= min(xs) and max(xs) <= 77 and 33 <= min(ys) and max(ys) <= 67
    assert shape.measurements["Mean OD"] == pytest.approx(mean_od(
        np.array([[200, 120, 140]], np.uint8)), abs=0.02)


def test_outlines_come_back_in_input_pixels_and_microns():
    """The view is the input at half size: outlines and areas are in input px (x2, x4),
    and in µm / µm² with a pixel size."""
    view = disc_image(120, (60, 50), 15)
    box = (86.0, 66.0, 68.0, 68.0)  # the view's box (43, 33, 34, 34) in input px
    half = cell_shape(view, box, 0.5)
    full = cell_shape(view, (43.0, 33.0, 34.0, 34.0), 1.0)
    assert half.measurements["Area px^2"] == pytest.approx(4 * full.measurements["Area px^2"])
    assert ring_area(half.ring) == pytest.approx(4 * ring_area(full.ring), rel=0.02)
    um = cell_shape(view, box, 0.5, pixel_size=0.25)
    assert um.measurements["Area µm^2"] == pytest.approx(
        half.measurements["Area px^2"] * 0.0625, rel=1e-3)
    assert um.measurements["Perimeter µm"] == pytest.approx(
        half.measurements["Perimeter px"] * 0.25, rel=1e-3)


def test_a_box_without_a_cell_keeps_its_rectangle():
    blank = np.full((100, 100, 3), 230, np.uint8)
    for box in [(10.0, 10.0, 30.0, 30.0), (98.5, 98.5, 1.5, 1.5)]:
        shape = cell_shape(blank, box, 1.0)
        assert shape.source == "box"
        x, y, w, h = box
        assert shape.ring.tolist() == [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
        assert shape.measurements["Area px^2"] == pytest.approx(w * h)


def test_geojson_geometry_is_the_outline_with_measurements(tmp_path: Path):
    img = disc_image(120, (60, 50), 15)
    det = pd.DataFrame({"image_id": ["a", "a"], "class_idx": [9, 2], "score": [0.9, 0.5],
                        "x": [43.0, 2.0], "y": [33.0, 90.0], "w": [34.0, 20.0],
                        "h": [34.0, 20.0]})
    shapes = cell_shapes(img, det[["x", "y", "w", "h"]].to_numpy(), 1.0)
    shaped = det.assign(outline=[s.ring for s in shapes],
                        measurements=[s.measurements for s in shapes])
    write_geojson(shaped.iloc[::-1], tmp_path / "a.geojson")  # order is the writer's
    features = json.loads((tmp_path / "a.geojson").read_text())["features"]
    rbc, blank = features
    assert rbc["properties"]["classification"]["name"] == "Healthy RBC"
    assert rbc["geometry"]["coordinates"] == [shapes[0].ring.tolist()]
    assert set(rbc["properties"]["measurements"]) == {"score", "Area px^2", "Perimeter px",
                                                       "Mean OD"}
    assert blank["properties"]["classification"]["name"] == "Neutrophil"
    assert len(blank["geometry"]["coordinates"][0]) == 5


def test_a_touching_neighbour_is_cut_off_at_the_box():
    """Two stained discs that touch: the outline of the left one's box keeps to that disc
    (the neighbour's part in the box's corner is outside the inscribed ellipse)."""
    img = disc_image(120, (45, 60), 15)
    cv2.circle(img, (68, 52), 15, (200, 120, 140), -1)
    shape = cell_shape(img, (30.0, 45.0, 30.0, 30.0), 1.0)
    assert shape.source == "mask"
    assert shape.measurements["Area px^2"] == pytest.approx(math.pi * 15**2, rel=0.02)
    assert max(x for x, _ in shape.ring) <= 60 * 1.02
