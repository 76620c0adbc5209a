"""MAMIC large smear fields, cut into cells at the boxes of a versioned crop list.

Layout (ROOT is the folder given to extract-mamic)::

    ROOT/images/<name>.<png|bmp|jpg|tif>      smear fields of any size

and the crop list CSV (its own path, a versioned input) with the header ``image,class,x,y,w,h``:
image = file name under ROOT/images, class one of Thrombocytes, Clumps, Infected, _ (healthy RBC),
and the box's top-left x, y and size w, h in the field's pixels. Each cell's mask is a threshold on
the crop (bloodcell.dataset.masks.cell_on_light); platelet clumps join parts up to about 2 *
CLUMP_JOIN_PX apart.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcell.common.cli_args import add_sample_args
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import ImageProblem
from bloodcell.dataset.masks import cell_on_light
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.dataset.scale import crop, mask_box, rescale
from bloodcell.sources.extract import read_source, run_source, sha256_hex
from bloodcell.sources.layout import require_layout

SOURCE = "mamic"
CLASSES = ["Thrombocytes", "Clumps", "Infected", "_"]
HEADER = ["image", "class", "x", "y", "w", "h"]
CLUMP_JOIN_PX = 5


@dataclass(frozen=True)
class Crop:
    """One crop-list row: box (x, y, w, h), top-left, in the field's native pixels."""

    line: int
    image: str
    class_name: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Job:
    """One field image with all its crops and the extract params."""

    path: Path
    rel: str
    crops_csv: str
    crops: tuple[Crop, ...]
    scale: float
    pad: int
    min_area: int


def parse_row(row: dict, line: int, where: str) -> Crop:
    """Validate one CSV row; UserError naming the file and line otherwise."""
    if row["class"] not in CLASSES:
        raise UserError(f"{where}:{line}: class {row['class']!r} is not one of "
                        f"{', '.join(CLASSES)}; fix the crop list")
    try:
        x, y, w, h = (int(row[k]) for k in ("x", "y", "w", "h"))
    except (TypeError, ValueError):
        raise UserError(f"{where}:{line}: x, y, w, h must be whole numbers of pixels; "
                        "fix the crop list") from None
    if x < 0 or y < 0 or w < 2 or h < 2:
        raise UserError(f"{where}:{line}: box {x},{y},{w},{h} has a negative corner or a "
                        "side under 2 px; fix the crop list")
    if not row["image"] or Path(row["image"]).is_absolute() or ".." in Path(row["image"]).parts:
        raise UserError(f"{where}:{line}: image must be a file name under images/")
    return Crop(line, row["image"], row["class"], (x, y, w, h))


def read_crop_list(path: Path) -> list[Crop]:
    """All rows of the crop list; UserError for a missing file, wrong header or bad row."""
    if not path.is_file():
        raise UserError(f"{path}: MAMIC crop list not found; create it (image,class,x,y,w,h) "
                        "or set sources.mamic_crops in params.yaml")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM (Excel) is accepted
            reader = csv.DictReader(f)
            if reader.fieldnames != HEADER:
                raise UserError(f"{path}:1: header is {reader.fieldnames}, expected "
                                f"{','.join(HEADER)}; fix the crop list")
            crops = [parse_row(row, i, str(path)) for i, row in enumerate(reader, start=2)]
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save the crop list as "
                        "UTF-8 CSV") from None
    if not crops:
        raise UserError(f"{path}: the crop list has no rows; list the cells to cut")
    seen: dict[tuple, int] = {}
    for c in crops:  # one cell is cut once: a repeated box would give two equal sample ids
        first = seen.setdefault((c.image, c.box), c.line)
        if first != c.line:
            raise UserError(f"{path}:{c.line}: box {','.join(map(str, c.box))} of {c.image} is "
                            f"listed again (first at {path}:{first}); keep one row per cell")
    return crops


def plan(root: Path, crops_csv: Path, scale: float, pad: int,
         min_area: int) -> tuple[list[Job], list[Skip]]:
    """One job per field image named in the crop list."""
    images = require_layout(root, "images", "MAMIC")
    by_image: dict[str, list[Crop]] = {}
    for c in read_crop_list(crops_csv):
        by_image.setdefault(c.image, []).append(c)
    jobs = []
    for name in sorted(by_image):
        path = images / name
        if not path.is_file():
            line = by_image[name][0].line
            raise UserError(f"{crops_csv}:{line}: image {path} not found; fix the crop list "
                            "or add the image")
        jobs.append(Job(path, f"images/{name}", str(crops_csv), tuple(by_image[name]),
                        scale, pad, min_area))
    return jobs, []


def cut(img: np.ndarray, digest: str, c: Crop, job: Job) -> Sample | Skip:
    """Threshold one crop of the field ``img`` (BGR) and bring its cell to the 40x scale."""
    sample_id = f"{SOURCE}/{job.rel}@{c.box[0]},{c.box[1]},{c.box[2]},{c.box[3]}"
    x, y, w, h = c.box
    if x + w > img.shape[1] or y + h > img.shape[0]:
        raise UserError(f"{job.crops_csv}:{c.line}: box {x},{y},{w},{h} lies outside "
                        f"{c.image} ({img.shape[1]}x{img.shape[0]} px); fix the crop list")
    region = crop(img, c.box)
    join = CLUMP_JOIN_PX if c.class_name == "Clumps" else 0
    mask = cell_on_light(region, job.min_area, join)
    if mask is None:
        return Skip(sample_id, c.class_name, f"no cell of at least {job.min_area} px found "
                    "by the threshold; check the box or lower extract.mamic.min_area")
    bx, by, bw, bh = mask_box(mask, job.pad)
    small, small_mask = rescale(crop(region, (bx, by, bw, bh)),
                                crop(mask, (bx, by, bw, bh)), job.scale)
    return Sample(sample_id, SOURCE, c.class_name, job.rel, digest, (x + bx, y + by, bw, bh),
                  small, small_mask)


def process(job: Job) -> list[Sample | Skip]:
    """Cut every listed cell of one field."""
    try:
        data, img = read_source(job.path)
    except ImageProblem as err:
        return [Skip(job.rel, c.class_name, str(err)) for c in job.crops]
    digest = sha256_hex(data)
    return [cut(img, digest, c, job) for c in job.crops]


def add_parser(sub) -> None:
    """``bloodcell extract-mamic``."""
    p = sub.add_parser("extract-mamic", help="cut MAMIC cells at the crop list's boxes",
                       description="Cut the cells listed in CROPS from ROOT/images with "
                       "threshold masks, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding images/")
    p.add_argument("crops", type=Path, help="crop list CSV: image,class,x,y,w,h")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, "mamic")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, a.crops, a.scale, a.pad, a.min_area)
    run_source(a, planned, process, SOURCE, CLASSES)
