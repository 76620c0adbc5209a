"""IUMC (Isfahan) single-WBC images with binary masks, in the layout bloodcell defines.

The raw IUMC download's layout is not public; bloodcell expects (ROOT is the folder given to
extract-iumc)::

    ROOT/<Class>/images/<id>.<bmp|png|jpg|tif>
    ROOT/<Class>/masks/<id>.png        (same size; any non-zero pixel is the cell)

with <Class> one of Eosinophil, Basophil, Neutrophil, Lymphocytes, Monocytes (IUMC has no
basophils). The largest mask component is the cell; it may touch the crop's edge.
"""

from __future__ import annotations

from pathlib import Path

from bloodcell.common.classes import WBC_CLASSES
from bloodcell.common.cli_args import add_sample_args
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.sources.extract import MaskJob, cut_by_mask, run_source
from bloodcell.sources.layout import require_images

SOURCE = "iumc"
CLASSES = list(WBC_CLASSES)


Job = MaskJob
"""One single-WBC image, its mask, class and the extract params."""


def class_folders(root: Path) -> list[Path]:
    """The class folders under ROOT; UserError for a missing root or an unknown folder."""
    if not root.is_dir():
        raise UserError(f"{root}: IUMC database folder not found; lay it out as in "
                        "raw/README.md or set sources.root in params.yaml")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p for p in folders if p.name not in WBC_CLASSES]
    if unknown:
        raise UserError(f"{unknown[0]}: unknown IUMC class folder; name class folders "
                        f"{', '.join(WBC_CLASSES)} (see raw/README.md)")
    if not folders:
        raise UserError(f"{root}: no IUMC class folders ({', '.join(WBC_CLASSES)}); "
                        "lay the database out as in raw/README.md")
    return folders


def plan(root: Path, scale: float, pad: int, min_area: int) -> tuple[list[Job], list[Skip]]:
    """One job per image of every class folder."""
    jobs: list[Job] = []
    for folder in class_folders(root):
        if not (folder / "images").is_dir():
            raise UserError(f"{folder / 'images'}: not found; IUMC class folders hold "
                            "images/ and masks/ (see raw/README.md)")
        for p in require_images(folder / "images", "IUMC"):
            mask = folder / "masks" / f"{p.stem}.png"
            rel = p.relative_to(root).as_posix()
            jobs.append(Job(p, mask, rel, folder.name, scale, pad, min_area))
    return jobs, []


def process(job: Job) -> list[Sample | Skip]:
    """Cut the WBC by its mask and bring it to the 40x scale."""
    return cut_by_mask(job, SOURCE)


def add_parser(sub) -> None:
    """``bloodcell extract-iumc``."""
    p = sub.add_parser("extract-iumc", help="cut IUMC single WBCs with their masks",
                       description="Cut the WBCs of ROOT/<Class>/images with masks from "
                       "ROOT/<Class>/masks, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding the IUMC class folders")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, "iumc")
    p.set_defaults(main=main)


def main(a) -> None:
    run_source(a, plan(a.root, a.scale, a.pad, a.min_area), process, SOURCE, CLASSES)
