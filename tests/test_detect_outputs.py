"""Outputs of `bloodcell detect`: summary counts, CSV, COCO, QuPath GeoJSON, annotated PNG."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from bloodcell.common.classes import CLASS_INDEX, CLASS_NAMES
from bloodcell.common.draw import CLASS_COLOURS_BGR
from bloodcell.common.image_files import write_png
from bloodcell.detect.outputs import (
    SUMMARY_COLUMNS,
    annotate,
    summary_row,
    write_coco,
    write_geojson,
    write_summary_csv,
)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Detections from (image_id, class name, score, x, y, w, h) tuples."""
    return pd.DataFrame(
        [(i, CLASS_INDEX[c], s, x, y, w, h) for i, c, s, x, y, w, h in rows],
        columns=["image_id", "class_idx", "score", "x", "y", "w", "h"])


def hand_case() -> pd.DataFrame:
    """Image a: 2 neutrophils, 1 lymphocyte, 1 eosinophil, 1 partial WBC, 1 platelet,
    3 infected and 7 healthy RBCs. Image b: one healthy RBC."""
    rows = [("a", "Neutrophil", 0.9, 10, 10, 40, 40), ("a", "Neutrophil", 0.8, 60, 10, 40, 40),
            ("a", "Lymphocytes", 0.7, 110, 10, 30, 30), ("a", "Eosinophil", 0.95, 10, 60, 40, 40),
            ("a", "partialWBC", 0.5, 0, 100, 20, 30), ("a", "Thrombocytes", 0.6, 150, 150, 8, 8)]
    rows += [("a", "Infected", 0.9, 20.0 + 30 * k, 180, 30, 30) for k in range(3)]
    rows += [("a", "_", 0.99, 5.0 + 30 * k, 140, 30, 30) for k in range(7)]
    rows += [("b", "_", 0.5, 1, 2, 30, 30)]
    return frame(rows)


def test_summary_row_counts_differential_and_parasitemia() -> None:
    row = summary_row("a", hand_case())
    assert list(row) == list(SUMMARY_COLUMNS)
    assert row["image_id"] == "a"
    assert (row["n_neutrophil"], row["n_lymphocyte"], row["n_eosinophil"]) == (2, 1, 1)
    assert (row["n_basophil"], row["n_monocyte"], row["n_partial_wbc"]) == (0, 0, 1)
    assert (row["n_thrombocyte"], row["n_platelet_clump"]) == (1, 0)
    assert (row["n_infected_rbc"], row["n_healthy_rbc"]) == (3, 7)
    assert (row["n_wbc"], row["n_rbc"]) == (4, 10)
    assert row["pct_neutrophil"] == 50.0
    assert row["pct_lymphocyte"] == row["pct_eosinophil"] == 25.0
    assert row["pct_basophil"] == row["pct_monocyte"] == 0.0
    assert row["parasitemia_pct"] == 30.0


def test_summary_row_without_cells_gives_nan() -> None:
    row = summary_row("b", hand_case())
    assert row["n_healthy_rbc"] == 1 and row["n_wbc"] == 0
    assert all(math.isnan(row[c]) for c in SUMMARY_COLUMNS if c.startswith("pct_"))
    assert row["parasitemia_pct"] == 0.0
    empty = summary_row("c", frame([]))
    assert empty["n_rbc"] == 0 and math.isnan(empty["parasitemia_pct"])
    assert sum(empty[c] for c in SUMMARY_COLUMNS if c.startswith("n_")) == 0


def test_summary_csv_sorted_deterministic_with_empty_cells(tmp_path: Path) -> None:
    det = hand_case()
    rows = [summary_row(i, det) for i in ("b", "a")]
    rows[0]["file"] = "b.png"
    rows[0]["zz_extra"] = 1
    write_summary_csv(rows, tmp_path / "one.csv")
    write_summary_csv(rows[::-1], tmp_path / "two.csv")
    text = (tmp_path / "one.csv").read_bytes()
    assert text == (tmp_path / "two.csv").read_bytes()
    assert b"\r" not in text
    table = list(csv.DictReader((tmp_path / "one.csv").open(newline="")))
    # a detect run's file (and status) right after image_id, other extra keys at the end
    assert list(table[0]) == ["image_id", "file", *SUMMARY_COLUMNS[1:], "zz_extra"]
    assert [r["image_id"] for r in table] == ["a", "b"]
    assert table[0]["pct_neutrophil"] == "50.00" and table[0]["parasitemia_pct"] == "30.00"
    assert table[0]["n_healthy_rbc"] == "7" and table[0]["file"] == ""
    assert table[1]["pct_monocyte"] == "" and table[1]["file"] == "b.png"
    assert pd.read_csv(tmp_path / "one.csv")["pct_neutrophil"].isna().tolist() == [False, True]
    with pytest.raises(ValueError):
        write_summary_csv([{"image_id": "x"}], tmp_path / "bad.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "two.csv"]


def test_geojson_has_qupath_keys_and_round_trips(tmp_path: Path) -> None:
    det = frame([("a", "Infected", 0.123456, 10.004, 20.5, 30.25, 40),
                 ("a", "Neutrophil", 0.9, 1, 2, 3, 4)])
    path = tmp_path / "a.geojson"
    write_geojson(det, path)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 2
    first, second = doc["features"]
    assert first["properties"]["classification"]["name"] == "Neutrophil"
    f = second
    assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
    assert f["geometry"]["coordinates"] == [[[10.0, 20.5], [40.25, 20.5], [40.25, 60.5],
                                             [10.0, 60.5], [10.0, 20.5]]]
    props = f["properties"]
    assert props["objectType"] == props["object_type"] == "detection"
    b, g, r = CLASS_COLOURS_BGR[CLASS_INDEX["Infected"]]
    assert props["classification"] == {"name": "Infected RBC", "color": [r, g, b]}
    assert props["measurements"] == {"score": 0.1235}
    write_geojson(det.iloc[::-1], tmp_path / "b.geojson")
    assert path.read_bytes() == (tmp_path / "b.geojson").read_bytes()
    with pytest.raises(ValueError, match="one image"):
        write_geojson(hand_case(), tmp_path / "c.geojson")
    write_geojson(frame([]), tmp_path / "empty.geojson")
    assert json.loads((tmp_path / "empty.geojson").read_text())["features"] == []


def test_coco_loads_with_pycocotools(tmp_path: Path) -> None:
    det = hand_case()
    images = [("b", "smears/b.png", 64, 48), ("a", "smears/a.tif", 300, 240),
              ("c", "smears/c.jpg", 100, 100)]
    path = tmp_path / "detections.json"
    write_coco(det, images, path)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.loadImgs(1)[0]["file_name"] == "smears/a.tif"
    assert len(coco.getAnnIds(imgIds=[1])) == len(det) - 1
    assert len(coco.getAnnIds(imgIds=[3])) == 0
    cats = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"]) for c in cats] == [(i + 1, n) for i, n in enumerate(CLASS_NAMES)]
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]
    assert ann["bbox"] == [1.0, 2.0, 30.0, 30.0] and ann["score"] == 0.5
    assert ann["category_id"] == CLASS_INDEX["_"] + 1 and ann["area"] == 900.0
    write_coco(det.sample(frac=1, random_state=0), images[::-1], tmp_path / "again.json")
    assert path.read_bytes() == (tmp_path / "again.json").read_bytes()
    with pytest.raises(ValueError):
        write_coco(det, images[1:], tmp_path / "missing.json")


def test_annotate_small_image_draws_class_colours_and_legend() -> None:
    img = np.full((224, 224, 3), 128, np.uint8)
    det = frame([("a", "Infected", 0.9, 20, 30, 40, 50), ("a", "_", 0.9, 100, 100, 30, 30),
                 ("a", "_", 0.8, 150, 150, 30, 30)])
    out = annotate(img, det)
    assert out.dtype == np.uint8 and out.shape[0] >= 224 and out.shape[1] > 224
    infected = CLASS_COLOURS_BGR[CLASS_INDEX["Infected"]]
    healthy = CLASS_COLOURS_BGR[CLASS_INDEX["_"]]
    assert out[30, 40].tolist() == list(infected)  # top edge of the infected box
    assert out[79, 20].tolist() == list(infected)  # bottom-left corner
    assert out[100, 115].tolist() == list(healthy)
    assert out[50, 40].tolist() == [128, 128, 128]  # inside a box: untouched
    np.testing.assert_array_equal(img, 128)  # the input is not modified
    legend = out[:, 224:]
    for colour in (infected, healthy):
        assert (legend == colour).all(axis=2).sum() > 20  # a swatch of each class present
    assert not (legend == CLASS_COLOURS_BGR[CLASS_INDEX["Neutrophil"]]).all(axis=2).any()


def test_annotate_large_image_scales_lines_and_legend() -> None:
    small = annotate(np.zeros((224, 224, 3), np.uint8), frame([]))
    big_img = np.zeros((3000, 4500, 3), np.uint8)
    det = frame([("a", "Neutrophil", 0.9, 1000, 1000, 200, 200)])
    big = annotate(big_img, det)
    assert big.shape[0] == 3000 and big.shape[1] - 4500 > 2 * (small.shape[1] - 224)
    colour = CLASS_COLOURS_BGR[CLASS_INDEX["Neutrophil"]]
    column = (big[1000:1200, 1000:1010] == colour).all(axis=2)
    assert column.all(axis=0).sum() >= 2  # line wider than one pixel
    with pytest.raises(ValueError):
        annotate(big_img[..., 0], det)


def test_annotate_legend_fits_a_tiny_image_and_clips_boxes() -> None:
    det = frame([(f"x{k}", name, 0.5, -5, -5, 30, 30) for k, name in enumerate(CLASS_NAMES)])
    out = annotate(np.zeros((16, 16, 3), np.uint8), det)
    assert out.shape[0] > 16  # legend taller than the image: white rows added below
    assert (out[16:, :16] == 255).all()


def test_write_png_round_trip(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_png(tmp_path / "out" / "a.png", img)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "a.png")), img)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    with pytest.raises(ValueError):
        write_png(tmp_path / "b.png", img.astype(np.float32))


def test_bad_detections_are_programming_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="column"):
        summary_row("a", pd.DataFrame({"image_id": ["a"]}))
    with pytest.raises(ValueError, match="class_idx"):
        summary_row("a", pd.DataFrame({"image_id": ["a"], "class_idx": [10], "score": [1.0],
                                       "x": [0.0], "y": [0.0], "w": [1.0], "h": [1.0]}))
    with pytest.raises(ValueError, match="NaN"):
        write_geojson(frame([("a", "_", float("nan"), 0, 0, 1, 1)]), tmp_path / "n.geojson")
