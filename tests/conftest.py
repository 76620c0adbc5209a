"""Shared fixtures: tiny hand-drawn databases in the real layouts, and the shared real data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (only on dev machines)")
    return SHARED_DATA


def disk_on(bg: tuple[int, int, int], size: tuple[int, int], centre: tuple[int, int],
            radius: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A (H, W, 3) uint8 BGR image of colour ``bg`` with a filled disk (pixels, centre x, y)."""
    img = np.full((size[1], size[0], 3), bg, np.uint8)
    cv2.circle(img, centre, radius, colour, -1)
    return img


def write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_kaggle(root: Path, per_class: int = 3) -> Path:
    """ROOT/cell_images/{Parasitized,Uninfected}/*.png with one pink disk on black each."""
    for folder in ("Parasitized", "Uninfected"):
        for i in range(per_class):
            r = 50 + 5 * i
            img = disk_on((0, 0, 0), (2 * r + 4, 2 * r + 4), (r + 2, r + 2), r, (180, 160, 220))
            write(root / "cell_images" / folder / f"C1P1ThinF_IMG_1_cell_{i}.png", img)
        (root / "cell_images" / folder / "Thumbs.db").write_bytes(b"\x00thumbs")
    return root


def make_lisc(root: Path, per_class: int = 2) -> Path:
    """ROOT/LISC Database with one disk-shaped WBC per smear and its expert mask."""
    main_dir = root / "LISC Database" / "Main Dataset"
    truth = root / "LISC Database" / "Ground Truth Segmentation"
    for folder in ("Baso", "eosi", "lymp", "mixt", "mono", "neut"):
        for n in range(1, per_class + 1):
            img = disk_on((200, 210, 230), (720, 576), (360, 288), 70, (150, 60, 120))
            mask = np.zeros((576, 720), np.uint8)
            cv2.circle(mask, (360, 288), 70, 128, -1)
            cv2.circle(mask, (360, 288), 40, 255, -1)
            write(main_dir / folder / f"{n}.bmp", img)
            write(truth / folder / "areaforexpert1" / f"{n}_expert.bmp", mask)
    return root


def make_iumc(root: Path, per_class: int = 2) -> Path:
    """ROOT/<Class>/images/<id>.bmp and masks/<id>.png, one disk-shaped WBC each."""
    for cls in ("Eosinophil", "Neutrophil", "Lymphocytes", "Monocytes"):
        for i in range(1, per_class + 1):
            img = disk_on((170, 220, 230), (120, 120), (60, 60), 42, (150, 60, 120))
            mask = np.zeros((120, 120), np.uint8)
            cv2.circle(mask, (60, 60), 42, 255, -1)
            write(root / cls / "images" / f"{i:03d}.bmp", img)
            write(root / cls / "masks" / f"{i:03d}.png", mask)
    return root


def make_mamic(root: Path) -> tuple[Path, Path]:
    """ROOT/images/field_001.png with four disks and a crop list naming them."""
    img = np.full((1024, 1280, 3), (215, 225, 235), np.uint8)
    cells = [("_", 200, 200, 30), ("Infected", 400, 200, 30), ("Thrombocytes", 600, 200, 15),
             ("Clumps", 800, 200, 12)]
    rows = ["image,class,x,y,w,h"]
    for cls, x, y, r in cells:
        cv2.circle(img, (x, y), r, (150, 100, 190), -1)
        if cls == "Clumps":
            cv2.circle(img, (x + 26, y + 4), r, (150, 100, 190), -1)
        m = 5
        w = 2 * r + 2 * m + (26 if cls == "Clumps" else 0)
        rows.append(f"field_001.png,{cls},{x - r - m},{y - r - m},{w},{2 * r + 2 * m + 4}")
    write(root / "images" / "field_001.png", img)
    crops = root / "crops.csv"
    crops.write_text("\n".join(rows) + "\n")
    return root, crops


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the bloodcell CLI in-process; return (exit code, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code)
    return code, capsys.readouterr().err


PIPELINE_FILES = ["Snakefile", "dvc.yaml", "workflow", "config", "bloodcell"]


def project_copy(dst: Path) -> Path:
    """A copy of the project's pipeline files in ``dst`` with the tiny preset as params.yaml."""
    for rel in PIPELINE_FILES:
        src = PROJECT / rel
        if src.is_dir():
            shutil.copytree(src, dst / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst / rel)
    shutil.copy(PROJECT / "config" / "params-tiny.yaml", dst / "params.yaml")
    return dst


def sh(cmd: list[str], cwd: Path) -> str:
    """Run a command in ``cwd``; its stdout + stderr, or a test failure showing both."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def snakemake_run(tmp_path_factory) -> Path:
    """The tiny preset's whole DAG run once with ``snakemake --cores 2`` in a project copy,
    shared by the pipeline, report and cluster tests (training's bytes depend on the thread
    count: 2 here)."""
    root = project_copy(tmp_path_factory.mktemp("smk"))
    sh(["snakemake", "--cores", "2"], root)
    return root
