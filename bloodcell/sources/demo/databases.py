"""Procedural demo databases: seeded stand-ins for LISC, IUMC, MAMIC and Kaggle, each written in
its real on-disk layout (see raw/README.md), so every later stage runs the same code on demo and
real data.

Layouts (relative to the folder given to ``make_demo_sources``)::

    lisc/LISC Database/Main Dataset/{Baso,eosi,lymp,mixt,mono,neut}/<n>.bmp          720x576
    lisc/LISC Database/Ground Truth Segmentation/<folder>/areaforexpert1/<n>_expert.bmp
    iumc/{Eosinophil,Neutrophil,Lymphocytes,Monocytes}/images/<id>.bmp               110-140 px
    iumc/<Class>/masks/<id>.png
    mamic/images/field_<nnn>.png                                 1280x1024 or 1600x1200
    mamic/crops.csv                                              image,class,x,y,w,h
    kaggle/cell_images/{Parasitized,Uninfected}/<name>.png (+ Thumbs.db)
    kaggle/cell_images/cell_images/{Parasitized,Uninfected}/   nested duplicate (hard links)

Masks (LISC, IUMC) are single-channel 8-bit: 0 background, 128 cytoplasm, 255 nucleus.

Native sizes (pixels across) and the extract scale that brings each to the common 40x scale:

* LISC (x0.7): RBC 46-58; WBC Lymphocytes 90-115, Basophil 100-125, Neutrophil 105-135,
  Eosinophil 110-140, Monocytes 125-150. About 10% of class-folder images (n % 10 == 3) have
  their WBC cut by the image border.
* IUMC (x1.0): WBC 70-105 (per type ``cells.WBC_DIAMETER_40X``), RBC 32-40.
* MAMIC (x0.6): RBC 52-68, thrombocytes 25-45, clumps 50-120 long (platelets 18-30 each),
  an occasional unlabelled WBC 117-175.
* Kaggle (x0.26): one RBC per image, 80-200 across (per patient about 110-165).

Determinism: every file depends only on (seed, database, its own keys): its generator is
``default_rng(SeedSequence([seed, DB_CODE[db], *keys]))``. Nothing depends on time, set order or
the number of worker processes, so any subset can be made in parallel and the same config gives
byte-identical files.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bloodcell.common.cli_args import non_negative_int, param_option, positive_int
from bloodcell.sources.demo import cells as dc

DB_CODE = {"lisc": 1, "iumc": 2, "mamic": 3, "kaggle": 4}

LISC_SIZE = (720, 576)
"""LISC image (width, height), pixels."""
LISC_FOLDERS = {"Baso": "Basophil", "eosi": "Eosinophil", "lymp": "Lymphocytes",
                "mono": "Monocytes", "neut": "Neutrophil"}
LISC_MIXED = "mixt"
LISC_WBC_DIAMETER = {"Lymphocytes": (90.0, 115.0), "Basophil": (100.0, 125.0),
                     "Neutrophil": (105.0, 135.0), "Eosinophil": (110.0, 140.0),
                     "Monocytes": (125.0, 150.0)}
LISC_RBC_DIAMETER = (46.0, 58.0)

IUMC_CLASSES = ("Eosinophil", "Neutrophil", "Lymphocytes", "Monocytes")
IUMC_SIDE = (110, 140)
IUMC_RBC_DIAMETER = (32.0, 40.0)

MAMIC_SIZES = ((1280, 1024), (1600, 1200))
MAMIC_RBC_DIAMETER = (52.0, 68.0)
MAMIC_THROMBOCYTE = (25.0, 45.0)
MAMIC_CLUMP_LENGTH = (50.0, 120.0)
MAMIC_CLUMP_PLATELET = (18.0, 30.0)
MAMIC_SCALE = 0.6
MAMIC_MARGIN = (3, 6)
"""Crop-list box margin around the cell, pixels (inclusive range)."""
MAMIC_CLEARANCE = 14.0
"""Minimum gap (px) between a listed cell's footprint and any other cell."""
MAMIC_HEADER = "image,class,x,y,w,h"

KAGGLE_FOLDERS = (("Parasitized", True), ("Uninfected", False))
KAGGLE_DIAMETER = (80.0, 200.0)
KAGGLE_PATIENT_DIAMETER = (110.0, 165.0)
OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo databases and the seed (counts of images, cells or fields)."""

    seed: int
    lisc_per_class: int
    lisc_mixt: int
    iumc_per_class: int
    mamic_fields: int
    kaggle_per_class: int


def rng_for(seed: int, db: str, *keys: int) -> np.random.Generator:
    """The generator of one unit (file, photo, patient) of database ``db``."""
    return np.random.default_rng(np.random.SeedSequence([seed, DB_CODE[db], *keys]))


def write_image(path: Path, img: np.ndarray, params: Sequence[int] = ()) -> None:
    """Write ``img`` (uint8 BGR or grey) with OpenCV by the file's extension (BMP/PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, list(params)):
        raise OSError(f"could not write {path}")


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_tasks(fn: Callable, tasks: Sequence, workers: int = 1, chunk: int = 1) -> list:
    """[fn(t) for t in tasks], in a spawn pool when workers > 1 (results in task order)."""
    if workers <= 1 or len(tasks) < 2:
        return [fn(t) for t in tasks]
    with mp.get_context("spawn").Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
        return list(pool.imap(fn, tasks, chunksize=max(1, chunk)))


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")


# --------------------------------------------------------------------------------------------
# placement


@dataclass
class Placed:
    """A cell placed on a field: its patch's top-left (x, y) in px, the cell, and its label."""

    x: int
    y: int
    cell: dc.Cell
    label: str = ""

    @property
    def centre(self) -> tuple[float, float]:
        h, w = self.cell.alpha.shape
        return self.x + w / 2, self.y + h / 2

    def box(self) -> tuple[int, int, int, int]:
        """Tight box (x, y, w, h) of the cell's mask, field pixels (unclipped)."""
        ys, xs = np.nonzero(self.cell.mask)
        return (self.x + int(xs.min()), self.y + int(ys.min()),
                int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)


def place_at(cell: dc.Cell, cx: float, cy: float, label: str = "") -> Placed:
    """The cell with its patch centred on (cx, cy)."""
    h, w = cell.alpha.shape
    return Placed(round(cx - w / 2), round(cy - h / 2), cell, label)


class Disks:
    """Footprint circles (x, y, r) of the cells placed so far, for spacing checks."""

    def __init__(self) -> None:
        self.xyr = np.zeros((0, 3), np.float64)

    def add(self, x: float, y: float, r: float) -> None:
        self.xyr = np.vstack([self.xyr, [x, y, r]])

    def gap(self, x: float, y: float, r: float) -> float:
        """Smallest gap (px) between the circle (x, y, r) and any placed one (inf if none)."""
        if len(self.xyr) == 0:
            return np.inf
        d = np.hypot(self.xyr[:, 0] - x, self.xyr[:, 1] - y) - self.xyr[:, 2] - r
        return float(d.min())


def find_spot(rng: np.random.Generator, lo: tuple[float, float], hi: tuple[float, float],
              r: float, disks: Disks, gap: float, tries: int = 60) -> tuple[float, float] | None:
    """A centre in the box [lo, hi] whose circle of radius r keeps ``gap`` px from all disks."""
    if hi[0] < lo[0] or hi[1] < lo[1]:
        return None
    for _ in range(tries):
        x, y = rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])
        if disks.gap(x, y, r) >= gap:
            return x, y
    return None


def scatter_rbcs(rng: np.random.Generator, size: tuple[int, int], diameter: tuple[float, float],
                 disks: Disks, cover: float, overlap: float, keep_off: Disks | None = None,
                 keep_gap: float = 2.0, make: Callable | None = None) -> list[Placed]:
    """RBCs over the whole field (partly outside the edges too) until about ``cover`` of its
    area is covered; neighbours may overlap by up to ``overlap`` px; ``keep_off`` circles are
    kept ``keep_gap`` px clear. ``make(rng, d)`` renders one (default: healthy RBC)."""
    w, h = size
    mean_d = sum(diameter) / 2
    target = int(cover * w * h / (np.pi * mean_d ** 2 / 4))
    out: list[Placed] = []
    misses = 0
    while len(out) < target and misses < 400:
        d = rng.uniform(*diameter)
        r = d / 2
        x, y = rng.uniform(-r * 0.6, w + r * 0.6), rng.uniform(-r * 0.6, h + r * 0.6)
        if disks.gap(x, y, r) < -overlap * rng.uniform(0, 1) or (
                keep_off is not None and keep_off.gap(x, y, r) < keep_gap):
            misses += 1
            continue
        misses = 0
        cell = make(rng, d)
        disks.add(x, y, r)
        out.append(place_at(cell, x, y, "_"))
    return out


def draw_all(smear: dc.Smear, placed: list[Placed]) -> None:
    for p in placed:
        smear.draw(p.cell, p.x, p.y)


def label_mask(shape: tuple[int, int], cells: list[Placed]) -> np.ndarray:
    """uint8 (H, W): 0 background, 128 cytoplasm, 255 nucleus of the given cells (clipped)."""
    h, w = shape
    out = np.zeros(shape, np.uint8)
    for p in cells:
        ch, cw = p.cell.alpha.shape
        x0, y0 = max(p.x, 0), max(p.y, 0)
        x1, y1 = min(p.x + cw, w), min(p.y + ch, h)
        if x1 <= x0 or y1 <= y0:
            continue
        sl = (slice(y0 - p.y, y1 - p.y), slice(x0 - p.x, x1 - p.x))
        region = out[y0:y1, x0:x1]
        region[p.cell.mask[sl]] = 128
        region[p.cell.nucleus_mask[sl]] = 255
    return out


# --------------------------------------------------------------------------------------------
# LISC


def lisc_smear(rng: np.random.Generator, kinds: list[str],
               at_border: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 720x576 smear holding WBCs of ``kinds`` among many RBCs: (uint8 BGR image, uint8 mask
    0/128/255 marking only the WBCs). With ``at_border`` the first WBC is cut by an edge."""
    w, h = LISC_SIZE
    stain = dc.Stain.sample(rng, "lisc")
    disks = Disks()
    wbcs: list[Placed] = []
    for i, kind in enumerate(kinds):
        d = rng.uniform(*LISC_WBC_DIAMETER[kind])
        cell = dc.wbc(rng, kind, d, stain)
        fp = cell.footprint
        if at_border and i == 0:
            side = int(rng.integers(4))
            inset = d / 2 * rng.uniform(0.3, 0.75)  # centre this far inside the edge
            along = rng.uniform(0.3, 0.7)
            cx, cy = [(inset, h * along), (w - inset, h * along), (w * along, inset),
                      (w * along, h - inset)][side]
        else:
            spot = find_spot(rng, (fp + 8, fp + 8), (w - fp - 8, h - fp - 8), fp, disks, 12, 200)
            cx, cy = spot if spot is not None else (w / 2, h / 2)
        disks.add(cx, cy, fp)
        wbcs.append(place_at(cell, cx, cy, kind))
    keep_off = Disks()
    keep_off.xyr = disks.xyr.copy()
    rbcs = scatter_rbcs(rng, LISC_SIZE, LISC_RBC_DIAMETER, disks, rng.uniform(0.45, 0.65),
                        LISC_RBC_DIAMETER[0] * 0.18, keep_off, 1.0,
                        lambda g, d: dc.healthy_rbc(g, d, stain))
    smear = dc.Smear(rng, w, h, stain, debris=rng.uniform(0, 3))
    draw_all(smear, rbcs + wbcs)
    img = smear.develop(rng, rng.uniform(0, 1.2), rng.uniform(1.0, 2.5), rng.uniform(0, 0.15))
    return img, label_mask((h, w), wbcs)


def lisc_border_case(n: int, per_class: int) -> bool:
    """Whether class-folder image ``n`` (1-based) has its WBC cut by the image border."""
    return per_class >= 5 and n % 10 == 3


def _lisc_task(task: tuple[Path, int, str, int, int]) -> None:
    out, seed, folder, n, per_class = task
    keys = list(LISC_FOLDERS) + [LISC_MIXED]
    rng = rng_for(seed, "lisc", keys.index(folder), n)
    if folder == LISC_MIXED:
        k = int(rng.integers(2, 4))
        kinds = [str(x) for x in rng.choice(dc.WBC_TYPES, k, replace=False)]
        at_border = False
    else:
        kinds = [LISC_FOLDERS[folder]]
        at_border = lisc_border_case(n, per_class)
    img, mask = lisc_smear(rng, kinds, at_border)
    write_image(out / "LISC Database" / "Main Dataset" / folder / f"{n}.bmp", img)
    write_image(out / "LISC Database" / "Ground Truth Segmentation" / folder / "areaforexpert1" /
                f"{n}_expert.bmp", mask)


def make_lisc(outdir: Path, per_class: int, mixt: int, seed: int, workers: int = 1) -> None:
    """LISC layout under ``outdir``: ``per_class`` smears in each class folder and ``mixt`` in
    ``mixt`` (2-3 WBCs of different classes), each with its expert mask (module doc)."""
    _check_count("lisc_per_class", per_class)
    _check_count("lisc_mixt", mixt)
    outdir = Path(outdir)
    for folder in [*LISC_FOLDERS, LISC_MIXED]:
        (outdir / "LISC Database" / "Main Dataset" / folder).mkdir(parents=True, exist_ok=True)
        (outdir / "LISC Database" / "Ground Truth Segmentation" / folder /
         "areaforexpert1").mkdir(parents=True, exist_ok=True)
    tasks = [(outdir, seed, f, n, per_class) for f in LISC_FOLDERS for n in range(1, per_class + 1)]
    tasks += [(outdir, seed, LISC_MIXED, n, per_class) for n in range(1, mixt + 1)]
    run_tasks(_lisc_task, tasks, workers)


# --------------------------------------------------------------------------------------------
# IUMC


def iumc_crop(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One square-ish 110-140 px crop of a single centred WBC with parts of RBCs around it, on
    a yellowish field: (uint8 BGR image, uint8 mask 0/128/255)."""
    w = int(rng.integers(IUMC_SIDE[0], IUMC_SIDE[1] + 1))
    h = int(np.clip(w + rng.integers(-4, 5), *IUMC_SIDE))
    stain = dc.Stain.sample(rng, "iumc")
    d = rng.uniform(*dc.WBC_DIAMETER_40X[kind])
    cell = dc.wbc(rng, kind, d, stain)
    cx, cy = w / 2 + rng.uniform(-3, 3), h / 2 + rng.uniform(-3, 3)
    wbc = place_at(cell, cx, cy, kind)
    disks = Disks()
    disks.add(cx, cy, cell.footprint)
    keep_off = Disks()
    keep_off.xyr = disks.xyr.copy()
    rbcs = scatter_rbcs(rng, (w, h), IUMC_RBC_DIAMETER, disks, rng.uniform(0.35, 0.6), 4.0,
                        keep_off, rng.uniform(-2, 4),
                        lambda g, dd: dc.healthy_rbc(g, dd, stain, pallor=(0.6, 0.85)))
    smear = dc.Smear(rng, w, h, stain, debris=rng.uniform(0, 20))
    draw_all(smear, rbcs + [wbc])
    img = smear.develop(rng, rng.uniform(0.2, 1.2), rng.uniform(1.0, 2.5))
    return img, label_mask((h, w), [wbc])


def _iumc_task(task: tuple[Path, int, str, int]) -> None:
    out, seed, kind, i = task
    img, mask = iumc_crop(rng_for(seed, "iumc", IUMC_CLASSES.index(kind), i), kind)
    write_image(out / kind / "images" / f"{i:03d}.bmp", img)
    write_image(out / kind / "masks" / f"{i:03d}.png", mask)


def make_iumc(outdir: Path, per_class: int, seed: int, workers: int = 1) -> None:
    """IUMC layout under ``outdir``: <Class>/images/<id>.bmp and <Class>/masks/<id>.png, ids
    001.. (module doc); no basophils, as in the real database."""
    _check_count("iumc_per_class", per_class)
    outdir = Path(outdir)
    for kind in IUMC_CLASSES:
        (outdir / kind / "images").mkdir(parents=True, exist_ok=True)
        (outdir / kind / "masks").mkdir(parents=True, exist_ok=True)
    tasks = [(outdir, seed, k, i) for k in IUMC_CLASSES for i in range(1, per_class + 1)]
    run_tasks(_iumc_task, tasks, workers)


# --------------------------------------------------------------------------------------------
# MAMIC


def _place_clear(rng: np.random.Generator, cell: dc.Cell, size: tuple[int, int], disks: Disks,
                 gap: float, label: str) -> Placed | None:
    """Place a labelled cell wholly inside the field, ``gap`` px clear of every other cell."""
    w, h = size
    fp = cell.footprint
    edge = fp + MAMIC_MARGIN[1] + 2
    spot = find_spot(rng, (edge, edge), (w - edge, h - edge), fp, disks, gap, 80)
    if spot is None:
        return None
    disks.add(spot[0], spot[1], fp)
    return place_at(cell, spot[0], spot[1], label)


def mamic_field(rng: np.random.Generator, name: str) -> tuple[np.ndarray, list[list]]:
    """One large smear field and its crop-list rows [image, class, x, y, w, h]."""
    w, h = MAMIC_SIZES[1] if rng.random() < 0.25 else MAMIC_SIZES[0]
    size = (w, h)
    stain = dc.Stain.sample(rng, "mamic")
    area_k = w * h / (1280 * 1024)
    disks = Disks()
    unlisted: list[Placed] = []
    listed: list[Placed] = []
    if rng.random() < 0.3:  # an occasional WBC, not in the crop list
        kind = str(rng.choice(dc.WBC_TYPES))
        lo, hi = dc.WBC_DIAMETER_40X[kind]
        p = _place_clear(rng, dc.wbc(rng, kind, rng.uniform(lo, hi) / MAMIC_SCALE, stain), size,
                         disks, MAMIC_CLEARANCE, kind)
        if p is not None:
            unlisted.append(p)
    for _ in range(int(rng.integers(0, 3))):
        cell = dc.platelet_clump(rng, rng.uniform(*MAMIC_CLUMP_LENGTH), stain, MAMIC_CLUMP_PLATELET)
        p = _place_clear(rng, cell, size, disks, MAMIC_CLEARANCE + 4, "Clumps")
        if p is not None:
            listed.append(p)
    for _ in range(int(rng.integers(3, 10) * area_k)):
        cell = dc.thrombocyte(rng, rng.uniform(*MAMIC_THROMBOCYTE), stain)
        p = _place_clear(rng, cell, size, disks, MAMIC_CLEARANCE, "Thrombocytes")
        if p is not None:
            listed.append(p)
    for _ in range(int(rng.integers(6, 22) * area_k)):
        cell = dc.infected_rbc(rng, rng.uniform(*MAMIC_RBC_DIAMETER), stain)
        p = _place_clear(rng, cell, size, disks, MAMIC_CLEARANCE, "Infected")
        if p is not None:
            listed.append(p)
    for _ in range(int(rng.integers(15, 31) * area_k)):  # isolated healthy RBCs: listed
        cell = dc.healthy_rbc(rng, rng.uniform(*MAMIC_RBC_DIAMETER), stain)
        p = _place_clear(rng, cell, size, disks, MAMIC_CLEARANCE, "_")
        if p is not None:
            listed.append(p)
    keep_off = Disks()
    keep_off.xyr = disks.xyr.copy()
    healthy = scatter_rbcs(rng, size, MAMIC_RBC_DIAMETER, disks, rng.uniform(0.25, 0.4), 5.0,
                           keep_off, MAMIC_CLEARANCE,
                           lambda g, d: dc.healthy_rbc(g, d, stain))
    smear = dc.Smear(rng, w, h, stain, debris=rng.uniform(0, 2))
    draw_all(smear, unlisted + listed + healthy)
    img = smear.develop(rng, rng.uniform(0.2, 1.0), rng.uniform(1.0, 2.2), rng.uniform(0, 0.12))
    rows = []
    for p in listed:
        x, y, bw, bh = p.box()
        m = rng.integers(MAMIC_MARGIN[0], MAMIC_MARGIN[1] + 1, 4)
        x0, y0 = max(x - int(m[0]), 0), max(y - int(m[1]), 0)
        x1, y1 = min(x + bw + int(m[2]), w), min(y + bh + int(m[3]), h)
        rows.append([name, p.label, x0, y0, x1 - x0, y1 - y0])
    return img, rows


def _mamic_task(task: tuple[Path, int, int]) -> list[list]:
    out, seed, i = task
    name = f"field_{i:03d}.png"
    img, rows = mamic_field(rng_for(seed, "mamic", i), name)
    write_image(out / "images" / name, img)
    return rows


def make_mamic(outdir: Path, fields: int, seed: int, workers: int = 1) -> None:
    """MAMIC layout under ``outdir``: images/field_<nnn>.png and crops.csv (module doc), rows
    sorted by image, then y, then x."""
    _check_count("mamic_fields", fields)
    outdir = Path(outdir)
    (outdir / "images").mkdir(parents=True, exist_ok=True)
    results = run_tasks(_mamic_task, [(outdir, seed, i) for i in range(1, fields + 1)], workers)
    rows = sorted((r for part in results for r in part), key=lambda r: (r[0], r[3], r[2], r[1]))
    lines = [MAMIC_HEADER] + [",".join(str(v) for v in r) for r in rows]
    (outdir / "crops.csv").write_text("\n".join(lines) + "\n", encoding="ascii")


# --------------------------------------------------------------------------------------------
# Kaggle / NIH malaria cells


@dataclass(frozen=True)
class KaggleCell:
    """One cell file to make: its name and the patient and photo it comes from."""

    name: str
    patient: int
    photo: int


def kaggle_names(seed: int, class_code: int, count: int) -> list[KaggleCell]:
    """``count`` real-style file names ``C<slide>P<patient>ThinF_IMG_<date>_<time>_cell_<k>.png``
    for one class folder: several photos per patient, several cells per photo, all distinct."""
    rng = rng_for(seed, "kaggle", 100, class_code)
    out: list[KaggleCell] = []
    patient = 0
    while len(out) < count:
        patient += 1
        pid = patient + (0 if class_code == 0 else 150)
        slide = pid + int(rng.integers(30, 45))
        month, day = int(rng.integers(6, 10)), int(rng.integers(1, 29))
        secs = int(rng.integers(9 * 3600, 15 * 3600))
        for photo in range(int(rng.integers(2, 9))):
            secs += int(rng.integers(40, 900))
            hms = f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}"
            stamp = f"2015{month:02d}{day:02d}_{hms}"
            n = int(rng.integers(4, 31))
            ks = np.sort(rng.choice(np.arange(1, 3 * n + 60), n, replace=False))
            for k in ks:
                out.append(KaggleCell(f"C{slide}P{pid}ThinF_IMG_{stamp}_cell_{int(k)}.png",
                                      patient, photo))
                if len(out) == count:
                    return out
    return out


def kaggle_cell(rng: np.random.Generator, infected: bool, stain: dc.Stain, diameter: float,
                blur: float) -> np.ndarray:
    """One RBC cut out on black (uint8 BGR): the cell's bounding box plus 0-4 px of black.

    As in the NIH crops the cut follows a slightly ragged outline a pixel or two outside the
    cell (a thin bright rim of background light), sometimes with a bite where a neighbour
    overlapped; everything outside the cut is exactly (0, 0, 0).
    """
    cell = dc.rbc(rng, diameter, stain, infected, pallor=(0.08, 0.35))
    pad = 10
    ch, cw = cell.alpha.shape
    shape = (ch + 2 * pad, cw + 2 * pad)
    od = np.empty((*shape, 3), np.float32)
    od[:] = stain.od["plasma"]  # only the thin rim of the cut shows background
    dc.paste_od(od, cell, pad, pad)
    img = dc.develop(od, stain.light, rng, 0.0, rng.uniform(1.0, 2.0))
    img = cv2.GaussianBlur(img, (0, 0), blur)  # soft photo; the noise is blurred too
    cov = np.pad(cell.alpha, pad)
    grow = rng.uniform(0.5, 2.5)
    ragged = dc.smooth_noise(rng, shape[0], shape[1], 2.5) * 0.9
    dist = cv2.distanceTransform(np.pad((cov < 0.5).astype(np.uint8), 1, constant_values=1),
                                 cv2.DIST_L2, 3)[1:-1, 1:-1]
    keep = (cov >= 0.5) | (dist + ragged < grow)
    if rng.random() < 0.2:  # a bite where a neighbouring cell overlapped
        a = rng.uniform(0, 2 * np.pi)
        r = diameter / 2
        k = rng.uniform(1.15, 1.5)
        rb = r * rng.uniform(0.5, 0.8)
        bite = dc.blob(rng, shape, (shape[1] / 2 + k * r * np.cos(a),
                                    shape[0] / 2 + k * r * np.sin(a)),
                       (rb, rb * rng.uniform(0.7, 1.0)), rng.uniform(0, np.pi), 0.15)
        keep &= bite < 0.5
    n, labels, stats, _ = cv2.connectedComponentsWithStats(keep.astype(np.uint8), connectivity=8)
    if n > 2:  # keep only the cell, no stray specks of the ragged edge
        keep = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    img[~keep] = 0
    ys, xs = np.nonzero(keep)
    m = rng.integers(0, 5, 4)
    y0, y1 = max(int(ys.min()) - int(m[0]), 0), min(int(ys.max()) + 1 + int(m[1]), shape[0])
    x0, x1 = max(int(xs.min()) - int(m[2]), 0), min(int(xs.max()) + 1 + int(m[3]), shape[1])
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def _kaggle_task(task: tuple[Path, int, int, list[tuple[int, KaggleCell]]]) -> None:
    out, seed, class_code, items = task
    folder, infected = KAGGLE_FOLDERS[class_code]
    cache: dict[tuple[int, int], tuple[dc.Stain, float, float]] = {}
    for i, kc in items:
        key = (kc.patient, kc.photo)
        if key not in cache:  # the photo's stain and focus, the patient's typical cell size
            prng = rng_for(seed, "kaggle", 300, class_code, kc.patient)
            base_d = prng.uniform(*KAGGLE_PATIENT_DIAMETER)
            frng = rng_for(seed, "kaggle", 200, class_code, kc.patient, kc.photo)
            cache[key] = (dc.Stain.sample(frng, "kaggle"), base_d, frng.uniform(0.7, 1.5))
        stain, base_d, blur = cache[key]
        rng = rng_for(seed, "kaggle", class_code, i)
        d = float(np.clip(base_d * rng.uniform(0.88, 1.12), *KAGGLE_DIAMETER))
        img = kaggle_cell(rng, infected, stain, d, blur)
        write_image(out / "cell_images" / folder / kc.name, img, (cv2.IMWRITE_PNG_COMPRESSION, 3))


def thumbs_db(seed: int, class_code: int) -> bytes:
    """A few hundred deterministic bytes standing in for a Windows thumbnail cache."""
    rng = rng_for(seed, "kaggle", 400, class_code)
    body = rng.integers(0, 256, int(rng.integers(300, 600)), dtype=np.uint8).tobytes()
    return OLE_MAGIC + body


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def make_kaggle(outdir: Path, per_class: int, seed: int, workers: int = 1) -> None:
    """Kaggle layout under ``outdir``: cell_images/{Parasitized,Uninfected}/<name>.png with
    ``per_class`` cells each, a Thumbs.db in each, and the nested duplicate
    cell_images/cell_images/ holding hard links (or copies) of every file (module doc)."""
    _check_count("kaggle_per_class", per_class)
    outdir = Path(outdir)
    base = outdir / "cell_images"
    tasks = []
    batch = 256
    for code, (folder, _) in enumerate(KAGGLE_FOLDERS):
        (base / folder).mkdir(parents=True, exist_ok=True)
        items = list(enumerate(kaggle_names(seed, code, per_class)))
        tasks += [(outdir, seed, code, items[j : j + batch]) for j in range(0, len(items), batch)]
    run_tasks(_kaggle_task, tasks, workers)
    for code, (folder, _) in enumerate(KAGGLE_FOLDERS):
        (base / folder / "Thumbs.db").write_bytes(thumbs_db(seed, code))
        nested = base / "cell_images" / folder
        nested.mkdir(parents=True, exist_ok=True)
        for f in sorted((base / folder).iterdir()):
            if f.is_file():
                _link_or_copy(f, nested / f.name)


# --------------------------------------------------------------------------------------------


def make_demo_sources(outdir: Path, cfg: DemoConfig, workers: int = 1) -> None:
    """Write lisc/, iumc/, mamic/ and kaggle/ into the existing (empty) folder ``outdir``.

    The bytes written depend only on ``cfg``, never on ``workers`` (processes to use).
    """
    outdir = Path(outdir)
    _check_count("seed", cfg.seed)
    make_lisc(outdir / "lisc", cfg.lisc_per_class, cfg.lisc_mixt, cfg.seed, workers)
    make_iumc(outdir / "iumc", cfg.iumc_per_class, cfg.seed, workers)
    make_mamic(outdir / "mamic", cfg.mamic_fields, cfg.seed, workers)
    make_kaggle(outdir / "kaggle", cfg.kaggle_per_class, cfg.seed, workers)


def add_parser(sub) -> None:
    """``bloodcell demo-sources``."""
    p = sub.add_parser("demo-sources", help="make the procedural demo databases",
                       description="Render seeded stand-ins for LISC, IUMC, MAMIC and Kaggle in "
                       "their real on-disk layouts under OUTDIR (replaced atomically).")
    p.add_argument("outdir", type=Path)
    p.add_argument("--seed", type=non_negative_int, required=True)
    param_option(p, "--lisc-per-class", key="demo.lisc_per_class", type=positive_int)
    param_option(p, "--lisc-mixt", key="demo.lisc_mixt", type=non_negative_int)
    param_option(p, "--iumc-per-class", key="demo.iumc_per_class", type=positive_int)
    param_option(p, "--mamic-fields", key="demo.mamic_fields", type=positive_int)
    param_option(p, "--kaggle-per-class", key="demo.kaggle_per_class", type=positive_int)
    p.set_defaults(main=main)


def main(a) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.sources.extract import worker_count

    cfg = DemoConfig(a.seed, a.lisc_per_class, a.lisc_mixt, a.iumc_per_class, a.mamic_fields,
                     a.kaggle_per_class)
    with atomic_dir(a.outdir, a.command) as tmp:
        make_demo_sources(tmp, cfg, workers=worker_count())
    logging.getLogger(__name__).info("demo databases -> %s", a.outdir)
