"""The synth stage: one shard of a split's synthetic 224x224 images with boxes and lineage.

Each image is a window of one of the split's backgrounds with 0-3 of the split's WBC,
thrombocyte and clump samples affixed by their masks (after a flip, quarter turn or free
rotation; box = tight box of the transformed mask). A WBC may instead be affixed as a partial
WBC (class 5): half of it visible at an edge, or a quarter at a corner. Background RBCs stay
labelled while at least ``min_visible`` of their pixels are visible (hidden by an affixed cell
or cut by the window's edge otherwise). All boxes are (x, y, w, h), top-left, pixels, clipped to
the image. Output: SHARD/images.tfrecord and SHARD/objects.parquet (bloodcell.dataset.shards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.boxes import intersects
from bloodcell.common.classes import (
    CLASS_INDEX,
    LABEL_INDEX,
    PLATELET_CLASSES,
    UNTYPED_WBC,
    WBC_CLASSES,
    label_name,
)
from bloodcell.common.cli_args import param_option, positive_int, share
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import encode_png
from bloodcell.common.seeds import rng_for
from bloodcell.common.tile import TILE_PX as SIZE
from bloodcell.dataset.backgrounds import RECIPE_NAME, RECIPE_SCHEMA, add_inputs, render_background
from bloodcell.dataset.compose import Cut, load_cuts, paste, rotate, split_ids, tight_box, transform
from bloodcell.dataset.samples import read_parquet
from bloodcell.dataset.shards import OBJECT_SCHEMA, ImageRecord, image_id, write_shard

log = logging.getLogger(__name__)
OBJECT_LABEL = 1_000_000
AFFIXED = (*WBC_CLASSES, *PLATELET_CLASSES, UNTYPED_WBC)
"""Sample classes affixed on backgrounds; an untyped white cell keeps label -1 (or becomes a
partial WBC, whose class does not depend on the type)."""
PARTIAL = CLASS_INDEX["partialWBC"]
SHEET_NAME = "contact_sheet.png"


@dataclass(frozen=True)
class SynthConfig:
    """One shard's parameters. ``images``: this shard's image count; ``mix``: shares of images
    with 0, 1, 2 and 3 affixed objects."""

    seed: int
    split: str
    shard: int
    images: int
    mix: tuple[float, float, float, float]
    partial_share: float
    corner_share: float
    min_visible: float
    bg_size: int = 1000


@dataclass
class Placed:
    """An affixed object: class index, visible box (x, y, w, h), visible share, sample id."""

    class_idx: int
    box: tuple[int, int, int, int]
    visible: float
    sample_id: str


@dataclass
class Background:
    """A rendered background and its RBCs' boxes, classes, ids and visible pixel counts."""

    bg_id: str
    image: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    sample_ids: list[str]
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0))


def augment(rng: np.random.Generator, cut: Cut) -> tuple[np.ndarray, np.ndarray]:
    """One of five augmentations with equal odds: none, h-flip, v-flip, quarter turns, free
    rotation (angle uniform in [0, 360) degrees)."""
    choice = int(rng.integers(5))
    img, mask = cut.image, cut.mask
    if choice == 1:
        return transform(img, mask, 4)
    if choice == 2:
        return transform(img, mask, 6)
    if choice == 3:
        return transform(img, mask, int(rng.integers(1, 4)))
    if choice == 4:
        return rotate(img, mask, float(rng.uniform(0, 360)))
    return img, mask


def overlaps(box: tuple[int, int, int, int], others: list[Placed]) -> bool:
    """True if box (x, y, w, h) intersects any placed object's box."""
    return any(intersects(box, p.box) for p in others)


def partial_position(rng: np.random.Generator, mask: np.ndarray,
                     corner: bool) -> tuple[int, int]:
    """Top-left (x, y) that leaves half of the mask's box outside one edge, or, with
    ``corner``, half outside each of two edges (a quarter visible)."""
    bx, by, bw, bh = tight_box(mask)
    out_x = rng.choice([-1, 1]) if corner else 0
    out_y = rng.choice([-1, 1]) if corner else 0
    if not corner:
        if rng.random() < 0.5:
            out_x = int(rng.choice([-1, 1]))
        else:
            out_y = int(rng.choice([-1, 1]))

    def axis(out: int, b0: int, b: int) -> int:
        if out < 0:
            return -b0 - b // 2
        if out > 0:
            return SIZE - b0 - (b - b // 2)
        return int(rng.integers(-b0, SIZE - b0 - b + 1))

    return axis(out_x, bx, bw), axis(out_y, by, bh)


def affix(rng: np.random.Generator, img: np.ndarray, labels: np.ndarray, cut: Cut,
          partial: bool, corner: bool, placed: list[Placed], tries: int = 30) -> bool:
    """Paste one augmented sample on the window without touching earlier objects' boxes.

    Appends a Placed to ``placed`` and returns True, or False when no free spot was found.
    """
    a_img, a_mask = augment(rng, cut)
    bx, by, bw, bh = tight_box(a_mask)
    if not partial and (bw > SIZE or bh > SIZE):
        return False
    total = int(a_mask.sum())
    for _ in range(tries):
        if partial:
            x, y = partial_position(rng, a_mask, corner)
        else:
            x = int(rng.integers(-bx, SIZE - bx - bw + 1))
            y = int(rng.integers(-by, SIZE - by - bh + 1))
        vis = a_mask[max(0, -y) : SIZE - y, max(0, -x) : SIZE - x]
        if not vis.any():
            continue
        vx, vy, vw, vh = tight_box(vis)
        box = (max(x, 0) + vx, max(y, 0) + vy, vw, vh)
        if overlaps(box, placed):
            continue
        paste(img, labels, a_img, a_mask, x, y, OBJECT_LABEL + len(placed))
        cls = PARTIAL if partial else LABEL_INDEX[cut.class_name]
        placed.append(Placed(cls, box, float(vis.sum()) / total, cut.sample_id))
        return True
    return False


def visible_rbcs(bg: Background, labels: np.ndarray, wx: int, wy: int,
                 min_visible: float) -> list[tuple[int, tuple[int, int, int, int], float]]:
    """(rbc index, box clipped to the window, visible share) of the RBCs that stay labelled."""
    rbc = labels[(labels >= 0) & (labels < OBJECT_LABEL)]
    counts = np.bincount(rbc, minlength=len(bg.pixels))
    keep = []
    for i in np.nonzero(counts)[0]:
        share = counts[i] / max(bg.pixels[i], 1)
        if share < min_visible:
            continue
        x, y, w, h = bg.boxes[i]
        x0, y0 = max(x - wx, 0), max(y - wy, 0)
        x1, y1 = min(x + w - wx, SIZE), min(y + h - wy, SIZE)
        if x1 > x0 and y1 > y0:
            keep.append((int(i), (int(x0), int(y0), int(x1 - x0), int(y1 - y0)), float(share)))
    return keep


def object_classes(pool: dict[str, list[Cut]]) -> list[str]:
    """Classes that can be affixed in this split, in class order (untyped white cells last)."""
    return [c for c in AFFIXED if pool.get(c)]


def make_image(rng: np.random.Generator, bg: Background, pool: dict[str, list[Cut]],
               cfg: SynthConfig) -> tuple[np.ndarray, list[Placed], list, tuple[int, int]]:
    """One image: (BGR image, affixed objects, kept RBCs, window top-left in the background)."""
    wx = int(rng.integers(0, bg.image.shape[1] - SIZE + 1))
    wy = int(rng.integers(0, bg.image.shape[0] - SIZE + 1))
    img = bg.image[wy : wy + SIZE, wx : wx + SIZE].copy()
    labels = bg.labels[wy : wy + SIZE, wx : wx + SIZE].copy()
    n_objects = int(rng.choice(4, p=np.asarray(cfg.mix) / sum(cfg.mix)))
    classes = object_classes(pool)
    placed: list[Placed] = []
    for _ in range(n_objects if classes else 0):
        cls = classes[int(rng.integers(len(classes)))]
        cut = pool[cls][int(rng.integers(len(pool[cls])))]
        partial = cls in (*WBC_CLASSES, UNTYPED_WBC) and rng.random() < cfg.partial_share
        corner = bool(rng.random() < cfg.corner_share)
        affix(rng, img, labels, cut, partial, corner, placed)
    return img, placed, visible_rbcs(bg, labels, wx, wy, cfg.min_visible), (wx, wy)


def load_backgrounds(recipe_path: Path, cfg: SynthConfig) -> dict[str, dict[str, list]]:
    """Recipe columns of every background of the split, in this shard's seeded order."""
    if not recipe_path.is_file():
        raise UserError(f"{recipe_path}: backgrounds not found; run the backgrounds stage first")
    cols = read_parquet(recipe_path, RECIPE_SCHEMA.names, "re-run the backgrounds stage"
                        ).to_pydict()
    ids = sorted(set(cols["background_id"]))
    if not ids:
        raise UserError(f"{recipe_path}: no backgrounds for this split; raise backgrounds counts")
    other = sorted(set(cols["split"]) - {cfg.split})
    if other:
        raise UserError(f"{recipe_path}: backgrounds of the {other[0]} split, not {cfg.split}; "
                        f"pass --backgrounds data/backgrounds/{cfg.split}")
    order = rng_for(cfg.seed, "synth-order", cfg.split, cfg.shard).permutation(len(ids))
    out: dict[str, dict[str, list]] = {ids[i]: {k: [] for k in cols} for i in order}
    for j, b in enumerate(cols["background_id"]):
        for k, v in cols.items():
            out[b][k].append(v[j])
    return out


def background(bg_id: str, recipe: dict[str, list], cuts: dict[str, Cut],
               size: int) -> Background:
    """Render one background and index its RBCs by recipe order."""
    image, labels = render_background(recipe, cuts, size)
    n = len(recipe["rbc"])
    boxes = np.stack([recipe["x"], recipe["y"], recipe["w"], recipe["h"]], axis=1).reshape(n, 4)
    pixels = np.bincount(labels[labels >= 0].ravel(), minlength=n)
    return Background(bg_id, image, labels, boxes, np.array(recipe["class_idx"]),
                      list(recipe["sample_id"]), pixels)


def object_rows(iid: str, cfg: SynthConfig, bg: Background, placed: list[Placed], rbcs: list,
                window: tuple[int, int]) -> list[tuple]:
    """Rows of OBJECT_SCHEMA for one image: affixed objects first, then RBCs."""
    rows = [(p.class_idx, p.box, p.visible, p.sample_id) for p in placed]
    rows += [(int(bg.classes[i]), box, share, bg.sample_ids[i]) for i, box, share in rbcs]
    return [(iid, cfg.split, cfg.shard, k, c, label_name(c), *box, vis, sid, bg.bg_id, *window)
            for k, (c, box, vis, sid) in enumerate(rows)]


def generate(bgs: dict[str, dict[str, list]], cuts: dict[str, Cut], pool: dict[str, list[Cut]],
             cfg: SynthConfig):
    """Yield (ImageRecord, object rows, BGR image) for every image of the shard, in id order."""
    n = cfg.images
    ids = list(bgs)
    index = 0
    for j, bg_id in enumerate(ids):
        count = n // len(ids) + (1 if j < n % len(ids) else 0)
        if count == 0:
            continue
        bg = background(bg_id, bgs[bg_id], cuts, cfg.bg_size)
        for _ in range(count):
            rng = rng_for(cfg.seed, "synth", cfg.split, cfg.shard, index)
            img, placed, rbcs, window = make_image(rng, bg, pool, cfg)
            iid = image_id(cfg.split, cfg.shard, index)
            rows = object_rows(iid, cfg, bg, placed, rbcs, window)
            boxes = np.array([r[6:10] for r in rows], np.float32).reshape(-1, 4)
            classes = np.array([r[4] for r in rows], np.int64)
            yield ImageRecord(iid, encode_png(img), SIZE, SIZE, boxes, classes), rows, img
            index += 1


def write_sheet(samples: list[tuple[np.ndarray, list[tuple]]], path: Path) -> None:
    """Contact sheet of a shard's first images with their boxes and class names."""
    from bloodcell.common.contact_sheet import SHEET_LEVEL, contact_sheet
    from bloodcell.common.draw import draw_boxes
    from bloodcell.common.image_files import write_png

    tiles = []
    for img, rows in samples:
        boxes = np.array([r[6:10] for r in rows]).reshape(-1, 4)
        classes = np.array([r[4] for r in rows], int)
        tiles.append((draw_boxes(img, boxes, classes), rows[0][0] if rows else ""))
    write_png(path, contact_sheet(tiles, 4, SIZE), SHEET_LEVEL)


def run(split_csv: Path, extract_dirs: list[Path], backgrounds_dir: Path, outdir: Path,
        cfg: SynthConfig) -> int:
    """Write OUTDIR/images.tfrecord, objects.parquet and contact_sheet.png; return image count."""

    bgs = load_backgrounds(backgrounds_dir / RECIPE_NAME, cfg)
    ids = split_ids(split_csv, cfg.split)
    cuts = {c.sample_id: c for c in load_cuts(extract_dirs, ids, {"_", "Infected"})}
    missing = sorted({s for b in bgs.values() for s in b["sample_id"]} - set(cuts))
    if missing:
        raise UserError(f"{backgrounds_dir / RECIPE_NAME}: places RBC sample {missing[0]} (and "
                        f"{len(missing) - 1} more) that the {cfg.split} split of {split_csv} "
                        "and the extracts lack; re-run the backgrounds stage on the same inputs")
    objects = load_cuts(extract_dirs, ids, set(AFFIXED))
    pool: dict[str, list[Cut]] = {}
    for c in objects:
        pool.setdefault(c.class_name, []).append(c)
    if not pool and sum(cfg.mix[1:]) > 0:
        raise UserError(f"{split_csv}: the {cfg.split} split has no WBC, thrombocyte or clump "
                        "samples to affix; check the extract stages")
    with atomic_dir(outdir, "synth", [split_csv, *extract_dirs, backgrounds_dir]) as tmp:
        _, rows, shown = write_shard(tmp, generate(bgs, cuts, pool, cfg), OBJECT_SCHEMA)
        write_sheet(shown, tmp / SHEET_NAME)
    n = cfg.images
    log.info("%s shard %d: %d images, %d objects -> %s", cfg.split, cfg.shard, n, len(rows),
             outdir)
    return n


def add_parser(sub) -> None:
    """``bloodcell synth``."""
    p = sub.add_parser("synth", help="make one shard of synthetic 224x224 images",
                       description="Cut 224x224 windows from the split's backgrounds, affix "
                       "WBC, thrombocyte and clump samples (and partial WBCs); write "
                       "images.tfrecord, objects.parquet and a contact sheet.")
    p.add_argument("shard", help="shard name SPLIT-N, e.g. train-0")
    add_inputs(p)
    p.add_argument("--backgrounds", type=Path, required=True, help="data/backgrounds/<split>")
    p.add_argument("--images", type=positive_int, required=True, help="images in this shard")
    p.add_argument("--mix", type=share, nargs=4, required=True,
                   metavar=("BACKGROUND", "SINGLE", "DOUBLE", "TRIPLE"),
                   help="shares of images with 0, 1, 2, 3 affixed cells")
    param_option(p, "--partial-share", key="synth.partial_share", type=share)
    param_option(p, "--corner-share", key="synth.corner_share", type=share)
    param_option(p, "--min-visible", key="synth.min_visible", type=share)
    param_option(p, "--bg-size", key="backgrounds.size", type=positive_int)
    p.set_defaults(main=main)


def main(a) -> None:
    from bloodcell.dataset.shards import shard_key

    try:
        split, shard = shard_key(a.shard)
    except ValueError as err:
        raise UserError(f"{err}; name shards like train-0 in synth.shards") from None
    if not sum(a.mix) > 0:
        raise UserError("--mix: all four shares are 0; give at least one share > 0 "
                        "(synth.mix in params.yaml)")
    cfg = SynthConfig(a.seed, split, shard, a.images, tuple(a.mix), a.partial_share,
                      a.corner_share, a.min_visible, a.bg_size)
    run(a.split_table, a.extracts, a.backgrounds, a.out, cfg)
