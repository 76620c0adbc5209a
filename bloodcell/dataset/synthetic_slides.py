"""The slides stage: whole synthetic smears from test-split samples, the whole-slide test bed.

Each slide is an RBC background of its own size (mixed healthy and infected RBCs) with full
WBCs, thrombocytes and clumps placed anywhere without touching each other; a share of them is
centred on a 224-px tile seam on purpose. Ground truth is COCO JSON (bbox [x, y, w, h],
top-left, pixels; category_id = class index + 1); RBCs stay labelled while at least
``min_visible`` of their pixels are visible. Output: OUTDIR/images/slide_NNN.png,
OUTDIR/ground_truth.json, OUTDIR/objects.parquet (lineage) and OUTDIR/contact_sheet.png.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.classes import (
    CLASS_INDEX,
    CLASS_NAMES,
    PLATELET_CLASSES,
    WBC_CLASSES,
    coco_categories,
)
from bloodcell.common.cli_args import (
    check_range,
    non_negative_int,
    param_option,
    positive_int,
    share,
    sizes_list,
)
from bloodcell.common.contact_sheet import SHEET_LEVEL, contact_sheet
from bloodcell.common.draw import draw_boxes
from bloodcell.common.image_files import encode_png, write_png
from bloodcell.common.param_defaults import param_default
from bloodcell.common.seeds import rng_for
from bloodcell.common.tile import TILE_PX as TILE
from bloodcell.dataset.backgrounds import (
    BackgroundConfig,
    add_inputs,
    add_rbc_options,
    check_fits,
    plan_background,
    rbc_pools,
    recipe_rows,
)
from bloodcell.dataset.compose import Cut, load_cuts, paste, split_ids, tight_box
from bloodcell.dataset.synth import OBJECT_LABEL, Background, Placed, augment, background, overlaps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlidesConfig:
    """Slide sizes (width, height px) and per-slide object count ranges [min, max]."""

    seed: int
    sizes: tuple[tuple[int, int], ...]
    wbc: tuple[int, int]
    thrombocytes: tuple[int, int]
    clumps: tuple[int, int]
    seam_share: float
    min_visible: float
    background: BackgroundConfig


def position(rng: np.random.Generator, shape: tuple[int, int], box: tuple[int, int, int, int],
             seam: bool) -> tuple[int, int]:
    """Top-left for a cut whose tight box is ``box`` inside a slide of (width, height) px;
    with ``seam``, the box centre sits on a tile seam (x or y a multiple of 224)."""
    (W, H), (bx, by, bw, bh) = shape, box
    x = int(rng.integers(-bx, W - bx - bw + 1))
    y = int(rng.integers(-by, H - by - bh + 1))
    seams_x = [s for s in range(TILE, W, TILE) if bw // 2 <= s <= W - bw + bw // 2]
    seams_y = [s for s in range(TILE, H, TILE) if bh // 2 <= s <= H - bh + bh // 2]
    if seam and (seams_x or seams_y):
        if seams_x and (not seams_y or rng.random() < 0.5):
            x = int(rng.choice(seams_x)) - bw // 2 - bx
        else:
            y = int(rng.choice(seams_y)) - bh // 2 - by
    return x, y


def place_objects(rng: np.random.Generator, img: np.ndarray, labels: np.ndarray,
                  pool: dict[str, list[Cut]], cfg: SlidesConfig) -> list[Placed]:
    """Affix the slide's WBCs, thrombocytes and clumps (no two boxes touch)."""
    wanted = [(c, cfg.wbc) for c in WBC_CLASSES] + [("Thrombocytes", cfg.thrombocytes),
                                                     ("Clumps", cfg.clumps)]
    n_wbc = int(rng.integers(cfg.wbc[0], cfg.wbc[1] + 1))
    wbc_pool = [c for c in WBC_CLASSES if pool.get(c)]
    todo = [wbc_pool[int(rng.integers(len(wbc_pool)))] for _ in range(n_wbc)] if wbc_pool else []
    for cls, (lo, hi) in wanted[5:]:
        todo += [cls] * int(rng.integers(lo, hi + 1)) if pool.get(cls) else []
    placed: list[Placed] = []
    shape = (img.shape[1], img.shape[0])
    for cls in todo:
        cut = pool[cls][int(rng.integers(len(pool[cls])))]
        a_img, a_mask = augment(rng, cut)
        box = tight_box(a_mask)
        seam = bool(rng.random() < cfg.seam_share)
        for _ in range(30):
            x, y = position(rng, shape, box, seam)
            abs_box = (x + box[0], y + box[1], box[2], box[3])
            if not overlaps(abs_box, placed):
                paste(img, labels, a_img, a_mask, x, y, OBJECT_LABEL + len(placed))
                placed.append(Placed(CLASS_INDEX[cls], abs_box, 1.0, cut.sample_id))
                break
    return placed


def make_slide(index: int, shape: tuple[int, int], pools: dict[str, list[Cut]],
               pool: dict[str, list[Cut]], cuts: dict[str, Cut], cfg: SlidesConfig):
    """One slide: (BGR image, list of object rows (class_idx, box, visible, sample_id))."""
    rng = rng_for(cfg.seed, "slides", index)
    placed_rbcs = plan_background(rng, pools, "ni", cfg.background, shape)
    recipe = recipe_rows(f"slide-{index:03d}", "ni", "test", placed_rbcs)
    bg: Background = background(f"slide-{index:03d}", recipe, cuts, shape)
    img, labels = bg.image.copy(), bg.labels.copy()
    objects = place_objects(rng, img, labels, pool, cfg)
    rows = [(p.class_idx, p.box, p.visible, p.sample_id) for p in objects]
    counts = np.bincount(labels[(labels >= 0) & (labels < OBJECT_LABEL)],
                         minlength=len(bg.pixels))
    for i in np.nonzero(counts)[0]:
        share = float(counts[i] / max(bg.pixels[i], 1))
        if share >= cfg.min_visible:
            rows.append((int(bg.classes[i]), tuple(int(v) for v in bg.boxes[i]), share,
                         bg.sample_ids[i]))
    return img, rows


def coco(slides: list[tuple[str, tuple[int, int], list]]) -> dict:
    """COCO ground truth of all slides: (file name, (width, height), rows) each."""
    images, annotations = [], []
    for image_id, (name, (w, h), rows) in enumerate(slides, start=1):
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for c, (x, y, bw, bh), _, _ in rows:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": c + 1, "bbox": [x, y, bw, bh],
                                "area": bw * bh, "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def lineage_table(slides: list[tuple[str, tuple[int, int], list]]) -> pd.DataFrame:
    """One row per object: slide file, class, box, visible share and sample id."""
    rows = [(name, k, c, CLASS_NAMES[c], *box, vis, sid)
            for name, _, objs in slides for k, (c, box, vis, sid) in enumerate(objs)]
    return pd.DataFrame(rows, columns=["file_name", "obj", "class_idx", "class_name", "x", "y",
                                       "w", "h", "visible", "sample_id"])


def run(split_csv: Path, extract_dirs: list[Path], outdir: Path, cfg: SlidesConfig) -> None:
    """Write the test slides, their COCO ground truth, lineage table and a contact sheet."""
    ids = split_ids(split_csv, "test")
    rbc_cuts = load_cuts(extract_dirs, ids, {"_", "Infected"})
    pools = rbc_pools(rbc_cuts, "test", str(split_csv))
    pool: dict[str, list[Cut]] = {}
    for c in load_cuts(extract_dirs, ids, {*WBC_CLASSES, *PLATELET_CLASSES}):
        pool.setdefault(c.class_name, []).append(c)
    cuts = {c.sample_id: c for c in rbc_cuts}
    sides = [side for shape in cfg.sizes for side in shape]
    check_fits([*rbc_cuts, *(c for p in pool.values() for c in p)], min(sides), min(sides),
               "--size/--extra-sizes")
    made, tiles = [], []
    with atomic_dir(outdir, "slides", [split_csv, *extract_dirs]) as tmp:
        (tmp / "images").mkdir()
        for i, shape in enumerate(cfg.sizes):
            img, rows = make_slide(i, shape, pools, pool, cuts, cfg)
            name = f"images/slide_{i:03d}.png"
            (tmp / name).write_bytes(encode_png(img))
            made.append((name, shape, rows))
            if len(tiles) < 6:
                boxes = np.array([r[1] for r in rows]).reshape(-1, 4)
                tiles.append((draw_boxes(img, boxes, np.array([r[0] for r in rows])), name))
        (tmp / "ground_truth.json").write_text(json.dumps(coco(made), indent=1) + "\n")
        lineage_table(made).to_parquet(tmp / "objects.parquet", index=False)
        write_png(tmp / "contact_sheet.png", contact_sheet(tiles, 3, 400), SHEET_LEVEL)
    log.info("slides: %d slides -> %s", len(made), outdir)


def add_parser(sub) -> None:
    """``bloodcell slides``."""
    p = sub.add_parser("slides", help="make whole synthetic test smears",
                       description="Render whole smears from test-split samples with cells "
                       "straddling 224-px tile seams; write PNGs and COCO ground truth.")
    add_inputs(p)
    param_option(p, "--count", key="slides.count", type=non_negative_int, help="square slides")
    param_option(p, "--size", key="slides.size", type=positive_int,
                 help="side of square slides")
    p.add_argument("--extra-sizes", type=sizes_list,
                   default=sizes_list(param_default("slides.extra_sizes")),
                   help="further slides as WxH px, comma-separated (e.g. 1300x900,500x700), "
                   "or none; params.yaml slides.extra_sizes")
    for kind in ("wbc", "thrombocytes", "clumps"):
        param_option(p, f"--{kind}", key=f"slides.{kind}", type=non_negative_int, nargs=2,
                     metavar=("MIN", "MAX"))
    param_option(p, "--seam-share", key="slides.seam_share", type=share)
    param_option(p, "--min-visible", key="synth.min_visible", type=share)
    add_rbc_options(p)
    p.set_defaults(main=main)


def main(a) -> None:
    for option in ("rbc_count", "wbc", "thrombocytes", "clumps"):
        check_range(f"--{option.replace('_', '-')}", getattr(a, option))
    sizes = tuple([(a.size, a.size)] * a.count + a.extra_sizes)
    bg = BackgroundConfig(a.seed, "test", 1, a.size, *a.rbc_count, a.max_iou, a.mixed_infected)
    cfg = SlidesConfig(a.seed, sizes, tuple(a.wbc), tuple(a.thrombocytes), tuple(a.clumps),
                       a.seam_share, a.min_visible, bg)
    run(a.split_table, a.extracts, a.out, cfg)
