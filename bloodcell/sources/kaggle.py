"""Kaggle / NIH "Cell Images for Detecting Malaria": one RBC per PNG on a black surround.

Layout (ROOT is the folder given to extract-kaggle)::

    ROOT/cell_images/Parasitized/*.png   -> class Infected
    ROOT/cell_images/Uninfected/*.png    -> class _ (healthy RBC)

``Thumbs.db`` files and the nested duplicate ``cell_images/cell_images/`` of the Kaggle
download are ignored and listed in the QC table. Masks come from a threshold on the
brightest channel (bloodcell.dataset.masks.cell_on_black).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bloodcell.common.cli_args import add_sample_args, param_option, threshold
from bloodcell.common.image_files import ImageProblem
from bloodcell.dataset.masks import cell_on_black
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.dataset.scale import crop, mask_box, rescale
from bloodcell.sources.extract import read_source, run_source, sha256_hex
from bloodcell.sources.layout import list_images, require_images, require_layout

SOURCE = "kaggle"
CLASS_FOLDERS = {"Parasitized": "Infected", "Uninfected": "_"}
CLASSES = ["Infected", "_"]


@dataclass(frozen=True)
class Job:
    """One cell image: absolute path, path relative to ROOT, class and the extract params."""

    path: Path
    rel: str
    class_name: str
    scale: float
    pad: int
    min_area: int
    threshold: int | str


def plan(root: Path, scale: float, pad: int, min_area: int,
         threshold: int | str) -> tuple[list[Job], list[Skip]]:
    """Jobs for every cell PNG and skips for the files the loader ignores on purpose."""
    base = require_layout(root, "cell_images/Parasitized", "Kaggle malaria cells").parent
    jobs: list[Job] = []
    skips: list[Skip] = []
    for folder, class_name in CLASS_FOLDERS.items():
        cdir = require_layout(root, f"cell_images/{folder}", "Kaggle malaria cells")
        images = require_images(cdir, "Kaggle malaria cells")
        _, others = list_images(cdir)
        for p in images:
            rel = p.relative_to(root).as_posix()
            jobs.append(Job(p, rel, class_name, scale, pad, min_area, threshold))
        for p in others:
            why = "Windows thumbnail cache" if p.name == "Thumbs.db" else "not an image"
            skips.append(Skip(p.relative_to(root).as_posix(), class_name, f"{why}, ignored"))
    nested = base / "cell_images"
    if nested.is_dir():
        skips.append(Skip(nested.relative_to(root).as_posix(), "",
                          "nested duplicate of the download, ignored"))
    return jobs, skips


def process(job: Job) -> list[Sample | Skip]:
    """Cut one cell with its threshold mask and bring it to the 40x scale."""
    try:
        data, img = read_source(job.path)
    except ImageProblem as err:
        return [Skip(job.rel, job.class_name, str(err))]
    mask = cell_on_black(img, job.threshold, job.min_area)
    if mask is None:
        return [Skip(job.rel, job.class_name,
                     f"no cell of at least {job.min_area} px above the threshold; "
                     "lower extract.kaggle.min_area or threshold")]
    box = mask_box(mask, job.pad)
    small, small_mask = rescale(crop(img, box), crop(mask, box), job.scale)
    sample_id = f"{SOURCE}/{job.rel}"
    return [Sample(sample_id, SOURCE, job.class_name, job.rel, sha256_hex(data), box,
                   small, small_mask)]


def add_parser(sub) -> None:
    """``bloodcell extract-kaggle``."""
    p = sub.add_parser("extract-kaggle", help="cut Kaggle malaria cells with threshold masks",
                       description="Mask the cells of ROOT/cell_images/{Parasitized,Uninfected} "
                       "by a threshold, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding cell_images/")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, "kaggle")
    param_option(p, "--threshold", key="extract.kaggle.threshold", type=threshold,
                 help="cell-vs-black threshold on the brightest channel, or otsu")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, a.scale, a.pad, a.min_area, a.threshold)
    run_source(a, planned, process, SOURCE, CLASSES)
