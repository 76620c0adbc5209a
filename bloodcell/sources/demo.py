"""Procedural demo databases: seeded stand-ins for LISC, IUMC, MAMIC and Kaggle, each written in
its real on-disk layout (see raw/README.md) so every later stage runs the same code on demo and
real data.

Each file depends only on (seed, database, index): its generator is
``default_rng(SeedSequence([seed, DB_CODE[db], index]))``. Native scales match the params'
per-source factors: LISC RBC 46-58 px and WBC 100-150 px (x0.7), IUMC WBC 70-105 px (x1.0),
MAMIC RBC 52-68 px (x0.6), Kaggle cells 80-200 px (x0.26).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bloodcell.sources import demo_cells as dc

DB_CODE = {"lisc": 1, "iumc": 2, "mamic": 3, "kaggle": 4, "thumbs": 5}
LISC_FOLDERS = {"eosi": "Eosinophil", "Baso": "Basophil", "neut": "Neutrophil",
                "lymp": "Lymphocytes", "mono": "Monocytes"}
IUMC_CLASSES = ("Eosinophil", "Neutrophil", "Lymphocytes", "Monocytes")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo databases and the seed."""

    seed: int
    lisc_per_class: int
    lisc_mixt: int
    iumc_per_class: int
    mamic_fields: int
    kaggle_per_class: int


def rng_for(seed: int, db: str, index: int) -> np.random.Generator:
    """The generator of one file: depends on nothing but (seed, database, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, DB_CODE[db], index]))


def write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


@dataclass
class Placed:
    """A cell placed on a canvas: its top-left (x, y) in px and its rendering."""

    x: int
    y: int
    cell: dc.Cell

    def box(self, alpha_min: float = 0.5) -> tuple[int, int, int, int]:
        """Tight box (x, y, w, h) of the cell's coverage, canvas pixels."""
        ys, xs = np.nonzero(self.cell.alpha > alpha_min)
        return (self.x + int(xs.min()), self.y + int(ys.min()),
                int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)


def free_spot(rng: np.random.Generator, size: tuple[int, int], r: float,
              taken: list[tuple[float, float, float]], gap: float,
              tries: int = 30) -> tuple[float, float] | None:
    """A centre (x, y) whose disc of radius r keeps ``gap`` px from every taken (x, y, r)."""
    w, h = size
    arr = np.array(taken, np.float32).reshape(-1, 3)
    for _ in range(tries):
        x, y = rng.uniform(-r * 0.3, w + r * 0.3), rng.uniform(-r * 0.3, h + r * 0.3)
        if len(arr) == 0 or np.all(np.hypot(arr[:, 0] - x, arr[:, 1] - y) >= arr[:, 2] + r + gap):
            return x, y
    return None


def scatter_rbcs(rng: np.random.Generator, size: tuple[int, int], d_range: tuple[float, float],
                 taken: list, n: int, gap: tuple[float, float],
                 infected_share: float = 0.0) -> list[tuple[Placed, bool]]:
    """Up to n RBCs (and whether each is infected) at free spots; ``taken`` is extended."""
    out = []
    for _ in range(n):
        d = rng.uniform(*d_range)
        spot = free_spot(rng, size, d / 2, taken, rng.uniform(*gap))
        if spot is None:
            continue
        infected = bool(rng.random() < infected_share)
        cell = dc.rbc(rng, d, infected)
        taken.append((spot[0], spot[1], d / 2))
        h, w = cell.alpha.shape
        out.append((Placed(int(spot[0] - w / 2), int(spot[1] - h / 2), cell), infected))
    return out


def compose(size: tuple[int, int], plasma: tuple[int, int, int], rng: np.random.Generator,
            placed: list[Placed]) -> tuple[np.ndarray, np.ndarray]:
    """Render placed cells in order on a plasma background: (float canvas, float alpha)."""
    w, h = size
    canvas = dc.textured((h, w), plasma, rng, 0.02, 5)
    alpha = np.zeros((h, w), np.float32)
    for p in placed:
        dc.paste_cell(canvas, alpha, p.cell, p.x, p.y)
    return canvas, alpha


def lisc_smear(rng: np.random.Generator, kinds: list[str],
               at_border: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 720x576 smear with the given WBCs; returns (BGR image, mask 0/128/255)."""
    size = (720, 576)
    taken: list = []
    wbcs = []
    for i, kind in enumerate(kinds):
        lo, hi = dc.WBC_DIAMETER[kind]
        d = rng.uniform(lo, hi) * 150
        if at_border and i == 0:
            spot = (rng.choice([d * 0.25, size[0] - d * 0.25]), rng.uniform(150, 426))
        else:
            spot = free_spot(rng, size, d / 2 + 10, taken, 10, 200) or (360.0, 288.0)
            spot = (float(np.clip(spot[0], d * 0.6 + 4, size[0] - d * 0.6 - 4)),
                    float(np.clip(spot[1], d * 0.6 + 4, size[1] - d * 0.6 - 4)))
        taken.append((spot[0], spot[1], d / 2))
        cell = dc.wbc(rng, kind, d)
        h, w = cell.alpha.shape
        wbcs.append(Placed(int(spot[0] - w / 2), int(spot[1] - h / 2), cell))
    rbcs = [p for p, _ in scatter_rbcs(rng, size, (46, 58), taken, 110, (-3, 8))]
    canvas, _ = compose(size, dc.PLASMA_LISC, rng, rbcs + wbcs)
    mask = np.zeros((size[1], size[0]), np.uint8)
    for p in wbcs:
        cyto = np.zeros_like(mask, dtype=np.float32)
        nuc = np.zeros_like(cyto)
        dc.paste_cell(np.zeros((*mask.shape, 3), np.float32), cyto, p.cell, p.x, p.y)
        nuc_cell = dc.Cell(p.cell.colour, p.cell.nucleus, p.cell.nucleus)
        dc.paste_cell(np.zeros((*mask.shape, 3), np.float32), nuc, nuc_cell, p.x, p.y)
        mask[cyto > 0.5] = 128
        mask[nuc > 0.5] = 255
    return dc.finish(canvas, rng), mask


def make_lisc(out: Path, per_class: int, mixt: int, seed: int) -> None:
    """LISC Database/Main Dataset/<folder>/<n>.bmp with expert masks (see module doc)."""
    main = out / "LISC Database" / "Main Dataset"
    truth = out / "LISC Database" / "Ground Truth Segmentation"
    jobs = [(folder, n) for folder in LISC_FOLDERS for n in range(1, per_class + 1)]
    jobs += [("mixt", n) for n in range(1, mixt + 1)]
    for index, (folder, n) in enumerate(jobs):
        rng = rng_for(seed, "lisc", index)
        if folder == "mixt":
            kinds = list(rng.choice(dc.WBC_TYPES, int(rng.integers(2, 4)), replace=False))
            at_border = False
        else:
            kinds = [LISC_FOLDERS[folder]]
            at_border = per_class >= 5 and n % 10 == 3
        img, mask = lisc_smear(rng, kinds, at_border)
        write_image(main / folder / f"{n}.bmp", img)
        write_image(truth / folder / "areaforexpert1" / f"{n}_expert.bmp", mask)


def iumc_crop(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One single-WBC crop (110-140 px) with RBC fragments; returns (image, mask 0/128/255)."""
    side = int(rng.integers(110, 141))
    lo, hi = dc.WBC_DIAMETER[kind]
    d = 70 + (rng.uniform(lo, hi) - 0.62) / 0.38 * 35
    cell = dc.wbc(rng, kind, d)
    h, w = cell.alpha.shape
    c = side / 2 + rng.uniform(-3, 3, 2)
    p = Placed(int(c[0] - w / 2), int(c[1] - h / 2), cell)
    taken = [(c[0], c[1], d / 2)]
    rbcs = [q for q, _ in scatter_rbcs(rng, (side, side), (46, 56), taken, 12, (0, 6))]
    canvas, _ = compose((side, side), dc.PLASMA_IUMC, rng, rbcs + [p])
    mask = np.zeros((side, side), np.uint8)
    cyto = np.zeros((side, side), np.float32)
    nuc = np.zeros((side, side), np.float32)
    dc.paste_cell(np.zeros((side, side, 3), np.float32), cyto, cell, p.x, p.y)
    dc.paste_cell(np.zeros((side, side, 3), np.float32), nuc,
                  dc.Cell(cell.colour, cell.nucleus, cell.nucleus), p.x, p.y)
    mask[cyto > 0.5] = 128
    mask[nuc > 0.5] = 255
    return dc.finish(canvas, rng, 0.8), mask


def make_iumc(out: Path, per_class: int, seed: int) -> None:
    """<Class>/images/<id>.bmp and <Class>/masks/<id>.png (see module doc)."""
    for ci, kind in enumerate(IUMC_CLASSES):
        for i in range(1, per_class + 1):
            img, mask = iumc_crop(rng_for(seed, "iumc", ci * 100_000 + i), kind)
            write_image(out / kind / "images" / f"{i:03d}.bmp", img)
            write_image(out / kind / "masks" / f"{i:03d}.png", mask)


def mamic_field(rng: np.random.Generator, name: str) -> tuple[np.ndarray, list[list]]:
    """One large smear field and its crop-list rows [image, class, x, y, w, h]."""
    size = (1600, 1200) if rng.random() < 0.25 else (1280, 1024)
    taken: list = []
    labelled: list[tuple[str, Placed]] = []
    extras: list[Placed] = []
    if rng.random() < 0.3:
        d = rng.uniform(140, 170)
        spot = free_spot(rng, size, d / 2, taken, 10, 50)
        if spot:
            cell = dc.wbc(rng, str(rng.choice(dc.WBC_TYPES)), d)
            taken.append((spot[0], spot[1], d / 2))
            extras.append(Placed(int(spot[0] - cell.alpha.shape[1] / 2),
                                 int(spot[1] - cell.alpha.shape[0] / 2), cell))
    for _ in range(int(rng.integers(0, 3))):
        length = rng.uniform(50, 120)
        spot = free_spot(rng, size, length / 2 + 6, taken, 12, 60)
        if spot:
            cell = dc.clump(rng, length, (22, 34))
            taken.append((spot[0], spot[1], cell.alpha.shape[0] / 2))
            labelled.append(("Clumps", Placed(int(spot[0] - cell.alpha.shape[1] / 2),
                                              int(spot[1] - cell.alpha.shape[0] / 2), cell)))
    for _ in range(int(rng.integers(3, 9))):
        d = rng.uniform(25, 45)
        spot = free_spot(rng, size, d / 2 + 2, taken, 10, 60)
        if spot:
            cell = dc.platelet(rng, d)
            taken.append((spot[0], spot[1], cell.alpha.shape[0] / 2))
            labelled.append(("Thrombocytes", Placed(int(spot[0] - cell.alpha.shape[1] / 2),
                                                    int(spot[1] - cell.alpha.shape[0] / 2),
                                                    cell)))
    rbcs = scatter_rbcs(rng, size, (52, 68), taken, 420, (4, 16), rng.uniform(0.08, 0.2))
    canvas, _ = compose(size, dc.PLASMA_MAMIC, rng, extras + [p for p, _ in rbcs] +
                        [p for _, p in labelled])
    healthy = [("_", p) for p, inf in rbcs if not inf]
    listed = labelled + [("Infected", p) for p, inf in rbcs if inf]
    listed += [healthy[i] for i in sorted(rng.choice(len(healthy), min(25, len(healthy)),
                                                     replace=False))]
    rows = []
    for cls, p in listed:
        x, y, w, h = p.box()
        m = int(rng.integers(3, 7))
        x0, y0 = max(x - m, 0), max(y - m, 0)
        x1, y1 = min(x + w + m, size[0]), min(y + h + m, size[1])
        if x > m and y > m and x + w + m < size[0] and y + h + m < size[1]:
            rows.append([name, cls, x0, y0, x1 - x0, y1 - y0])
    return dc.finish(canvas, rng, 1.0), rows


def make_mamic(out: Path, fields: int, seed: int) -> None:
    """images/field_<nnn>.png and crops.csv (see module doc)."""
    rows: list[list] = []
    for i in range(1, fields + 1):
        name = f"field_{i:03d}.png"
        img, field_rows = mamic_field(rng_for(seed, "mamic", i), name)
        write_image(out / "images" / name, img)
        rows.extend(field_rows)
    rows.sort(key=lambda r: (r[0], r[3], r[2]))
    lines = ["image,class,x,y,w,h"] + [",".join(str(v) for v in r) for r in rows]
    (out / "crops.csv").write_text("\n".join(lines) + "\n")


def kaggle_cell(rng: np.random.Generator, infected: bool, base_d: float) -> np.ndarray:
    """One RBC on black: the cell's box plus 0-4 px of black, uint8 BGR."""
    d = float(np.clip(base_d * rng.uniform(0.85, 1.15), 80, 200))
    cell = dc.rbc(rng, d, infected)
    side = cell.alpha.shape[0]
    canvas = np.zeros((side, side, 3), np.float32)
    alpha = np.zeros((side, side), np.float32)
    dc.paste_cell(canvas, alpha, cell, 0, 0)
    img = dc.finish(canvas * 0.92, rng, 1.0, 2.5)
    img[alpha < 0.5] = 0
    ys, xs = np.nonzero(alpha >= 0.5)
    m = rng.integers(0, 5, 4)
    y0, y1 = max(ys.min() - m[0], 0), min(ys.max() + 1 + m[1], side)
    x0, x1 = max(xs.min() - m[2], 0), min(xs.max() + 1 + m[3], side)
    return img[y0:y1, x0:x1]


def kaggle_name(infected: bool, i: int) -> tuple[str, int]:
    """Real-style file name of cell i (12 cells a photo, 5 photos a patient) and its patient."""
    patient = i // 60 + (1 if infected else 500)
    photo = i // 12
    day = 20150601 + patient % 28
    return (f"C{patient}P{patient % 97}ThinF_IMG_{day}_{100000 + photo * 37 % 90000:06d}"
            f"_cell_{i % 12 + 1}.png", patient)


def make_kaggle(out: Path, per_class: int, seed: int) -> None:
    """cell_images/{Parasitized,Uninfected}/*.png, Thumbs.db, nested duplicate (module doc)."""
    base = out / "cell_images"
    for ci, (folder, infected) in enumerate((("Parasitized", True), ("Uninfected", False))):
        for i in range(per_class):
            name, patient = kaggle_name(infected, i)
            size_rng = rng_for(seed, "kaggle", 10_000_000 + patient)
            base_d = size_rng.uniform(110, 165)
            img = kaggle_cell(rng_for(seed, "kaggle", ci * 1_000_000 + i), infected, base_d)
            write_image(base / folder / name, img)
        thumbs = rng_for(seed, "thumbs", ci).integers(0, 256, 512, dtype=np.uint8).tobytes()
        (base / folder / "Thumbs.db").write_bytes(thumbs)
    nested = base / "cell_images"
    for folder in ("Parasitized", "Uninfected"):
        (nested / folder).mkdir(parents=True, exist_ok=True)
        for f in sorted((base / folder).glob("*.png")):
            try:
                os.link(f, nested / folder / f.name)
            except OSError:
                shutil.copyfile(f, nested / folder / f.name)


def make_demo_sources(outdir: Path, cfg: DemoConfig) -> None:
    """Write lisc/, iumc/, mamic/ and kaggle/ into the existing folder ``outdir``."""
    make_lisc(outdir / "lisc", cfg.lisc_per_class, cfg.lisc_mixt, cfg.seed)
    make_iumc(outdir / "iumc", cfg.iumc_per_class, cfg.seed)
    make_mamic(outdir / "mamic", cfg.mamic_fields, cfg.seed)
    make_kaggle(outdir / "kaggle", cfg.kaggle_per_class, cfg.seed)
