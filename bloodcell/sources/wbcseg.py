"""Single-WBC images with nucleus/cytoplasm masks (Zheng et al. 2018, "segmentation_WBC").

Layout (ROOT is the folder given to extract-wbcseg)::

    ROOT/Dataset 1/NNN.bmp                 120x120 RGB, one WBC, yellowish background
    ROOT/Dataset 1/NNN.png                 8-bit mask: 0 background, 128 cytoplasm, 255 nucleus
    ROOT/Dataset 2/NNN.bmp, NNN.png        300x300, purple stain, RBCs around the WBC
    ROOT/Class Labels of Dataset N.csv     ``image ID,class label`` (Dataset 2's header says
                                           ``image ID,class``); label 1..5 = Neutrophil,
                                           Lymphocytes, Monocytes, Eosinophil, Basophil

The cell is every non-zero mask pixel (cytoplasm + nucleus; Dataset 2 has a few stray
values along edges), reduced to its largest 8-connected component with holes filled. An
image whose ID is not in its dataset's CSV, or without a usable mask, is a QC entry.

The two datasets were filmed at different magnifications, so each has its own scale
(native px -> 40x-scale px; see raw/README.md). Measured on the shared subset: Dataset 2's
isolated RBCs (green below Otsu, WBC removed, round components not touching the border)
have a median box of about 72 px (sqrt(w*h)), so 35 / 72 = 0.49. Dataset 1 crops are tight
and show RBCs only as faint ghosts, so its scale matches its median WBC mask box (81.5 px)
to Dataset 2's after scaling (171 px * 0.49 = 84 px): about 1.0 (a Hough-circle estimate
of the ghosts, about 38 px across, gives 0.93, consistent).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from bloodcell.common.cli_args import non_negative_int, param_option, positive_float, positive_int
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.sources.extract import MaskJob, cut_by_mask, run_source
from bloodcell.sources.layout import list_images, require_layout

SOURCE = "wbcseg"
DATASETS = (1, 2)
LABELS = {1: "Neutrophil", 2: "Lymphocytes", 3: "Monocytes", 4: "Eosinophil", 5: "Basophil"}
CLASSES = ["Eosinophil", "Basophil", "Neutrophil", "Lymphocytes", "Monocytes"]
DB = "wbc-seg (Zheng 2018)"

Job = MaskJob
"""One single-WBC image, its mask, class and the extract params (scale of its dataset)."""


def labels_csv(root: Path, dataset: int) -> Path:
    """ROOT/'Class Labels of Dataset N.csv'."""
    return root / f"Class Labels of Dataset {dataset}.csv"


def read_labels(path: Path) -> dict[int, str]:
    """Image ID -> class name from a class-label CSV; UserError for a missing or bad file.

    The header's first column must start with ``image`` and the second with ``class``;
    IDs are whole numbers, labels 1..5.
    """
    if not path.is_file():
        raise UserError(f"{path}: class-label CSV not found; put it beside the dataset folder "
                        "(see raw/README.md)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save the CSV as UTF-8 "
                        "(or re-download it)") from None
    head = [c.strip().lower() for c in rows[0]] if rows else []
    if len(head) != 2 or not head[0].startswith("image") or not head[1].startswith("class"):
        raise UserError(f"{path}:1: header is {rows[0] if rows else 'missing'}, expected "
                        "image ID,class label; fix or re-download the CSV")
    labels: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            image_id, label = int(row[0]), int(row[1])
        except (IndexError, ValueError):
            raise UserError(f"{path}:{line}: expected a whole image ID and a label 1-5, got "
                            f"{','.join(row)}; fix the CSV") from None
        if label not in LABELS:
            raise UserError(f"{path}:{line}: class label {label} is not 1-5; fix the CSV")
        if labels.get(image_id, LABELS[label]) != LABELS[label]:
            raise UserError(f"{path}:{line}: image ID {image_id} is labelled again with another "
                            f"class ({LABELS[label]}, before {labels[image_id]}); keep one "
                            "label per image")
        labels[image_id] = LABELS[label]
    return labels


def image_id(path: Path) -> int | None:
    """The numeric ID of ``NNN.bmp`` (None when the stem is not a number)."""
    return int(path.stem) if path.stem.isdigit() else None


def plan_dataset(root: Path, dataset: int, scale: float, pad: int,
                 min_area: int) -> tuple[list[Job], list[Skip]]:
    """Jobs for the .bmp images of one dataset; skips for images without a class label."""
    folder = require_layout(root, f"Dataset {dataset}", DB)
    labels = read_labels(labels_csv(root, dataset))
    files, _ = list_images(folder)
    images = [p for p in files if p.suffix.lower() == ".bmp"]
    if not images:
        raise UserError(f"{folder}: no NNN.bmp images; re-download or re-unpack the {DB} data")
    jobs: list[Job] = []
    skips: list[Skip] = []
    for p in images:
        rel = p.relative_to(root).as_posix()
        n = image_id(p)
        if n is None or n not in labels:
            skips.append(Skip(rel, "", f"image ID not in {labels_csv(root, dataset).name}, "
                              "ignored; add its class to the CSV"))
            continue
        jobs.append(Job(p, p.with_suffix(".png"), rel, labels[n], scale, pad, min_area))
    return jobs, skips


def plan(root: Path, scales: dict[int, float], pad: int, min_area: int,
         datasets: Sequence[int] = DATASETS) -> tuple[list[Job], list[Skip]]:
    """Jobs for every labelled image of the chosen datasets, each with its dataset's scale."""
    jobs: list[Job] = []
    skips: list[Skip] = []
    for d in sorted(set(datasets)):
        if d not in scales or scales[d] is None:
            raise UserError(f"Dataset {d} is chosen but has no scale; pass --scale-{d}")
        j, s = plan_dataset(root, d, scales[d], pad, min_area)
        jobs += j
        skips += s
    return jobs, skips


def process(job: Job) -> list[Sample | Skip]:
    """Cut the WBC (cytoplasm + nucleus) by its mask and bring it to the 40x scale."""
    return cut_by_mask(job, SOURCE, fill=True)


def add_parser(sub) -> None:
    """``bloodcell extract-wbcseg``."""
    p = sub.add_parser("extract-wbcseg", help="cut single WBCs of wbc-seg (Zheng 2018) with "
                       "their masks",
                       description="Cut the WBCs of ROOT/'Dataset N'/NNN.bmp with the "
                       "nucleus+cytoplasm masks NNN.png, classes from ROOT/'Class Labels of "
                       "Dataset N.csv', bring them to the 40x scale (each dataset has its own "
                       "magnification, hence its own scale).")
    p.add_argument("root", type=Path, help="folder holding 'Dataset 1/', 'Dataset 2/' and the "
                   "class-label CSVs")
    p.add_argument("outdir", type=Path)
    p.add_argument("--dataset", type=int, choices=[1, 2], nargs="+", default=[1, 2],
                   help="which datasets to extract (default: 1 2)")
    p.add_argument("--scale-1", type=positive_float, metavar="S",
                   help="resize factor of Dataset 1 (120x120 crops) to the 40x scale; "
                   "required when Dataset 1 is extracted")
    p.add_argument("--scale-2", type=positive_float, metavar="S",
                   help="resize factor of Dataset 2 (300x300 crops) to the 40x scale; "
                   "required when Dataset 2 is extracted")
    param_option(p, "--pad", key="extract.wbcseg.pad", type=non_negative_int,
                 help="pixels of context kept around each cell's mask box")
    param_option(p, "--min-area", key="extract.wbcseg.min_area", type=positive_int,
                 help="smallest cell mask in native px")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, {1: a.scale_1, 2: a.scale_2}, a.pad, a.min_area, a.dataset)
    run_source(a, planned, process, SOURCE, CLASSES)
