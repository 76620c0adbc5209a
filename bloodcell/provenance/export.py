"""Export synthetic splits to the original project's layout, COCO or YOLO, and read them back.

Every shard of a split (``SYNTH/<split>-<k>/``) is read in shard order: images from
``images.tfrecord`` (PNG bytes, which decode to BGR with OpenCV), objects from
``objects.parquet`` joined by image id and ``obj`` order (pasted objects first, then background
RBCs). Boxes are (x, y, w, h): top-left
corner and size in integer pixels of the image. The output folder is written atomically.

Layouts (OUTDIR is replaced as a whole):

- ``original``: ``images/<id>.bmp`` (24-bit BGR BMP) and ``labels/<id>.json`` =
  ``{"0": {className, classIdx, posX, posY, bboxW, bboxH, tlX, tlY, samplePath, bgPath}, ...}``
  with posX, posY the integer centre (x + w // 2, y + h // 2);
- ``coco``: ``images/<id>.png`` (the stored PNG bytes) and ``annotations.json`` (COCO detection
  as documented at cocodataset.org: ``info``, ``licenses``, ``images``, ``annotations``,
  ``categories``; category id = class index + 1, bbox [x, y, w, h] floats from the top-left,
  "bloodcell_id" in each image);
- ``yolo``: Ultralytics' layout, one folder per split under ``images/`` and ``labels/``
  (``train``, ``val`` for the project's ``valid``, ``test``): ``images/<part>/<id>.png``,
  ``labels/<part>/<id>.txt`` (``class cx cy w h``: box centre and size over the image width and
  height, in [0, 1], 6 decimals) and ``data.yaml``. SPLIT ``all`` writes every split into the
  one folder, a complete Ultralytics dataset.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bloodcell import __version__
from bloodcell.common.atomic import atomic_dir, check_output
from bloodcell.common.classes import (
    CLASS_NAMES,
    DISPLAY_NAMES,
    RBC_IDX,
    coco_categories,
)
from bloodcell.common.errors import UserError
from bloodcell.common.tile import TILE_PX as DEFAULT_SIZE  # read_yolo's side without a PNG
from bloodcell.dataset.samples import read_parquet
from bloodcell.dataset.shards import (
    OBJECTS_NAME,
    TFRECORD_NAME,
    ImageRecord,
    parse_image_id,
    read_records,
    shard_dirs,
)
from bloodcell.dataset.split import SPLITS

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("original", "coco", "yolo")
OBJ_COLUMNS = ["image_id", "obj", "class_idx", "x", "y", "w", "h", "sample_id", "background_id"]
READ_COLUMNS = ["image_id", "class_idx", "x", "y", "w", "h"]
_SAFE_ID = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*-\d+-\d+")
_SAFE_SPLIT = re.compile(r"[A-Za-z0-9_]+")
ALL = "all"
"""The SPLIT that exports every split (SPLITS) into one folder; ``--format yolo`` only."""
YOLO_PARTS = {"train": "train", "valid": "val", "test": "test"}
"""Ultralytics' folder and data.yaml key of each split (its validation key is ``val``)."""
COCO_LICENSE = {"id": 1, "name": "See raw/README.md for the source databases' terms", "url": ""}
"""The one COCO licence entry: the images are composed from the source databases' cells."""


def yolo_part(split: str) -> str:
    """Ultralytics' name of a split: ``valid`` -> ``val``; other names as they are."""
    return YOLO_PARTS.get(split, split)


def _splits(fmt: str, split: str) -> tuple[str, ...]:
    """The splits to export: SPLITS for ``all`` (yolo only; UserError otherwise), else one."""
    if split != ALL:
        return (split,)
    if fmt != "yolo":
        raise UserError(f"SPLIT {ALL}: only --format yolo writes every split into one folder; "
                        f"export {fmt} one split at a time (train, valid or test)")
    return SPLITS


def _check_split(split: str, synth_root: Path) -> list[Path]:
    """The split's shard folders; UserError for a bad split name, no shards or missing files."""
    if not _SAFE_SPLIT.fullmatch(split):
        raise UserError(f"{split!r}: not a split name; use letters, digits or _ (e.g. train)")
    dirs = shard_dirs(synth_root, split)
    if not dirs:
        raise UserError(f"{synth_root}/{split}-*: no shards of split {split!r}; run the synth "
                        "stage first (or pass --synth to the folder it wrote)")
    for d in dirs:
        for name in (TFRECORD_NAME, OBJECTS_NAME):
            if not (d / name).is_file():
                raise UserError(f"{d / name}: missing; re-run the synth stage for {split}")
    return dirs


def _check_outdir(outdir: Path, synth_root: Path) -> None:
    """UserError if ``outdir`` may not be replaced (bloodcell.common.atomic's rule: the synth
    folder, a folder holding it, the current folder or one an export did not make) or lies inside
    the synth folder (where it could pass for a shard)."""
    check_output(outdir, "export", [synth_root])
    if synth_root.resolve() in outdir.resolve().parents:
        raise UserError(f"{outdir}: lies inside the synth folder {synth_root}; choose an "
                        "OUTDIR outside it")


def _shard_objects(shard: Path) -> dict[str, list[dict]]:
    """Object rows (OBJ_COLUMNS, ints) of one shard per image id, in ``obj`` order."""
    rows = read_parquet(shard / OBJECTS_NAME, OBJ_COLUMNS, "re-run the synth stage").to_pylist()
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["image_id"], r["obj"])):
        out.setdefault(r["image_id"], []).append(r)
    return out


def _check_join(shard: Path, rec: ImageRecord, rows: list[dict]) -> None:
    """UserError unless the image's TFRecord labels and parquet rows agree (class and box)."""
    where = f"{shard}: image {rec.image_id!r}"
    if not _SAFE_ID.fullmatch(rec.image_id):
        raise UserError(f"{where}: not a SPLIT-SHARD-INDEX id; re-run the synth stage")
    same = len(rows) == len(rec.classes) and all(
        int(c) == r["class_idx"] and all(abs(float(b) - r[k]) <= 0.5 for b, k in zip(box, "xywh"))
        for c, box, r in zip(rec.classes, rec.boxes, rows))
    if not same:
        raise UserError(f"{where}: {TFRECORD_NAME} ({len(rec.classes)} objects) and "
                        f"{OBJECTS_NAME} ({len(rows)} rows) disagree; re-run the synth stage")


def iter_split(dirs: list[Path]) -> Iterator[tuple[ImageRecord, list[dict]]]:
    """(record, object rows) of every image of the shards in order; rows have OBJ_COLUMNS.

    Boxes in the rows are (x, y, w, h), top-left, integer pixels; the PNG decodes to BGR.
    """
    for shard in dirs:
        objects = _shard_objects(shard)
        for rec in read_records(shard / TFRECORD_NAME):
            rows = objects.pop(rec.image_id, [])
            _check_join(shard, rec, rows)
            yield rec, rows
        if objects:
            first = sorted(objects)[0]
            raise UserError(f"{shard / OBJECTS_NAME}: objects of {len(objects)} images absent "
                            f"from {TFRECORD_NAME} (first {first}); re-run the synth stage")


class OriginalWriter:
    """images/<id>.bmp (24-bit, BGR) and labels/<id>.json in the original project's fields."""

    def __init__(self, out: Path, splits: tuple[str, ...]) -> None:
        self.out = out
        (out / "images").mkdir()
        (out / "labels").mkdir()

    def add(self, split: str, rec: ImageRecord, rows: list[dict]) -> None:
        """Write one image as BMP and its labels (boxes x, y, w, h, top-left, px)."""
        import cv2
        import numpy as np

        img = cv2.imdecode(np.frombuffer(rec.png, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"image {rec.image_id}: PNG does not decode; re-run the synth stage")
        ok, bmp = cv2.imencode(".bmp", img)
        if not ok:
            raise RuntimeError(f"image {rec.image_id}: BMP encoding failed")
        (self.out / "images" / f"{rec.image_id}.bmp").write_bytes(bmp.tobytes())
        labels = {str(i): original_label(r) for i, r in enumerate(rows)}
        (self.out / "labels" / f"{rec.image_id}.json").write_text(json.dumps(labels, indent=2))

    def close(self) -> None:
        """Nothing to finish: every image is complete when added."""


def original_label(row: dict) -> dict:
    """One object in the original JSON fields; posX, posY = x + w // 2, y + h // 2 (px)."""
    x, y, w, h, c = (int(row[k]) for k in ("x", "y", "w", "h", "class_idx"))
    return {
        "className": CLASS_NAMES[c], "classIdx": c, "posX": x + w // 2, "posY": y + h // 2,
        "bboxW": w, "bboxH": h, "tlX": x, "tlY": y,
        "samplePath": None if c in RBC_IDX else row["sample_id"],
        "bgPath": row["background_id"],
    }


class CocoWriter:
    """images/<id>.png (stored bytes) and annotations.json (COCO detection, bbox x, y, w, h
    from the top-left, in pixels)."""

    def __init__(self, out: Path, splits: tuple[str, ...]) -> None:
        self.out, self.splits = out, splits
        (out / "images").mkdir()
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, split: str, rec: ImageRecord, rows: list[dict]) -> None:
        """Copy the PNG; add the image (ids 1.., licence 1) and its annotations (ids 1..)."""
        (self.out / "images" / f"{rec.image_id}.png").write_bytes(rec.png)
        img_id = len(self.images) + 1
        self.images.append({"id": img_id, "file_name": f"images/{rec.image_id}.png",
                            "width": rec.width, "height": rec.height,
                            "license": COCO_LICENSE["id"], "bloodcell_id": rec.image_id})
        for r in rows:
            w, h = float(r["w"]), float(r["h"])
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": img_id,
                "category_id": int(r["class_idx"]) + 1,
                "bbox": [float(r["x"]), float(r["y"]), w, h], "area": w * h, "iscrowd": 0})

    def close(self) -> None:
        """Write annotations.json with all 10 categories (id = class index + 1)."""
        doc = {"info": coco_info(self.splits), "licenses": [COCO_LICENSE],
               "images": self.images, "annotations": self.annotations,
               "categories": coco_categories()}
        (self.out / "annotations.json").write_text(json.dumps(doc, separators=(",", ":")))


def coco_info(splits: tuple[str, ...]) -> dict:
    """COCO's ``info`` block. No ``year`` or ``date_created``: the export reads no clock, so the
    same shards always give the same bytes (pycocotools needs neither)."""
    return {"description": f"bloodcell synthetic {', '.join(splits)} split",
            "version": __version__, "contributor": "bloodcell", "url": ""}


class YoloWriter:
    """Ultralytics' layout: images/<part>/<id>.png, labels/<part>/<id>.txt (class cx cy w h in
    [0, 1]) and data.yaml, with part = yolo_part(split) (labels mirror images: /images/ ->
    /labels/, .png -> .txt)."""

    def __init__(self, out: Path, splits: tuple[str, ...]) -> None:
        self.out, self.parts = out, [yolo_part(s) for s in splits]
        for part in self.parts:
            (out / "images" / part).mkdir(parents=True)
            (out / "labels" / part).mkdir(parents=True)

    def add(self, split: str, rec: ImageRecord, rows: list[dict]) -> None:
        """Copy the PNG; write one normalised line per object (6 decimals)."""
        part = yolo_part(split)
        (self.out / "images" / part / f"{rec.image_id}.png").write_bytes(rec.png)
        lines = [yolo_line(r, rec.width, rec.height) for r in rows]
        (self.out / "labels" / part / f"{rec.image_id}.txt").write_text("".join(lines))

    def close(self) -> None:
        """Write data.yaml (see yolo_data_yaml)."""
        (self.out / "data.yaml").write_text(yolo_data_yaml(self.parts))


def yolo_data_yaml(parts: list[str]) -> str:
    """Ultralytics' dataset YAML: ``<part>: images/<part>`` per part, ``nc`` 10 and ``names``
    {class index: display name}. No ``path`` key: Ultralytics then takes the YAML's own folder
    as the dataset root, so the folder can move (``path: .`` would mean the working folder)."""
    import yaml

    doc: dict = {part: f"images/{part}" for part in parts}
    doc.update(nc=len(DISPLAY_NAMES), names=dict(enumerate(DISPLAY_NAMES)))
    head = (f"# bloodcell {__version__} export; train/val/test are relative to this file's "
            "folder\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def yolo_line(row: dict, width: int, height: int) -> str:
    """``class cx cy w h`` for a box (x, y, w, h, top-left, px) in an image of that size."""
    x, y, w, h = (int(row[k]) for k in "xywh")
    vals = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
    text = " ".join(f"{min(max(v, 0.0), 1.0):.6f}" for v in vals)
    return f"{int(row['class_idx'])} {text}\n"


WRITERS = {"original": OriginalWriter, "coco": CocoWriter, "yolo": YoloWriter}


def run_export(fmt: str, split: str, synth_root: Path, outdir: Path) -> int:
    """Export every image of ``split`` (or of every split, for ``all`` with yolo) under
    ``synth_root`` to ``outdir`` in ``fmt``.

    Returns the number of images written. OUTDIR is replaced atomically: on any error nothing
    is left behind. Boxes are (x, y, w, h), top-left, pixels; images are BGR when decoded.
    """
    if fmt not in WRITERS:
        raise UserError(f"{fmt!r}: unknown export format; use one of {', '.join(FORMATS)}")
    synth_root, outdir = Path(synth_root), Path(outdir)
    splits = _splits(fmt, split)
    dirs = {s: _check_split(s, synth_root) for s in splits}
    _check_outdir(outdir, synth_root)
    n = 0
    with atomic_dir(outdir, "export", [synth_root]) as tmp:
        writer = WRITERS[fmt](tmp, splits)
        for s in splits:
            for rec, rows in iter_split(dirs[s]):
                writer.add(s, rec, rows)
                n += 1
        writer.close()
    return n


def _id_key(text: str) -> tuple:
    """Sort key of image ids: (split, shard, index) numerically, unparsable ids by text."""
    try:
        split, shard, index = parse_image_id(text)
        return (split, shard, index, text)
    except ValueError:
        return (text, -1, -1, text)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """DataFrame (READ_COLUMNS, int class and box) with images sorted by id, objects in order."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=READ_COLUMNS)
    df[READ_COLUMNS[1:]] = df[READ_COLUMNS[1:]].astype("int64")
    order = sorted(range(len(rows)), key=lambda i: (_id_key(rows[i][0]), i))
    return df.iloc[order].reset_index(drop=True)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: not found; is this a bloodcell {what} export?")
    return path


def read_original(outdir: Path) -> pd.DataFrame:
    """Objects of an ``original`` export: image_id, class_idx, x, y, w, h (top-left, px)."""
    rows = []
    for f in sorted(_need(Path(outdir) / "labels", "original").glob("*.json")):
        labels = json.loads(f.read_text())
        for k in sorted(labels, key=int):
            o = labels[k]
            rows.append((f.stem, o["classIdx"], o["tlX"], o["tlY"], o["bboxW"], o["bboxH"]))
    return _frame(rows)


def read_coco(outdir: Path) -> pd.DataFrame:
    """Objects of a ``coco`` export: image_id, class_idx, x, y, w, h (top-left, px, rounded)."""
    doc = json.loads(_need(Path(outdir) / "annotations.json", "coco").read_text())
    names = {im["id"]: im.get("bloodcell_id") or Path(im["file_name"]).stem
             for im in doc["images"]}
    rows = []
    for a in sorted(doc["annotations"], key=lambda a: a["id"]):
        x, y, w, h = (round(v) for v in a["bbox"])
        rows.append((names[a["image_id"]], a["category_id"] - 1, x, y, w, h))
    return _frame(rows)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header without decoding it; DEFAULT_SIZE if absent."""
    if not path.is_file():
        return DEFAULT_SIZE, DEFAULT_SIZE
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise UserError(f"{path}: not a PNG file; re-run the export")
    return struct.unpack(">II", head[16:24])


def read_yolo(outdir: Path) -> pd.DataFrame:
    """Objects of a ``yolo`` export (every split folder under labels/, or a flat labels/ of
    older exports): image_id, class_idx, x, y, w, h (top-left, px, rounded back using each
    PNG's size, found by the /labels/ -> /images/ rule, or 224 when the PNG is missing)."""
    outdir = Path(outdir)
    labels = _need(outdir / "labels", "yolo")
    rows = []
    for f in sorted(labels.rglob("*.txt")):
        width, height = png_size(outdir / "images" / f.relative_to(labels).with_suffix(".png"))
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            c, cx, cy, wn, hn = line.split()
            w, h = round(float(wn) * width), round(float(hn) * height)
            x, y = round(float(cx) * width - w / 2), round(float(cy) * height - h / 2)
            rows.append((f.stem, int(c), x, y, w, h))
    return _frame(rows)


READERS = {"original": read_original, "coco": read_coco, "yolo": read_yolo}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bloodcell export --format {original,coco,yolo} SPLIT OUTDIR [--synth DIR]``."""
    p = sub.add_parser(
        "export", help="export a synthetic split as original BMP+JSON, COCO or YOLO",
        description="Read every shard of SPLIT under --synth and write OUTDIR (replaced "
        "atomically) in one layout. original: images/<id>.bmp + labels/<id>.json with the "
        "original project's fields. coco: images/<id>.png + annotations.json (COCO detection "
        "with info and licenses; category id = class index + 1; loads in pycocotools). yolo: "
        "Ultralytics' layout images/<part>/<id>.png + labels/<part>/<id>.txt (class cx cy w h, "
        "normalised) + data.yaml, part train, val (the valid split) or test; SPLIT all writes "
        "all three into one dataset folder whose data.yaml Ultralytics accepts as it is. "
        "Boxes are x, y, w, h from the top-left, in pixels, until normalised for yolo.")
    p.add_argument("--format", required=True, choices=FORMATS, dest="format",
                   help="output layout")
    p.add_argument("split", metavar="SPLIT",
                   help=f"split to export: train, valid or test, or {ALL} (every split into one "
                   "folder; --format yolo only)")
    p.add_argument("outdir", type=Path, metavar="OUTDIR",
                   help="output folder (replaced as a whole)")
    p.add_argument("--synth", type=Path, default=Path("data/synth"), metavar="DIR",
                   help="synth stage output holding SPLIT-<k>/ shards (default data/synth)")
    p.set_defaults(main=main)
    return p


def main(a: argparse.Namespace) -> None:
    """Run the export subcommand and print a one-line summary."""
    n = run_export(a.format, a.split, a.synth, a.outdir)
    what = ",".join(SPLITS) if a.split == ALL else a.split
    shards = f"{{{what}}}" if a.split == ALL else what
    print(f"export {a.format}: {n} images of {what} from {a.synth}/{shards}-* -> {a.outdir}")
