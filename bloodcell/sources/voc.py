"""Pascal VOC smear fields (BCCD), cut into cells at their annotated boxes.

Layout (ROOT is the folder given to extract-voc: the folder holding ``BCCD/``, or the VOC
set folder ``BCCD/`` itself)::

    ROOT/BCCD/JPEGImages/BloodImage_NNNNN.jpg     640x480 smear fields
    ROOT/BCCD/Annotations/BloodImage_NNNNN.xml    Pascal VOC boxes (1-based inclusive corners)
    ROOT/BCCD/ImageSets/Main/{train,val,trainval}.txt   image stems, one a line

Any VOC set folder name works in place of ``BCCD`` (the folder holding Annotations/ and
JPEGImages/). Only the images of ``--image-set NAME`` (ImageSets/Main/NAME.txt) are used.
Classes: RBC -> ``_`` (healthy RBC), Platelets -> Thrombocytes, WBC -> ``WBC`` (a white
cell of unknown type, bloodcell.common.classes.UNTYPED_WBC). Another class name is a UserError.

Each object's mask is a threshold of its annotated box (bloodcell.dataset.masks.cell_on_light: the
green channel below Otsu's threshold, the component over the box's centre, holes filled), so
the mask never leaves the box; the sample is the mask's box grown by ``pad`` px, brought to
the 40x scale. Sample ids are ``voc/<set>/JPEGImages/<file>@x,y,w,h`` with the annotated
box in native px (top-left, rounded outward). Objects the annotation reader drops
(zero-size boxes, ``difficult``), boxes too thin for a cell (MAX_ASPECT) and objects whose
mask fails (nothing of ``min_area`` px, or under MIN_FILL of the box) are QC entries named
``<file>#<object index, 0-based>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcell.common.classes import UNTYPED_WBC
from bloodcell.common.cli_args import add_sample_args
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import ImageProblem
from bloodcell.dataset.masks import Box, cell_on_light
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.dataset.scale import crop, mask_box, rescale
from bloodcell.sources.annotations import AnnotatedImages, read_name_list, read_voc
from bloodcell.sources.extract import read_source, run_source, sha256_hex
from bloodcell.sources.layout import require_layout

SOURCE = "voc"
CLASS_MAP = {"RBC": "_", "Platelets": "Thrombocytes", "WBC": UNTYPED_WBC}
CLASSES = ["Thrombocytes", "_", UNTYPED_WBC]
DB = "Pascal VOC (BCCD)"
MAX_ASPECT = 4.0
"""A box whose long side exceeds this many times its short side holds no single cell (IML
has a 3x90 px one); it is a QC entry."""
MIN_FILL = 0.1
"""A mask covering less than this share of its box is a QC entry: the threshold caught a
sliver of a neighbour or of stain, not the boxed cell (BCCD has 7 such RBC boxes in train,
IML 2)."""


@dataclass(frozen=True)
class Cell:
    """One annotated object: 0-based index in its XML, class (ours) and box (x, y, w, h int
    px, top-left, the annotated box rounded outward)."""

    obj: int
    class_name: str
    box: Box


@dataclass(frozen=True)
class Job:
    """One field image with its objects and the extract params (also used by iml.py)."""

    source: str
    path: Path
    rel: str
    cells: tuple[Cell, ...]
    scale: float
    pad: int
    min_area: int
    size: tuple[int, int] | None = None
    """(width, height) px the annotation gives the image; another size skips the image."""


def voc_folder(root: Path) -> Path:
    """The VOC set folder (holding Annotations/ and JPEGImages/): ROOT itself or one child."""
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        return root
    if root.is_dir():
        sets = sorted(p for p in root.iterdir()
                      if (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir())
        if len(sets) == 1:
            return sets[0]
        if len(sets) > 1:
            raise UserError(f"{root}: holds several VOC sets ({', '.join(p.name for p in sets)}"
                            "); point to the one to extract")
    require_layout(root, "BCCD/Annotations", DB)
    raise UserError(f"{root / 'BCCD' / 'JPEGImages'}: not found; the {DB} database must be "
                    "laid out as in raw/README.md")


def int_box(x: float, y: float, w: float, h: float) -> Box:
    """A float box (px, top-left) rounded outward to whole pixels."""
    x0, y0 = math.floor(x), math.floor(y)
    return x0, y0, math.ceil(x + w) - x0, math.ceil(y + h) - y0


def plan(root: Path, image_set: str, scale: float, pad: int,
         min_area: int) -> tuple[list[Job], list[Skip]]:
    """One job per image of ImageSets/Main/<image_set>.txt; skips for dropped objects."""
    base = voc_folder(root)
    list_file = base / "ImageSets" / "Main" / f"{image_set}.txt"
    if not list_file.is_file():
        have = sorted(p.stem for p in (base / "ImageSets" / "Main").glob("*.txt"))
        raise UserError(f"{list_file}: image set {image_set!r} not found; use one of "
                        f"{', '.join(have) or '(none: add ImageSets/Main/NAME.txt)'}")
    ann = read_voc(base / "JPEGImages", base / "Annotations", read_name_list(list_file))
    check_voc_labels(ann, base / "Annotations")
    return field_jobs(SOURCE, ann, f"{base.name}/JPEGImages", CLASS_MAP, scale, pad, min_area)


def check_voc_labels(ann: AnnotatedImages, annotations: Path) -> None:
    """UserError naming the XML file and object of the first label not in CLASS_MAP."""
    for table in (ann.objects, ann.dropped):
        bad = table[~table["label"].isin(list(CLASS_MAP))]
        if len(bad):
            r = bad.sort_values(["image", "obj"]).iloc[0]
            stem = Path(r["image"]).stem
            raise UserError(f"{annotations / stem}.xml: object #{r['obj']}: class "
                            f"{r['label']!r} is not one of {', '.join(CLASS_MAP)}; fix the "
                            "annotation")


def field_jobs(source: str, ann: AnnotatedImages, folder: str, class_map: dict[str, str],
               scale: float, pad: int, min_area: int) -> tuple[list[Job], list[Skip]]:
    """One job per annotated image (``folder``/image relative to ROOT) and one skip per
    object the reader dropped; labels are mapped by ``class_map`` (checked before)."""
    jobs = []
    for row in ann.images.itertuples(index=False):
        objs = ann.objects[ann.objects["image"] == row.image]
        cells = tuple(Cell(int(o.obj), class_map[o.label], int_box(o.x, o.y, o.w, o.h))
                      for o in objs.itertuples(index=False))
        jobs.append(Job(source, Path(row.path), f"{folder}/{row.image}", cells, scale, pad,
                        min_area, (int(row.width), int(row.height))))
    skips = [Skip(f"{folder}/{r.image}#{r.obj}", class_map.get(r.label, ""), r.reason)
             for r in ann.dropped.itertuples(index=False)]
    return jobs, skips


def cut_box(img: np.ndarray, box: Box, pad: int, min_area: int
            ) -> tuple[np.ndarray, np.ndarray, Box] | None:
    """Mask the cell inside ``box`` of field ``img`` (BGR) and cut it with ``pad`` px context.

    Returns (crop BGR, crop mask, crop box (x, y, w, h) in the field's px), or None when the
    threshold finds no cell of ``min_area`` px in the box.
    """
    x, y, w, h = box
    mask = cell_on_light(crop(img, box), min_area)
    if mask is None:
        return None
    full = np.zeros(img.shape[:2], bool)
    full[y : y + h, x : x + w] = mask
    cbox = mask_box(full, pad)
    return crop(img, cbox), crop(full, cbox), cbox


def cut(img: np.ndarray, digest: str, c: Cell, job: Job) -> Sample | Skip:
    """Sample of one object of the field ``img`` at the 40x scale, or a Skip naming it."""
    where = f"{job.rel}#{c.obj}"
    x, y, w, h = c.box
    if max(w, h) > MAX_ASPECT * min(w, h):
        return Skip(where, c.class_name, f"box {w}x{h} px is too thin to hold one cell "
                    f"(sides differ more than {MAX_ASPECT:g}-fold), ignored; fix the annotation")
    found = cut_box(img, c.box, job.pad, job.min_area)
    if found is None:
        return Skip(where, c.class_name, f"no cell of at least {job.min_area} px found by the "
                    "threshold in its box; check the box or lower --min-area")
    region, mask, cbox = found
    fill = mask.sum() / (w * h)
    if fill < MIN_FILL:
        return Skip(where, c.class_name, f"the threshold mask covers only {fill:.1%} of the "
                    f"{w}x{h} px box (under {MIN_FILL:.0%}): it caught a sliver or a darker "
                    "neighbour, not the boxed cell; ignored")
    small, small_mask = rescale(region, mask, job.scale)
    return Sample(f"{job.source}/{job.rel}@{x},{y},{w},{h}", job.source, c.class_name, job.rel,
                  digest, cbox, small, small_mask)


def process(job: Job) -> list[Sample | Skip]:
    """Cut every annotated object of one field."""
    try:
        data, img = read_source(job.path)
    except ImageProblem as err:
        return [Skip(f"{job.rel}#{c.obj}", c.class_name, str(err)) for c in job.cells]
    size = (img.shape[1], img.shape[0])
    if job.size is not None and size != job.size:
        why = (f"image is {size[0]}x{size[1]} px but its annotation says "
               f"{job.size[0]}x{job.size[1]}; fix the annotation's size or replace the image")
        return [Skip(f"{job.rel}#{c.obj}", c.class_name, why) for c in job.cells]
    digest = sha256_hex(data)
    return [cut(img, digest, c, job) for c in job.cells]


def add_parser(sub) -> None:
    """``bloodcell extract-voc``."""
    p = sub.add_parser("extract-voc", help="cut the cells of Pascal VOC smears (BCCD) at their "
                       "boxes",
                       description="Cut the annotated cells of the images of one image set of "
                       "ROOT/BCCD (JPEGImages/, Annotations/*.xml, ImageSets/Main/NAME.txt) with "
                       "threshold masks inside each box, bring them to the 40x scale. RBC -> _, "
                       "Platelets -> Thrombocytes, WBC -> WBC (type unknown).")
    p.add_argument("root", type=Path, help="folder holding BCCD/ (or the VOC set folder itself)")
    p.add_argument("outdir", type=Path)
    p.add_argument("--image-set", required=True, metavar="NAME",
                   help="use the images of ImageSets/Main/NAME.txt (e.g. train)")
    add_sample_args(p, "voc")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, a.image_set, a.scale, a.pad, a.min_area)
    run_source(a, planned, process, SOURCE, CLASSES)
