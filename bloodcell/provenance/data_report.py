"""Stage ``data_report``: what the data stages made, shown in the Snakemake report.

Writes into one folder: ``qc.html`` (per source and class: samples kept and skipped, from each
extract's qc_counts.csv), ``samples_<source>.png`` (a contact sheet of each source's first
cut cells per class, in sample-id order) and ``lineage.html`` (three synthetic test images
traced object by object to the raw database files, with the image, each object's cut cell
and the chain image -> background -> sample -> raw file (path, SHA-256) -> split). Images in
the HTML are embedded as PNG data URIs, so the page stands alone. Images are BGR (OpenCV)
throughout; boxes are (x, y, w, h), top-left corner, pixels.
"""

from __future__ import annotations

import argparse
import base64
import csv
from html import escape
from pathlib import Path

import numpy as np

from bloodcell.common.classes import (
    CLASS_NAMES,
    PLATELET_CLASSES,
    RBC_CLASSES,
    WBC_CLASSES,
    display_name,
)
from bloodcell.common.errors import UserError
from bloodcell.common.html_table import html_table

SAMPLES_PER_CLASS = 4
LINEAGE_EXAMPLES = 3
THUMB_PX = 96


def qc_rows(extract_dirs: list[Path]) -> list[list[object]]:
    """[source, class, samples, skipped] of every extract's qc_counts.csv, in the given order."""
    from bloodcell.dataset.samples import COUNTS_NAME

    rows = []
    for folder in extract_dirs:
        path = folder / COUNTS_NAME
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows += [[folder.name, r["class_name"], int(r["samples"]), int(r["skipped"])]
                         for r in csv.DictReader(f)]
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: unreadable QC table ({type(err).__name__}); re-run the "
                            "extract stage that wrote it") from None
    return rows


def sample_sheet(pack: Path) -> np.ndarray:
    """Contact sheet (BGR) of a pack's first SAMPLES_PER_CLASS cells of each class, by id."""
    import pyarrow.compute as pc

    from bloodcell.common.contact_sheet import contact_sheet
    from bloodcell.dataset.samples import decode_row, read_pack

    table = read_pack(pack, ["sample_id", "class_name", "image_png", "mask_png"])
    table = table.take(pc.sort_indices(table, [("sample_id", "ascending")]))
    names = table.column("class_name").to_pylist()
    tiles, taken = [], {}
    for i, name in enumerate(names):
        if taken.get(name, 0) < SAMPLES_PER_CLASS:
            taken[name] = taken.get(name, 0) + 1
            tiles.append((i, name))
    tiles.sort(key=lambda t: (class_order(t[1]), t[0]))
    return contact_sheet([(decode_row(table, i)[0], display_name(name)) for i, name in tiles],
                         2 * SAMPLES_PER_CLASS, THUMB_PX)


def class_order(name: str) -> int:
    """Position of a class name in CLASS_NAMES (unknown names last)."""
    return CLASS_NAMES.index(name) if name in CLASS_NAMES else len(CLASS_NAMES)


def pick_examples(objects: Path) -> list[str]:
    """LINEAGE_EXAMPLES image ids of a shard: the first image holding a typed white cell, the
    first with an infected RBC, the first with a platelet, then the first others."""
    from bloodcell.dataset.samples import read_parquet

    table = read_parquet(objects, ["image_id", "class_name"], "re-run the synth stage")
    by_image: dict[str, set[str]] = {}
    for iid, name in zip(*(table.column(c).to_pylist() for c in ("image_id", "class_name"))):
        by_image.setdefault(iid, set()).add(name)
    ids = sorted(by_image)
    chosen: list[str] = []
    for wanted in (WBC_CLASSES, RBC_CLASSES[:1], PLATELET_CLASSES):
        found = next((i for i in ids if by_image[i] & set(wanted) and i not in chosen), None)
        if found:
            chosen.append(found)
    chosen += [i for i in ids if i not in chosen]
    return chosen[:LINEAGE_EXAMPLES]


def png_uri(bgr: np.ndarray) -> str:
    """A PNG data URI of a BGR image."""
    from bloodcell.common.image_files import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(bgr)).decode("ascii")


def sample_thumbs(data: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    """The cut cell image (BGR) of every sample the rows name, from its extract pack."""
    from bloodcell.dataset.samples import decode_row, read_parquet

    thumbs = {}
    for pack in sorted({r["pack"] for r in rows if r["pack"]}):
        ids = sorted({r["sample_id"] for r in rows if r["pack"] == pack})
        table = read_parquet(Path(pack), ["sample_id", "image_png", "mask_png"],
                             "re-run the extract stage", filters=[("sample_id", "in", ids)])
        for i, sid in enumerate(table.column("sample_id").to_pylist()):
            thumbs[sid] = decode_row(table, i)[0]
    return thumbs


def example_html(image: np.ndarray, rows: list[dict], thumbs: dict[str, np.ndarray],
                 data: Path) -> str:
    """One lineage example: the image with its boxes, then one line per object with its cut
    cell, raw file and SHA-256, then the full chain as text."""
    from bloodcell.common.draw import draw_boxes
    from bloodcell.provenance.lineage import format_lineage

    boxes = np.array([[r[k] for k in "xywh"] for r in rows], float).reshape(-1, 4)
    drawn = draw_boxes(image, boxes, np.array([r["class_idx"] for r in rows]))
    items = "".join(
        f"<li><img alt='{escape(r['sample_id'])}' src='{png_uri(thumbs[r['sample_id']])}' "
        f"width='48'> object {r['obj']}: {escape(display_name(r['class_name']))} from "
        f"<code>{escape(str(r['raw_path']))}</code> (sha256 {str(r['raw_sha256'])[:16]}…)</li>"
        for r in rows if r["sample_id"] in thumbs)
    iid = escape(rows[0]["image_id"]) if rows else ""
    return (f"<section class='example'><h3>{iid}</h3>"
            f"<img alt='{iid}' src='{png_uri(drawn)}' width='448'><ul>{items}</ul>"
            f"<pre>{escape(format_lineage(rows, data))}</pre></section>")


def lineage_page(shard: Path, data: Path) -> str:
    """The lineage.html page: LINEAGE_EXAMPLES images of ``shard`` traced to raw files."""
    import cv2

    from bloodcell.dataset.shards import OBJECTS_NAME, TFRECORD_NAME, read_records
    from bloodcell.provenance.lineage import lineage

    ids = pick_examples(shard / OBJECTS_NAME)
    images = {rec.image_id: cv2.imdecode(np.frombuffer(rec.png, np.uint8), cv2.IMREAD_COLOR)
              for rec in read_records(shard / TFRECORD_NAME) if rec.image_id in ids}
    parts = []
    for iid in ids:
        rows = lineage(iid, data)
        parts.append(example_html(images[iid], rows, sample_thumbs(data, rows), data))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Lineage examples</title>"
            "<style>img{image-rendering:pixelated;vertical-align:middle}pre{font-size:11px}"
            "</style></head><body><h2>Three test images traced to raw files</h2>"
            + "".join(parts) + "</body></html>\n")


def run(extract_dirs: list[Path], shard: Path, data: Path, out: Path) -> None:
    """Write qc.html, samples_<source>.png and lineage.html into ``out`` (atomically)."""
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.common.contact_sheet import SHEET_LEVEL
    from bloodcell.common.image_files import write_png
    from bloodcell.dataset.samples import PACK_NAME

    with atomic_dir(out, "data-report", [*extract_dirs, shard, data]) as tmp:
        html_table("Quality control per source: cells kept and skipped",
                         ["source", "class", "samples", "skipped"], qc_rows(extract_dirs),
                         tmp / "qc.html")
        for folder in extract_dirs:
            write_png(tmp / f"samples_{folder.name}.png", sample_sheet(folder / PACK_NAME),
                      SHEET_LEVEL)
        (tmp / "lineage.html").write_text(lineage_page(shard, data), encoding="utf-8")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bloodcell data-report``."""
    p = sub.add_parser("data-report", help="QC tables, sample sheets and lineage examples for "
                       "the report",
                       description="Write qc.html (cells kept and skipped per source and "
                       "class), samples_<source>.png (each source's first cut cells per class) "
                       "and lineage.html (three synthetic images of SHARD traced object by "
                       "object to the raw database files) into OUT, for `snakemake --report`.")
    p.add_argument("--extracts", type=Path, nargs="+", required=True,
                   help="extract folders (data/extract/<source>)")
    p.add_argument("--shard", type=Path, required=True,
                   help="a synthetic shard to draw the lineage examples from (data/synth/test-0)")
    p.add_argument("--data", type=Path, default=Path("data"),
                   help="the data folder that holds extract/, split/ and synth/ (default data)")
    p.add_argument("--out", type=Path, required=True, help="output folder (reports/data)")
    p.set_defaults(main=main)


def main(a: argparse.Namespace) -> None:
    run(a.extracts, a.shard, a.data, a.out)
