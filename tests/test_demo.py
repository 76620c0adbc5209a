"""The procedural demo databases: determinism, the four real layouts, image formats, and cells
that the extract stages cut at the right 40x sizes."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.common.contact_sheet import contact_sheet
from bloodcell.common.image_files import write_png
from bloodcell.sources.demo import cells as dc
from bloodcell.sources.demo.databases import (
    DemoConfig,
    kaggle_names,
    lisc_border_case,
    make_demo_sources,
    make_kaggle,
)

TINY = DemoConfig(seed=5, lisc_per_class=5, lisc_mixt=1, iumc_per_class=3, mamic_fields=2,
                  kaggle_per_class=10)
LISC_MAIN = Path("lisc/LISC Database/Main Dataset")
LISC_TRUTH = Path("lisc/LISC Database/Ground Truth Segmentation")
LISC_FOLDERS = ("Baso", "eosi", "lymp", "mono", "neut")
IUMC_CLASSES = ("Eosinophil", "Neutrophil", "Lymphocytes", "Monocytes")
KAGGLE_NAME = re.compile(r"^C\d+P\d+ThinF_IMG_2015\d{4}_\d{6}_cell_\d+\.png$")


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def raw(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_demo_sources(out, TINY)
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    make_demo_sources(again, TINY)
    assert tree_digest(again) == tree_digest(demo)
    other = tmp_path / "other"
    other.mkdir()
    make_demo_sources(other, DemoConfig(6, 5, 1, 3, 2, 10))
    a, b = tree_digest(demo), tree_digest(other)
    fixed = [k for k in a if not k.startswith("kaggle/")]  # Kaggle names depend on the seed
    assert fixed and all(k in b for k in fixed)
    assert all(a[k] != b[k] for k in fixed if k.endswith((".bmp", ".png")))
    assert set(a.values()).isdisjoint(set(b.values()))


def test_output_does_not_depend_on_worker_count(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    make_kaggle(one, 6, seed=3, workers=1)
    make_kaggle(two, 6, seed=3, workers=2)
    assert tree_digest(one) == tree_digest(two)


def test_lisc_layout_formats_and_masks(demo):
    for folder in LISC_FOLDERS:
        names = sorted((demo / LISC_MAIN / folder).iterdir(), key=lambda p: int(p.stem))
        assert [p.name for p in names] == [f"{n}.bmp" for n in range(1, 6)]
        masks = sorted(p.name for p in (demo / LISC_TRUTH / folder / "areaforexpert1").iterdir())
        assert masks == sorted(f"{n}_expert.bmp" for n in range(1, 6))
    assert [p.name for p in (demo / LISC_MAIN / "mixt").iterdir()] == ["1.bmp"]
    assert (demo / LISC_TRUTH / "mixt" / "areaforexpert1" / "1_expert.bmp").is_file()
    cut = 0
    for folder in [*LISC_FOLDERS, "mixt"]:
        for img_path in (demo / LISC_MAIN / folder).iterdir():
            img = raw(img_path)
            truth = demo / LISC_TRUTH / folder / "areaforexpert1"
            mask = raw(truth / f"{img_path.stem}_expert.bmp")
            assert img.dtype == np.uint8 and img.shape == (576, 720, 3)
            assert mask.dtype == np.uint8 and mask.shape == (576, 720)
            assert set(np.unique(mask).tolist()) == {0, 128, 255}
            assert img_path.read_bytes()[:2] == b"BM"
            on_border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any()
                             or mask[:, -1].any())
            if folder != "mixt":
                assert on_border == lisc_border_case(int(img_path.stem), 5), img_path
                cut += on_border
            n, _ = cv2.connectedComponents((mask > 0).astype(np.uint8))
            assert n - 1 in ((2, 3) if folder == "mixt" else (1,))  # WBCs, one per class
    assert cut == len(LISC_FOLDERS)  # one per class with 5 per class


def test_iumc_layout_and_formats(demo):
    assert sorted(p.name for p in (demo / "iumc").iterdir()) == sorted(IUMC_CLASSES)
    for cls in IUMC_CLASSES:
        for i in range(1, 4):
            img = raw(demo / "iumc" / cls / "images" / f"{i:03d}.bmp")
            mask = raw(demo / "iumc" / cls / "masks" / f"{i:03d}.png")
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert 110 <= img.shape[0] <= 140 and 110 <= img.shape[1] <= 140
            assert mask.dtype == np.uint8 and mask.shape == img.shape[:2]
            assert set(np.unique(mask).tolist()) == {0, 128, 255}
            ys, xs = np.nonzero(mask)
            cy, cx = ys.mean(), xs.mean()
            assert abs(cy - img.shape[0] / 2) < 12 and abs(cx - img.shape[1] / 2) < 12


def test_mamic_fields_and_crop_list(demo):
    names = sorted(p.name for p in (demo / "mamic" / "images").iterdir())
    assert names == ["field_001.png", "field_002.png"]
    lines = (demo / "mamic" / "crops.csv").read_text().splitlines()
    assert lines[0] == "image,class,x,y,w,h"
    with open(demo / "mamic" / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} <= {"Thrombocytes", "Clumps", "Infected", "_"}
    assert {r["class"] for r in rows} >= {"Thrombocytes", "Infected", "_"}
    keys = [(r["image"], int(r["y"]), int(r["x"])) for r in rows]
    assert keys == sorted(keys)
    sizes = {}
    for name in names:
        img = raw(demo / "mamic" / "images" / name)
        assert img.dtype == np.uint8 and img.shape[2] == 3
        assert (img.shape[1], img.shape[0]) in {(1280, 1024), (1600, 1200)}
        sizes[name] = img.shape[:2]
    for r in rows:
        h, w = sizes[r["image"]]
        x, y, bw, bh = (int(r[k]) for k in ("x", "y", "w", "h"))
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 6 and bh > 6


def test_kaggle_layout_names_and_cells(demo):
    cells = demo / "kaggle" / "cell_images"
    for folder in ("Parasitized", "Uninfected"):
        pngs = sorted((cells / folder).glob("*.png"))
        assert len(pngs) == 10 and all(KAGGLE_NAME.match(p.name) for p in pngs)
        thumbs = (cells / folder / "Thumbs.db").read_bytes()
        assert 200 <= len(thumbs) <= 1000 and cv2.imdecode(np.frombuffer(thumbs, np.uint8),
                                                          cv2.IMREAD_UNCHANGED) is None
        nested = cells / "cell_images" / folder
        assert sorted(p.name for p in nested.glob("*.png")) == [p.name for p in pngs]
        for p in pngs:
            assert (nested / p.name).read_bytes() == p.read_bytes()
            img = raw(p)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert 80 <= max(img.shape[:2]) <= 210
            corners = img[[0, 0, -1, -1], [0, -1, 0, -1]]
            assert (corners == 0).all()
            cell = img.max(axis=2) > 0
            n, _ = cv2.connectedComponents(cell.astype(np.uint8))
            assert n == 2  # one cell on pure black


def test_kaggle_names_are_distinct_and_grouped():
    names = kaggle_names(1, 0, 2000)
    assert len({c.name for c in names}) == 2000
    photos = {(c.patient, c.photo) for c in names}
    patients = {c.patient for c in names}
    assert len(photos) > 2 * len(patients) and len(names) > 3 * len(photos)


def test_renderers_give_bgr_patches_and_masks():
    rng = np.random.default_rng(0)
    stain = dc.Stain.sample(rng, "sheet")
    for kind in dc.WBC_TYPES:
        cell = dc.wbc(rng, kind, 90, stain)
        img, mask, nuc = dc.cell_patch(rng, cell, stain)
        assert img.dtype == np.uint8 and img.shape == (*mask.shape, 3)
        assert mask.dtype == bool and nuc.dtype == bool and nuc.any() and not (nuc & ~mask).any()
        d = mask.any(axis=0).sum()
        assert 80 <= d <= 100
        # the nucleus is darker than the cytoplasm around it
        assert img[nuc].mean() < img[mask & ~nuc].mean()
    healthy = dc.healthy_rbc(rng, 36, stain)
    assert 33 <= healthy.mask.any(axis=0).sum() <= 39
    with pytest.raises(ValueError):
        dc.wbc(rng, "Platelet", 90, stain)


def test_contact_sheet_letterboxes_and_writes(tmp_path):
    tiles = [(np.full((50, 30, 3), 10, np.uint8), "a long caption that does not fit"),
             (np.full((300, 200, 3), 200, np.uint8), "big")]
    sheet = contact_sheet(tiles, 3, 64)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[1] == 4 + 3 * 68
    write_png(tmp_path / "s.png", sheet)
    assert (raw(tmp_path / "s.png") == sheet).all()


def median_size(pack: Path, classes: set[str]) -> float:
    from bloodcell.dataset.samples import read_pack

    t = read_pack(pack, columns=["class_name", "width", "height"]).to_pydict()
    sizes = [max(w, h) for c, w, h in zip(t["class_name"], t["width"], t["height"])
             if c in classes]
    return float(np.median(sizes))


def test_demo_cells_reach_the_40x_sizes_with_the_default_scales(demo, tmp_path, capsys):
    from conftest import run_cli

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


def test_hard_links_fall_back_to_copies(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_link)
    make_kaggle(tmp_path, 2, seed=1)
    nested = tmp_path / "cell_images" / "cell_images" / "Uninfected"
    assert len(list(nested.glob("*.png"))) == 2
