"""IML malaria thin-smear fields (P. vivax life-cycle boxes), cut into RBCs at their boxes.

Layout (ROOT is the folder given to extract-iml)::

    ROOT/IML_Malaria/PA17NNNN.JPG     1280x960 smear fields
    ROOT/annotations.json             JSON array of {"image_name", "objects": [{"type",
                                      "bbox": {"x", "y", "h", "w"}}]}, values strings,
                                      (x, y) the box's top-left corner, px

and an image list (its own path, a versioned input such as config/lists/iml-train.txt) with
one image name a line: only those images are used. annotations.json may annotate images that
are not in IML_Malaria/ (the full set has 345); a listed one must be there.

Classes: ``red blood cell`` -> ``_`` (healthy RBC); ``ring``, ``trophozoite``, ``schizont``,
``gametocyte`` -> ``Infected`` (the box is the infected red cell); ``difficult`` objects are
ignored and listed in the QC table. Another type is a UserError. Masks and sample ids as in
bloodcell.sources.voc: ``iml/IML_Malaria/<file>@x,y,w,h``.
"""

from __future__ import annotations

from pathlib import Path

from bloodcell.common.cli_args import add_sample_args
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import Sample, Skip
from bloodcell.sources import voc
from bloodcell.sources.annotations import IML_DIFFICULT, AnnotatedImages, read_iml, read_name_list
from bloodcell.sources.extract import run_source
from bloodcell.sources.layout import require_layout

SOURCE = "iml"
STAGES = ("ring", "trophozoite", "schizont", "gametocyte")
CLASS_MAP = {"red blood cell": "_", **{s: "Infected" for s in STAGES}}
CLASSES = ["Infected", "_"]
DB = "IML malaria"

Job = voc.Job
"""One field image with its objects and the extract params."""


def check_iml_labels(ann: AnnotatedImages, annotations_json: Path) -> None:
    """UserError naming annotations.json, the image and object of the first unknown type."""
    known = [*CLASS_MAP, IML_DIFFICULT]
    for table in (ann.objects, ann.dropped):
        bad = table[~table["label"].isin(known)]
        if len(bad):
            r = bad.sort_values(["image", "obj"]).iloc[0]
            raise UserError(f"{annotations_json}: image {r['image']} object #{r['obj']}: type "
                            f"{r['label']!r} is not one of {', '.join(known)}; fix the "
                            "annotation")


def plan(root: Path, images_list: Path, scale: float, pad: int,
         min_area: int) -> tuple[list[Job], list[Skip]]:
    """One job per listed image; skips for the objects the reader drops (difficult, empty)."""
    images = require_layout(root, "IML_Malaria", DB)
    annotations_json = root / "annotations.json"
    if not annotations_json.is_file():
        raise UserError(f"{annotations_json}: not found; the {DB} database must hold "
                        "annotations.json beside IML_Malaria/ (see raw/README.md)")
    ann = read_iml(images, annotations_json, read_name_list(images_list))
    check_iml_labels(ann, annotations_json)
    return voc.field_jobs(SOURCE, ann, images.name, CLASS_MAP, scale, pad, min_area)


def process(job: Job) -> list[Sample | Skip]:
    """Cut every annotated cell of one field (see bloodcell.sources.voc.process)."""
    return voc.process(job)


def add_parser(sub) -> None:
    """``bloodcell extract-iml``."""
    p = sub.add_parser("extract-iml", help="cut the RBCs of IML malaria smears at their boxes",
                       description="Cut the annotated cells of the listed images of "
                       "ROOT/IML_Malaria with ROOT/annotations.json boxes and threshold masks, "
                       "bring them to the 40x scale. 'red blood cell' -> _, ring / trophozoite "
                       "/ schizont / gametocyte -> Infected, difficult ignored.")
    p.add_argument("root", type=Path, help="folder holding IML_Malaria/ and annotations.json")
    p.add_argument("outdir", type=Path)
    p.add_argument("--images-list", type=Path, required=True, metavar="FILE",
                   help="text file naming the images to use, one a line "
                   "(e.g. config/lists/iml-train.txt)")
    add_sample_args(p, "iml")
    p.set_defaults(main=main)


def main(a) -> None:
    planned = plan(a.root, a.images_list, a.scale, a.pad, a.min_area)
    run_source(a, planned, process, SOURCE, CLASSES)
