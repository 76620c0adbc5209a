"""The procedural demo databases: layouts, determinism, and cells at the right 40x sizes."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.samples import read_pack
from bloodcell.sources.demo import DemoConfig, make_demo_sources
from conftest import run_cli

TINY = DemoConfig(seed=5, lisc_per_class=5, lisc_mixt=1, iumc_per_class=3, mamic_fields=2,
                  kaggle_per_class=10)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_demo_sources(out, TINY)
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    make_demo_sources(tmp_path, TINY)
    assert tree_digest(tmp_path) == tree_digest(demo)
    other = tmp_path / "other"
    other.mkdir()
    make_demo_sources(other, DemoConfig(6, 5, 1, 3, 2, 10))
    a, b = tree_digest(demo), tree_digest(other)
    assert a.keys() == b.keys() and sum(a[k] != b[k] for k in a) > len(a) * 0.9


def test_lisc_layout_sizes_and_masks(demo):
    main = demo / "lisc" / "LISC Database" / "Main Dataset"
    for folder in ("Baso", "eosi", "lymp", "mono", "neut"):
        assert sorted(p.name for p in (main / folder).iterdir()) == [f"{n}.bmp" for n in
                                                                     range(1, 6)]
    assert [p.name for p in (main / "mixt").iterdir()] == ["1.bmp"]
    img = cv2.imread(str(main / "eosi" / "1.bmp"), cv2.IMREAD_UNCHANGED)
    mask_path = demo / "lisc/LISC Database/Ground Truth Segmentation/eosi/areaforexpert1/1_expert.bmp"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    assert img.shape == (576, 720, 3) and mask.shape == (576, 720)
    assert set(np.unique(mask)) == {0, 128, 255}


def test_iumc_mamic_and_kaggle_layouts(demo):
    for cls in ("Eosinophil", "Neutrophil", "Lymphocytes", "Monocytes"):
        for i in range(1, 4):
            img = cv2.imread(str(demo / "iumc" / cls / "images" / f"{i:03d}.bmp"))
            mask = cv2.imread(str(demo / "iumc" / cls / "masks" / f"{i:03d}.png"), 0)
            assert img.shape[:2] == mask.shape and 110 <= img.shape[0] <= 140
    with open(demo / "mamic" / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} >= {"Thrombocytes", "Infected", "_"}
    for r in rows:
        h, w = cv2.imread(str(demo / "mamic" / "images" / r["image"])).shape[:2]
        assert w >= 1280 and h >= 1024
        x, y, bw, bh = (int(r[k]) for k in ("x", "y", "w", "h"))
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
    cells = demo / "kaggle" / "cell_images"
    for folder in ("Parasitized", "Uninfected"):
        pngs = sorted((cells / folder).glob("*.png"))
        assert len(pngs) == 10 and (cells / folder / "Thumbs.db").is_file()
        assert sorted(p.name for p in (cells / "cell_images" / folder).glob("*.png")) == [
            p.name for p in pngs]
        img = cv2.imread(str(pngs[0]))
        assert (img[0, 0] == 0).all() and (img[-1, -1] == 0).all()
        assert 80 <= max(img.shape[:2]) <= 210


def median_size(pack: Path, classes: set[str]) -> float:
    t = read_pack(pack, columns=["class_name", "width", "height"]).to_pydict()
    sizes = [max(w, h) for c, w, h in zip(t["class_name"], t["width"], t["height"])
             if c in classes]
    return float(np.median(sizes))


def test_demo_cells_reach_the_40x_sizes_with_the_default_scales(demo, tmp_path, capsys):
    args = {
        "lisc": ["extract-lisc", demo / "lisc", tmp_path / "lisc", "--scale", "0.7"],
        "iumc": ["extract-iumc", demo / "iumc", tmp_path / "iumc", "--scale", "1.0"],
        "mamic": ["extract-mamic", demo / "mamic", demo / "mamic" / "crops.csv",
                  tmp_path / "mamic", "--scale", "0.6"],
        "kaggle": ["extract-kaggle", demo / "kaggle", tmp_path / "kaggle", "--scale", "0.26"],
    }
    for db, a in args.items():
        code, err = run_cli(a, capsys)
        assert code == 0, f"{db}: {err}"
    wbc = {"Eosinophil", "Basophil", "Neutrophil", "Lymphocytes", "Monocytes"}
    assert 65 <= median_size(tmp_path / "lisc" / "samples.parquet", wbc) <= 110
    assert 65 <= median_size(tmp_path / "iumc" / "samples.parquet", wbc) <= 110
    assert 30 <= median_size(tmp_path / "mamic" / "samples.parquet", {"_", "Infected"}) <= 44
    assert 30 <= median_size(tmp_path / "kaggle" / "samples.parquet", {"_", "Infected"}) <= 44
    assert median_size(tmp_path / "mamic" / "samples.parquet", {"Thrombocytes"}) <= 30
    with open(tmp_path / "lisc" / "qc_skipped.csv", newline="") as f:
        reasons = [r["reason"] for r in csv.DictReader(f)]
    assert any("border" in r for r in reasons) and any("mixt" in r for r in reasons)
    with open(tmp_path / "mamic" / "qc_skipped.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []  # every listed demo cell is cut cleanly
