"""The real_tiles stage: annotated real smears cut into 224x224 tiles at the 40x scale.

Each annotated set (Pascal VOC, IML JSON or COCO; read by bloodcell.sources.annotations) is
brought to the common 40x scale by its own factor (native px -> 40x px), each image is turned
by ``variants`` of the eight flips and quarter turns, and cut into 224 tiles: images smaller
than a tile are padded with their median colour at a seeded offset, larger ones are tiled at
steps of ``stride`` px with a last tile flush with the far edge. Dataset labels become the
detector's labels through the class map's ``train`` section: a class name, ``WBC`` (an
untyped white cell: label -1, trains box and objectness only) or null (left out).

Boxes are (x, y, w, h) pixels, top-left origin, clipped to the tile. An object cut by a tile
edge keeps its label while at least ``min_visible`` of its box area lies inside; a white cell
with less (but at least MIN_PARTIAL) becomes a partialWBC, as in the synth stage.

Output: one shard in the synth format (bloodcell.dataset.shards): OUT/images.tfrecord (PNG, image
ids ``real-0-NNNNNN``) and OUT/objects.parquet (OBJECT_SCHEMA plus the lineage of every object: raw
image path and sha256, and the object's box in the raw image's pixels), and a contact sheet. Same
inputs and params give the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa

from bloodcell.common.atomic import atomic_dir, check_output
from bloodcell.common.classes import CLASS_INDEX, LABEL_INDEX, UNTYPED_WBC, WBC_CLASSES, label_name
from bloodcell.common.cli_args import param_option
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import ImageProblem, decode_color, encode_png
from bloodcell.common.param_defaults import param_default
from bloodcell.common.seeds import rng_for
from bloodcell.common.tile import TILE_PX as TILE
from bloodcell.dataset.shards import OBJECT_SCHEMA, ImageRecord, image_id, write_shard

log = logging.getLogger(__name__)
SPLIT = "real"
PARTIAL = CLASS_INDEX["partialWBC"]
WHITE = {*(CLASS_INDEX[c] for c in WBC_CLASSES), LABEL_INDEX[UNTYPED_WBC]}
MIN_PARTIAL = 0.15
SHEET_NAME = "contact_sheet.png"
LINEAGE_SCHEMA = pa.schema([
    *OBJECT_SCHEMA,
    ("raw_path", pa.string()),
    ("raw_sha256", pa.string()),
    ("raw_x", pa.float32()),
    ("raw_y", pa.float32()),
    ("raw_w", pa.float32()),
    ("raw_h", pa.float32()),
])
"""objects.parquet of a real-tiles shard: the synth columns (background_id = the set name,
window_x/y = the tile's corner in the scaled, turned image) plus each object's raw image and
box in that image's native pixels (top-left)."""


@dataclass(frozen=True)
class TileSet:
    """One annotated set: name, format (voc, iml, coco), images folder, labels (VOC folder or
    JSON file), image list (None = all), scale (native px -> 40x px), class map name or path."""

    name: str
    fmt: str
    images: Path
    labels: Path
    image_list: Path | None
    scale: float
    class_map: str


@dataclass(frozen=True)
class TileConfig:
    """real-tiles' settings; defaults: the schema's real_tiles.*."""

    seed: int
    variants: int = param_default("real_tiles.variants")
    stride: int = param_default("real_tiles.stride")
    min_visible: float = param_default("real_tiles.min_visible")


def dihedral(img: np.ndarray, boxes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn an (H, W, 3) image and its (n, 4) x, y, w, h boxes by the k-th of the 8 flips and
    quarter turns (0 = as is; 1-3 = 90, 180, 270 degrees counter-clockwise; 4-7 = the same after
    a horizontal flip)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    if k >= 4:
        img = img[:, ::-1]
        b[:, 0] = img.shape[1] - b[:, 0] - b[:, 2]
    for _ in range(k % 4):  # 90 degrees counter-clockwise: (x, y) -> (y, W - x)
        width = img.shape[1]
        img = np.rot90(img)
        b = np.stack([b[:, 1], width - b[:, 0] - b[:, 2], b[:, 3], b[:, 2]], axis=1)
    return np.ascontiguousarray(img), b


def origins(length: int, stride: int) -> list[int]:
    """Tile starts along one axis of ``length`` >= 224 px: steps of ``stride`` + the far edge."""
    starts = list(range(0, length - TILE + 1, stride))
    if starts[-1] != length - TILE:
        starts.append(length - TILE)
    return starts


def pad_into_tile(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Place an image smaller than 224 on a side into a canvas at least 224 on each side,
    filled with its median colour, at a seeded offset; returns (canvas, dx, dy)."""
    h, w = img.shape[:2]
    ch, cw = max(h, TILE), max(w, TILE)
    dx, dy = int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = np.median(img.reshape(-1, 3), axis=0).astype(np.uint8)
    canvas[dy : dy + h, dx : dx + w] = img
    return canvas, dx, dy


def tile_objects(boxes: np.ndarray, labels: np.ndarray, x0: int, y0: int,
                 min_visible: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Objects of the tile at (x0, y0): (index into boxes, label, clipped box, visible share)."""
    x1 = np.clip(boxes[:, 0] - x0, 0, TILE)
    y1 = np.clip(boxes[:, 1] - y0, 0, TILE)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2] - x0, 0, TILE)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3] - y0, 0, TILE)
    area = np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
    visible = np.clip((x2 - x1) * (y2 - y1) / area, 0, 1)
    white = np.isin(labels, list(WHITE))
    keep = (visible >= min_visible) | (white & (visible >= MIN_PARTIAL))
    out = np.where(white & (visible < min_visible), PARTIAL, labels)
    clipped = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    idx = np.nonzero(keep & (clipped[:, 2] >= 1) & (clipped[:, 3] >= 1))[0]
    return idx, out[idx], clipped[idx], visible[idx]


def pixel_box(b: np.ndarray) -> tuple[int, int, int, int]:
    """A float (x, y, w, h) box in a tile as whole pixels: corners rounded, inside the tile."""
    x1, y1 = (int(np.clip(round(v), 0, TILE)) for v in b[:2])
    x2, y2 = (int(np.clip(round(v), 0, TILE)) for v in (b[0] + b[2], b[1] + b[3]))
    return x1, y1, x2 - x1, y2 - y1


def train_labels(spec: str) -> dict[str, str | None]:
    """The class map's ``train`` section: dataset label -> detector label name (or None)."""
    from bloodcell.sources.class_map import load_class_map

    cmap = load_class_map(spec)
    if not cmap.train:
        raise UserError(f"class map {spec}: has no train: section (dataset label -> detector "
                        "class); add one to use it for real tiles")
    return dict(cmap.train)


@dataclass(frozen=True)
class SourceImage:
    """One annotated image at the 40x scale: raw path (as given) and sha256, the scaled BGR
    image, its boxes (n, 4; 40x px, top-left), labels (n,), raw boxes (n, 4; native px)."""

    set_name: str
    raw_path: str
    raw_sha256: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    raw_boxes: np.ndarray


def load_set(ts: TileSet) -> list[SourceImage]:
    """Read, check and scale every listed image of one set, in name order."""
    from bloodcell.sources.annotations import check_labels, read_annotations, read_name_list

    names = read_name_list(ts.image_list) if ts.image_list is not None else None
    ann = read_annotations(ts.fmt, ts.images, ts.labels, names)
    mapping = train_labels(ts.class_map)
    check_labels(ann, set(mapping), str(ts.labels))
    out = []
    for row in ann.images.sort_values("image").itertuples(index=False):
        objs = ann.objects[ann.objects["image"] == row.image]
        keep = objs["label"].map(mapping).notna().to_numpy()
        objs = objs[keep]
        raw = objs[["x", "y", "w", "h"]].to_numpy(np.float64).reshape(-1, 4)
        labels = np.array([LABEL_INDEX[mapping[v]] for v in objs["label"]], np.int64)
        raw_path = ts.images / row.image  # as given (relative stays relative), for lineage
        data = raw_path.read_bytes()
        try:
            bgr = decode_color(data)
        except ImageProblem as err:
            raise UserError(f"{raw_path}: {err}; remove it from {ts.image_list or 'the set'}")
        size = (max(1, round(bgr.shape[1] * ts.scale)), max(1, round(bgr.shape[0] * ts.scale)))
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if ts.scale < 1
                           else cv2.INTER_LINEAR)
        out.append(SourceImage(ts.name, raw_path.as_posix(), hashlib.sha256(data).hexdigest(),
                               small, raw * ts.scale, labels, raw))
    log.info("%s: %d images, %d objects (%d skipped)", ts.name, len(out),
             sum(len(s.labels) for s in out), len(ann.skipped))
    return out


def image_tiles(src: SourceImage, k: int, cfg: TileConfig, rng: np.random.Generator):
    """Yield (tile BGR, object indices, labels, boxes, visible, tile corner) for variant k."""
    img, boxes = dihedral(src.image, src.boxes, k)
    dx = dy = 0
    if img.shape[0] < TILE or img.shape[1] < TILE:
        img, dx, dy = pad_into_tile(img, rng)
        boxes = boxes + np.array([dx, dy, 0, 0])
    for y0 in origins(img.shape[0], cfg.stride):
        for x0 in origins(img.shape[1], cfg.stride):
            idx, labels, clipped, visible = tile_objects(boxes, src.labels, x0, y0,
                                                         cfg.min_visible)
            tile = np.ascontiguousarray(img[y0 : y0 + TILE, x0 : x0 + TILE])
            yield tile, idx, labels, clipped, visible, (x0 - dx, y0 - dy)


def generate(sources: list[SourceImage], cfg: TileConfig):
    """Yield (ImageRecord, object rows, BGR tile) for every tile, in a fixed order."""
    index = 0
    for n, src in enumerate(sources):
        for k in range(cfg.variants):
            rng = rng_for(cfg.seed, "real-tiles", src.set_name, n, k)
            for tile, idx, labels, boxes, visible, corner in image_tiles(src, k, cfg, rng):
                iid = image_id(SPLIT, 0, index)
                kept = [(i, c, pixel_box(b), vis) for i, c, b, vis in
                        zip(idx, labels, boxes, visible) if min(pixel_box(b)[2:]) > 0]
                rows = [(iid, SPLIT, 0, j, int(c), label_name(int(c)), *b, float(vis),
                         f"{src.set_name}#{int(i)}", src.set_name, *corner, src.raw_path,
                         src.raw_sha256, *(float(v) for v in src.raw_boxes[i]))
                        for j, (i, c, b, vis) in enumerate(kept)]
                boxes_px = np.array([r[6:10] for r in rows], np.float32).reshape(-1, 4)
                classes = np.array([r[4] for r in rows], np.int64)
                yield ImageRecord(iid, encode_png(tile), TILE, TILE, boxes_px, classes), rows, tile
                index += 1


def run(sets: list[TileSet], outdir: Path, cfg: TileConfig) -> int:
    """Write OUTDIR/images.tfrecord, objects.parquet and a contact sheet; return tile count."""
    from bloodcell.dataset.synth import write_sheet

    if len({s.name for s in sets}) != len(sets):
        raise UserError("real tile sets need distinct names; rename one of the --set entries")
    inputs = [p for s in sets for p in (s.images, s.labels, s.image_list,
                                        Path(s.class_map) if s.class_map.endswith(".yaml")
                                        else None)]
    check_output(outdir, "real-tiles", inputs)  # before any image is read
    for ts in sets:  # every class map checked before any image is read
        train_labels(ts.class_map)
    sources = [src for ts in sets for src in load_set(ts)]
    if not sources:
        raise UserError("no annotated image in any --set; check the image lists")
    every = max(1, cfg.variants * 7)  # the sheet shows images of several source images
    with atomic_dir(outdir, "real-tiles", inputs) as tmp:
        count, rows, shown = write_shard(tmp, generate(sources, cfg), LINEAGE_SCHEMA,
                                         lambda i: i % every == 0)
        write_sheet(shown, tmp / SHEET_NAME)
    per_class = pd.Series([r[5] for r in rows]).value_counts().to_dict()
    log.info("real tiles: %d tiles, %d objects %s -> %s", count, len(rows), per_class, outdir)
    return count


def add_parser(sub) -> None:
    """The ``bloodcell real-tiles`` subcommand."""
    p = sub.add_parser("real-tiles", help="cut annotated real smears into 224 training tiles",
                       description="Bring annotated real smears (Pascal VOC, IML JSON or COCO) "
                       "to the 40x scale, turn each by flips and quarter turns and cut it into "
                       "224x224 tiles; write one shard in the synth format (images.tfrecord, "
                       "objects.parquet with each object's raw file, sha256 and raw box).")
    p.add_argument("--set", dest="sets", nargs=7, action="append", required=True,
                   metavar=("NAME", "FORMAT", "IMAGES", "LABELS", "LIST", "SCALE", "CLASS_MAP"),
                   help="one annotated set: a name, voc|iml|coco, the images folder, the labels "
                   "(VOC Annotations folder or JSON file), an image list file or 'all', the "
                   "scale (native px -> 40x px) and a class map name or YAML path with a train: "
                   "section; repeat for more sets")
    p.add_argument("--out", type=Path, required=True, help="output shard folder (replaced)")
    p.add_argument("--seed", type=int, required=True)
    param_option(p, "--variants", key="real_tiles.variants", type=int, choices=range(1, 9),
                 metavar="1..8", help="flips and quarter turns of each image")
    param_option(p, "--stride", key="real_tiles.stride", type=int,
                 help="tile step in px on images larger than a tile")
    param_option(p, "--min-visible", key="real_tiles.min_visible", type=float,
                 help="share of a box inside a tile for the object to keep its label")
    p.set_defaults(main=main)


def parse_set(values: list[str]) -> TileSet:
    """A TileSet from the seven --set values; UserError for a bad format or scale."""
    name, fmt, images, labels, image_list, scale, cmap = values
    if fmt not in ("voc", "iml", "coco"):
        raise UserError(f"--set {name}: format {fmt!r} is not voc, iml or coco")
    try:
        factor = float(scale)
    except ValueError:
        factor = 0.0
    if not 0.01 <= factor <= 20:
        raise UserError(f"--set {name}: scale {scale!r} must be a number in 0.01..20 "
                        "(native px -> 40x px, about 35 / the set's RBC diameter)")
    return TileSet(name, fmt, Path(images), Path(labels),
                   None if image_list == "all" else Path(image_list), factor, cmap)


def main(a) -> None:
    if a.stride < 16 or a.stride > TILE:
        raise UserError(f"--stride {a.stride} must lie in 16..{TILE}")
    sets = [parse_set(v) for v in a.sets]
    n = run(sets, a.out, TileConfig(a.seed, a.variants, a.stride, a.min_visible))
    print(f"{n} real tiles -> {a.out}")
