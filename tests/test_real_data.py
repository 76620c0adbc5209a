"""Extractors on the real public data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from bloodcell.dataset.masks import cell_on_black
from bloodcell.dataset.samples import read_pack
from conftest import run_cli

ZHENG_CLASSES = {1: "Neutrophil", 2: "Lymphocytes", 3: "Monocytes", 4: "Eosinophil",
                 5: "Basophil"}


def test_nih_cell_masks_cover_the_cell_not_the_black_surround(shared_data):
    files = sorted((shared_data / "nih-malaria-cell-images/cell_images").glob("*/*.png"))
    assert len(files) == 200
    for f in files:
        img = cv2.imread(str(f))
        cell = img.max(axis=2) > 0
        mask = cell_on_black(img, 12, 400)
        iou = (mask & cell).sum() / (mask | cell).sum()
        assert iou >= 0.9, f"{f.name}: IoU {iou:.3f}"


def test_nih_layout_extracts_every_cell(shared_data, tmp_path, capsys):
    root = shared_data / "nih-malaria-cell-images"
    code, err = run_cli(["extract-kaggle", root, tmp_path / "out", "--scale", "0.26"], capsys)
    assert code == 0, err
    t = read_pack(tmp_path / "out" / "samples.parquet").to_pydict()
    assert len(t["sample_id"]) == 200
    diameters = np.sqrt(np.array(t["width"]) * np.array(t["height"]))
    assert 28 < np.median(diameters) < 44  # about 36 px at the 40x scale


def zheng_as_iumc(dataset: Path, dst: Path) -> dict[str, int]:
    """Lay out wbc-seg-zheng2018 'Dataset 1' as the documented IUMC layout (copies)."""
    labels_csv = dataset.parent / f"Class Labels of {dataset.name}.csv"
    with open(labels_csv, newline="") as f:
        labels = {int(r["image ID"]): ZHENG_CLASSES[int(r["class label"])]
                  for r in csv.DictReader(f)}
    counts: dict[str, int] = {}
    for img in sorted(dataset.glob("*.bmp")):
        cls = labels[int(img.stem)]
        (dst / cls / "images").mkdir(parents=True, exist_ok=True)
        (dst / cls / "masks").mkdir(parents=True, exist_ok=True)
        shutil.copy(img, dst / cls / "images" / img.name)
        shutil.copy(img.with_suffix(".png"), dst / cls / "masks" / f"{img.stem}.png")
        counts[cls] = counts.get(cls, 0) + 1
    return counts


def test_zheng_single_wbcs_go_through_the_iumc_extractor(shared_data, tmp_path, capsys):
    counts = zheng_as_iumc(shared_data / "wbc-seg-zheng2018" / "Dataset 1", tmp_path / "iumc")
    code, err = run_cli(["extract-iumc", tmp_path / "iumc", tmp_path / "out", "--scale", "1.0"],
                        capsys)
    assert code == 0, err
    t = read_pack(tmp_path / "out" / "samples.parquet").to_pydict()
    got = {c: t["class_name"].count(c) for c in set(t["class_name"])}
    assert got == counts and sum(got.values()) == 81
    sizes = np.maximum(t["width"], t["height"])
    assert 70 <= np.median(sizes) <= 110  # WBCs 70-105 px at the 40x scale
