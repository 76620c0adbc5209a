"""The backgrounds stage: per split, square RBC backgrounds made only from that split's RBCs.

Three kinds, ``count`` of each: ``nn`` healthy-only, ``ii`` infected-only, ``ni`` mixed (each
RBC infected with probability ``mixed_infected``). RBCs go to random positions, each with a
random quarter turn / flip, and are kept only if their tight box overlaps every earlier box with
IoU below ``max_iou``. A background is stored as its recipe, one row per RBC (RECIPE_SCHEMA), and
rendered on demand (render_background): a few kilobytes instead of a megabyte per background.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.boxes import box_iou
from bloodcell.common.classes import CLASS_INDEX
from bloodcell.common.cli_args import (
    check_range,
    non_negative_int,
    param_option,
    positive_int,
    share,
)
from bloodcell.common.contact_sheet import SHEET_LEVEL, contact_sheet
from bloodcell.common.draw import draw_boxes
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import write_png
from bloodcell.common.param_defaults import param_default
from bloodcell.common.seeds import rng_for
from bloodcell.dataset.compose import Cut, load_cuts, paste, split_ids, tight_box, transform

log = logging.getLogger(__name__)
RECIPE_NAME = "backgrounds.parquet"
SHEET_NAME = "contact_sheet.png"
KINDS = ("nn", "ii", "ni")
CANVAS_BGR = (255, 255, 255)

RECIPE_SCHEMA = pa.schema([
    ("background_id", pa.string()), ("split", pa.string()), ("kind", pa.string()),
    ("rbc", pa.int32()), ("sample_id", pa.string()), ("class_name", pa.string()),
    ("class_idx", pa.int8()), ("transform", pa.int8()), ("paste_x", pa.int32()),
    ("paste_y", pa.int32()), ("x", pa.int32()), ("y", pa.int32()), ("w", pa.int32()),
    ("h", pa.int32()),
])
"""paste_x, paste_y: top-left of the transformed sample rectangle; x, y, w, h: the RBC's tight
mask box; all in background pixels."""


@dataclass(frozen=True)
class BackgroundConfig:
    """Parameters of one split's backgrounds (sizes in pixels)."""

    seed: int
    split: str
    count: int
    size: int
    rbc_min: int
    rbc_max: int
    max_iou: float
    mixed_infected: float


def plan_background(rng: np.random.Generator, pools: dict[str, list[Cut]], kind: str,
                    cfg: BackgroundConfig, shape: tuple[int, int] | None = None,
                    ) -> list[tuple[Cut, int, int, int, tuple]]:
    """Placements (cut, transform, paste_x, paste_y, tight box) of one background's RBCs.

    ``shape`` = (width, height) px, default cfg.size square; the RBC count range scales with
    the area.
    """
    width, height = shape or (cfg.size, cfg.size)
    area = width * height / cfg.size**2
    target = int(rng.integers(round(cfg.rbc_min * area), round(cfg.rbc_max * area) + 1))
    placed: list = []
    boxes = np.zeros((0, 4), np.float64)
    for _ in range(target * 6):
        if len(placed) == target:
            break
        infected = kind == "ii" or (kind == "ni" and rng.random() < cfg.mixed_infected)
        pool = pools["Infected" if infected else "_"]
        cut = pool[int(rng.integers(len(pool)))]
        t = int(rng.integers(8))
        _, mask = transform(cut.image, cut.mask, t)
        h, w = mask.shape
        px, py = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        bx, by, bw, bh = tight_box(mask)
        box = np.array([px + bx, py + by, bw, bh], np.float64)
        if len(boxes) and box_iou(box, boxes).max() >= cfg.max_iou:
            continue
        placed.append((cut, t, px, py, tuple(int(v) for v in box)))
        boxes = np.vstack([boxes, box])
    return placed


def recipe_rows(bg_id: str, kind: str, split: str, placed: list) -> dict[str, list]:
    """Columns of RECIPE_SCHEMA for one background's placements."""
    cols: dict[str, list] = {name: [] for name in RECIPE_SCHEMA.names}
    for i, (cut, t, px, py, (x, y, w, h)) in enumerate(placed):
        values = (bg_id, split, kind, i, cut.sample_id, cut.class_name,
                  CLASS_INDEX[cut.class_name], t, px, py, x, y, w, h)
        for name, v in zip(RECIPE_SCHEMA.names, values):
            cols[name].append(v)
    return cols


def render_background(recipe: dict[str, list], cuts: dict[str, Cut], size: int | tuple[int, int],
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Render one background from its recipe columns: (uint8 BGR image, int32 label map).

    ``size`` is the side, or (width, height), in px. The label map holds the recipe's ``rbc``
    index of the RBC visible at each pixel, or -1.
    """
    width, height = (size, size) if isinstance(size, int) else size
    canvas = np.full((height, width, 3), CANVAS_BGR, np.uint8)
    labels = np.full((height, width), -1, np.int32)
    for i, sid, t, px, py in zip(recipe["rbc"], recipe["sample_id"], recipe["transform"],
                                 recipe["paste_x"], recipe["paste_y"]):
        img, mask = transform(cuts[sid].image, cuts[sid].mask, int(t))
        paste(canvas, labels, img, mask, int(px), int(py), int(i))
    return canvas, labels


def rbc_pools(cuts: list[Cut], split: str, where: str) -> dict[str, list[Cut]]:
    """Healthy and infected RBC cuts; UserError if the split lacks either."""
    pools = {c: [k for k in cuts if k.class_name == c] for c in ("_", "Infected")}
    for name, pool in pools.items():
        if not pool:
            raise UserError(f"{where}: the {split} split has no {name} RBC samples; add data "
                            "or lower the split's share so each split gets some")
    return pools


def check_fits(cuts: list[Cut], width: int, height: int, option: str) -> None:
    """UserError when the largest sample (turned any way) does not fit a width x height
    canvas: it could not be placed."""
    side = max((max(c.mask.shape) for c in cuts), default=0)
    if side > min(width, height):
        raise UserError(f"{option} {min(width, height)}: a {width}x{height} px canvas cannot "
                        f"hold the largest sample of the split ({side} px across); raise it "
                        "(see params.yaml)")


def background_sheet(recipe: pa.Table, cuts: dict[str, Cut], size: int, path: Path,
                     n: int = 6) -> None:
    """Contact sheet of the first ``n`` backgrounds of each kind with their RBC boxes drawn."""
    cols = recipe.to_pydict()
    ids = list(dict.fromkeys(cols["background_id"]))
    chosen = [i for kind in KINDS for i in [b for b in ids if f"-{kind}-" in b][: n // 3]]
    tiles = []
    for bg_id in chosen:
        rows = [j for j, b in enumerate(cols["background_id"]) if b == bg_id]
        one = {k: [v[j] for j in rows] for k, v in cols.items()}
        img, _ = render_background(one, cuts, size)
        boxes = np.stack([one["x"], one["y"], one["w"], one["h"]], axis=1)
        tiles.append((draw_boxes(img, boxes, np.array(one["class_idx"]), names=False), bg_id))
    write_png(path, contact_sheet(tiles, 3, 400), SHEET_LEVEL)


def run(split_csv: Path, extract_dirs: list[Path], outdir: Path, cfg: BackgroundConfig) -> None:
    """Write OUTDIR/backgrounds.parquet (recipes) and OUTDIR/contact_sheet.png."""
    cuts = load_cuts(extract_dirs, split_ids(split_csv, cfg.split), {"_", "Infected"})
    pools = rbc_pools(cuts, cfg.split, str(split_csv))
    check_fits(cuts, cfg.size, cfg.size, "--size")
    tables = []
    for k, kind in enumerate(KINDS):
        for i in range(cfg.count):
            rng = rng_for(cfg.seed, "backgrounds", cfg.split, k, i)
            bg_id = f"{cfg.split}-{kind}-{i:04d}"
            placed = plan_background(rng, pools, kind, cfg)
            tables.append(pa.table(recipe_rows(bg_id, kind, cfg.split, placed),
                                   schema=RECIPE_SCHEMA))
    recipe = pa.concat_tables(tables)
    with atomic_dir(outdir, "backgrounds", [split_csv, *extract_dirs]) as tmp:
        pq.write_table(recipe, tmp / RECIPE_NAME, compression="zstd")
        background_sheet(recipe, {c.sample_id: c for c in cuts}, cfg.size, tmp / SHEET_NAME)
    log.info("%s: %d backgrounds, %d RBCs -> %s", cfg.split, 3 * cfg.count, recipe.num_rows,
             outdir)


def add_inputs(p: argparse.ArgumentParser) -> None:
    """The split table, extract folders, output folder and seed every dataset stage takes."""
    p.add_argument("--split-table", type=Path, required=True, help="data/split/split.csv")
    p.add_argument("--extracts", type=Path, nargs="+", required=True,
                   help="extract stage output folders (data/extract/<db>)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (replaced only when an earlier run of the same command "
                   "made it)")
    p.add_argument("--seed", type=non_negative_int, required=True)


def add_rbc_options(p: argparse.ArgumentParser) -> None:
    """--rbc-count, --max-iou and --mixed-infected: how RBCs fill a background."""
    p.add_argument("--rbc-count", type=positive_int, nargs=2, metavar=("MIN", "MAX"),
                   default=[param_default("backgrounds.rbc_min"),
                            param_default("backgrounds.rbc_max")],
                   help="RBCs per background; params.yaml backgrounds.rbc_min, rbc_max")
    param_option(p, "--max-iou", key="backgrounds.max_iou", type=share,
                 help="largest RBC box IoU")
    param_option(p, "--mixed-infected", key="backgrounds.mixed_infected", type=share,
                 help="share of infected RBCs in mixed backgrounds")


def add_parser(sub) -> None:
    """``bloodcell backgrounds``."""
    p = sub.add_parser("backgrounds", help="build one split's RBC backgrounds",
                       description="Place the split's RBC samples on square backgrounds "
                       "(healthy-only, infected-only, mixed); write the recipes "
                       "(backgrounds.parquet) and a contact sheet.")
    p.add_argument("split", choices=["train", "valid", "test"])
    add_inputs(p)
    p.add_argument("--per-kind", type=positive_int, required=True,
                   help="backgrounds of each of the three kinds")
    param_option(p, "--size", key="backgrounds.size", type=positive_int, help="side in px")
    add_rbc_options(p)
    p.set_defaults(main=main)


def main(a) -> None:
    check_range("--rbc-count", a.rbc_count)
    cfg = BackgroundConfig(a.seed, a.split, a.per_kind, a.size, *a.rbc_count, a.max_iou,
                           a.mixed_infected)
    run(a.split_table, a.extracts, a.out, cfg)
