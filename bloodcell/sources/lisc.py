"""LISC: 720x576 smears with one WBC each and expert masks of the WBC.

Layout (ROOT is the folder given to extract-lisc)::

    ROOT/LISC Database/Main Dataset/<folder>/<n>.bmp
    ROOT/LISC Database/Ground Truth Segmentation/<folder>/areaforexpert1/<n>_expert.bmp

with <folder> in Baso, eosi, lymp, mixt, mono, neut. Any non-zero mask pixel is WBC (nucleus
and cytoplasm grey levels alike). A mask 8 px smaller than its image in both directions is
centred on it (4 px each side); any other size difference skips the image. Cells touching
the image border are skipped (a cut cell would be pasted as a whole one). ``mixt`` images hold
WBCs of several classes without per-cell labels and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcell.common.cli_args import add_sample_args, param_option
from bloodcell.common.image_files import ImageProblem, read_mask
from bloodcell.dataset.masks import components, touches_border
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.dataset.scale import crop, mask_box, rescale
from bloodcell.sources.extract import MaskJob, read_source, run_source, sha256_hex
from bloodcell.sources.layout import require_images, require_layout

SOURCE = "lisc"
MAIN = "LISC Database/Main Dataset"
TRUTH = "LISC Database/Ground Truth Segmentation"
CLASS_FOLDERS = {"eosi": "Eosinophil", "Baso": "Basophil", "neut": "Neutrophil",
                 "lymp": "Lymphocytes", "mono": "Monocytes"}
MIXED_FOLDER = "mixt"
CLASSES = list(CLASS_FOLDERS.values())
MASK_MARGIN_PX = 4


@dataclass(frozen=True)
class Job(MaskJob):
    """One smear: image and expert-mask paths, class, extract params and the multi-cell rule."""

    multi_cell: str


def plan(root: Path, scale: float, pad: int, min_area: int,
         multi_cell: str) -> tuple[list[Job], list[Skip]]:
    """Jobs for every class-folder image; skips for mixt images."""
    require_layout(root, MAIN, "LISC")
    jobs: list[Job] = []
    skips: list[Skip] = []
    for folder, class_name in CLASS_FOLDERS.items():
        images = require_images(require_layout(root, f"{MAIN}/{folder}", "LISC"), "LISC")
        for p in images:
            mask = root / TRUTH / folder / "areaforexpert1" / f"{p.stem}_expert.bmp"
            rel = p.relative_to(root).as_posix()
            jobs.append(Job(p, mask, rel, class_name, scale, pad, min_area, multi_cell))
    mixed = root / MAIN / MIXED_FOLDER
    if mixed.is_dir():
        for p in sorted(mixed.iterdir()):
            if p.is_file():
                skips.append(Skip(p.relative_to(root).as_posix(), "",
                                  "mixt: several WBC classes without per-cell labels"))
    return jobs, skips


def align_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The mask on the image's (H, W) grid: as is, centred if 8 px smaller, else None."""
    if mask.shape == shape:
        return mask
    dh, dw = shape[0] - mask.shape[0], shape[1] - mask.shape[1]
    if dh == dw == 2 * MASK_MARGIN_PX:
        return np.pad(mask, MASK_MARGIN_PX)
    return None


def process(job: Job) -> list[Sample | Skip]:
    """Cut the WBC(s) of one smear with the expert mask and bring them to the 40x scale."""
    def skip(reason: str) -> list[Sample | Skip]:
        return [Skip(job.rel, job.class_name, reason)]

    try:
        data, img = read_source(job.path)
    except ImageProblem as err:
        return skip(str(err))
    if not job.mask_path.is_file():
        return skip(f"no expert mask {job.mask_path.name} in {job.mask_path.parent.name}/")
    try:
        raw_mask = read_mask(job.mask_path)
    except ImageProblem as err:
        return skip(f"mask {job.mask_path.name}: {err}")
    mask = align_mask(raw_mask, img.shape[:2])
    if mask is None:
        h, w = raw_mask.shape
        return skip(f"mask is {w}x{h} px but the image is {img.shape[1]}x{img.shape[0]} px; "
                    "use the mask made for this image")
    cells = components(mask, job.min_area)
    if not cells:
        return skip(f"mask holds no cell of at least {job.min_area} px")
    if len(cells) > 1 and job.multi_cell == "skip":
        return skip(f"{len(cells)} cells in the mask; set extract.lisc.multi_cell: split "
                    "to keep each")
    out: list[Sample | Skip] = []
    digest = sha256_hex(data)
    for k, (cell, box) in enumerate(cells):
        part = job.rel + (f"#{k}" if len(cells) > 1 else "")
        if touches_border(box, mask.shape):
            out.append(Skip(part, job.class_name, "cell cut by the image border"))
            continue
        cbox = mask_box(cell, job.pad)
        small, small_mask = rescale(crop(img, cbox), crop(cell, cbox), job.scale)
        out.append(Sample(f"{SOURCE}/{part}", SOURCE, job.class_name, job.rel, digest, cbox,
                          small, small_mask))
    return out


def add_parser(sub) -> None:
    """``bloodcell extract-lisc``."""
    p = sub.add_parser("extract-lisc", help="cut LISC WBCs with the expert masks",
                       description="Cut the WBCs of ROOT/'LISC Database' with their expert "
                       "masks, bring them to the 40x scale, write OUTDIR/samples.parquet and "
                       "QC tables.")
    p.add_argument("root", type=Path, help="folder holding 'LISC Database/'")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, "lisc")
    param_option(p, "--multi-cell", key="extract.lisc.multi_cell", choices=["skip", "split"],
                 help="an image whose mask holds several cells: skip it or keep each cell")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, a.scale, a.pad, a.min_area, a.multi_cell)
    run_source(a, planned, process, SOURCE, CLASSES)
