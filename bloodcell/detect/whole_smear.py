"""Whole-slide detection: tiles, one batched compiled call, stitching, a second pass, a merge.

Coordinates are pixels of the image passed in (already at the detector's 40x scale; callers
map boxes back to their input's pixels), top-left origin; boxes are (x, y, w, h). Images are
uint8 (H, W, 3) in **RGB** order, as the model takes them: the readers give BGR (OpenCV's
order) and the callers (detect, evaluate-images, evaluate-slides, the Detector API) flip it.

1. Tiling: 224x224 tiles at ``stride`` px along each axis (224 - ``overlap`` px when an overlap
   is given) plus one tile flush with the far edge when the size is not a multiple; an image
   smaller than 224 on a side is padded (bottom and right) with its median colour and boxes are
   clipped back to the image.
2. All tiles go through the detector in batches of one compiled call (model, decode and NMS).
3. Stitching: boxes move to slide coordinates. Boxes of one class from different tiles that
   meet across a seam (both within ``adjacency_px`` of it, overlapping along it by half the
   shorter side) are joined into their union.
4. Second pass: a 224 window is re-centred on every partialWBC away from the slide's border and
   on every thrombocyte or clump pair that met across a seam (window clamped to the image).
   The window's detection that covers the target best replaces the target boxes.
5. A final class-aware merge: NMS at ``merge_iou`` plus removal of boxes lying mostly (70 %)
   inside a higher-scoring box of the same class (``merge_metric`` "iou"), or NMS on the
   intersection over the smaller box (``merge_metric`` "ios", as SAHI's NMS with IOS).

Steps 3 and 5 compare boxes through a uniform grid (bloodcell.common.boxes), so their cost grows
with the number of boxes, not its square (100,000 RBCs on a 20000 x 20000 px smear).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bloodcell.common.boxes import candidate_pairs, grown, pair_ios, pair_iou
from bloodcell.common.classes import CELL_KIND
from bloodcell.common.classes import INFECTED_IDX as INFECTED
from bloodcell.common.classes import PARTIAL_IDX as PARTIAL
from bloodcell.common.classes import PLATELET_IDX as PLATELETS
from bloodcell.common.classes import WBC_IDX as WBC
from bloodcell.common.param_defaults import param_default
from bloodcell.common.tile import TILE_PX as TILE
from bloodcell.model.tta import ViewFusion

if TYPE_CHECKING:  # bloodcell.model.inference loads TensorFlow; the CLI parsers import this module
    from bloodcell.model.inference import TileFn

KIND = np.asarray(CELL_KIND, np.int64)
"""Kind of each class for merging (bloodcell.common.classes.CELL_KIND)."""


MERGE_METRICS = ("iou", "ios")
"""Final merge rules: "iou": IoU > merge_iou or 70 % inside the kept box; "ios": intersection
over the smaller box's area > merge_iou."""


DEFAULT_OVERLAP_PX = param_default("slide_detection.overlap")
"""Default overlap of neighbouring tiles (20 % of 224, stride 179), the best of the variants
measured on the synthetic slides (benchmarks/slide_variants.py): every RBC (about 34 px) lies
whole in some tile, and with the second pass it gave the slides' mAP@0.5 within 0.02 of the
test split's at 0.3 s per 1000x1000 px on 2 cores."""

WHOLE_VIEW_PX = 64_000_000
"""Largest smear read region by region (pixels at the model's scale, about 190 MB in RGB) that
test-time augmentation mirrors as a whole; a larger one is mirrored tile by tile."""


@dataclass(frozen=True)
class SlideConfig:
    """Whole-slide settings, lengths in pixels of the image the detector sees (the 40x scale).
    ``stride``: tile step, px (224: tiles only touch). ``overlap``: px shared by neighbouring
    tiles, 0..223, or None; given, the stride becomes 224 - overlap (a ``stride`` other than the
    default must then agree). ``merge_iou``: threshold (0..1) of the final merge, whose rule
    ``merge_metric`` names (MERGE_METRICS). ``adjacency_px``: px from a seam within which two
    parts of one cut cell lie. ``second_pass``: re-centre a window on partial WBCs and on
    platelets cut by a seam. ``batch``: tiles per compiled call. The merge and adjacency
    defaults are the params schema's (slide_detection.*); the default tiling here is touching
    tiles, while the commands and the Detector API default to slide_detection.overlap."""

    stride: int = TILE
    merge_iou: float = param_default("slide_detection.merge_iou")
    adjacency_px: int = param_default("slide_detection.adjacency_px")
    second_pass: bool = True
    batch: int = 32
    merge_metric: str = param_default("slide_detection.merge_metric")
    overlap: int | None = None

    def __post_init__(self) -> None:
        if self.overlap is not None:
            if not 0 <= self.overlap < TILE:
                raise ValueError(f"overlap {self.overlap} px must lie in 0..{TILE - 1}")
            if self.stride not in (TILE, TILE - self.overlap):
                raise ValueError(f"stride {self.stride} and overlap {self.overlap} disagree: "
                                 f"give one (stride = {TILE} - overlap)")
            object.__setattr__(self, "stride", TILE - self.overlap)
        if self.stride < 1:
            raise ValueError(f"stride {self.stride} px must be at least 1")
        if self.merge_metric not in MERGE_METRICS:
            raise ValueError(f"merge_metric {self.merge_metric!r} must be one of "
                             f"{', '.join(MERGE_METRICS)}")


def tile_origins(length: int, stride: int) -> list[int]:
    """Tile start positions along one axis of ``length`` px (>= 224): stride steps + far edge."""
    starts = list(range(0, length - TILE + 1, stride))
    if starts[-1] != length - TILE:
        starts.append(length - TILE)
    return starts


def pad_to_tile(image: np.ndarray) -> np.ndarray:
    """Pad an image smaller than 224 on a side (bottom/right) with its median colour."""
    h, w = image.shape[:2]
    if h >= TILE and w >= TILE:
        return image
    fill = np.median(image.reshape(-1, 3), axis=0).astype(image.dtype)
    out = np.empty((max(h, TILE), max(w, TILE), 3), image.dtype)
    out[:] = fill
    out[:h, :w] = image
    return out


def cut_tiles(image: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
    """(n, 224, 224, 3) tiles at (x, y) origins."""
    return np.stack([image[y:y + TILE, x:x + TILE] for x, y in origins])


def cut_by_tile(b: np.ndarray, x0: int, y0: int, width: int, height: int,
                margin: float = 1.0) -> np.ndarray:
    """Whether tile boxes (y1, x1, y2, x2, tile px) touch a tile edge inside the image: such
    a box may show only part of its cell."""
    return (((b[:, 1] <= margin) & (x0 > 0)) | ((b[:, 0] <= margin) & (y0 > 0))
            | ((b[:, 3] >= TILE - margin) & (x0 + TILE < width))
            | ((b[:, 2] >= TILE - margin) & (y0 + TILE < height)))


def run_tiles(detect: TileFn, image: np.ndarray, origins: list[tuple[int, int]],
              batch: int) -> pd.DataFrame:
    """Detections of the tiles at ``origins`` in slide coordinates, with the tile's index in
    column ``tile``. Tiles are cut batch by batch, so memory stays small on huge images."""
    frames = []
    for start in range(0, len(origins), batch):
        tiles = cut_tiles(image, origins[start:start + batch])
        boxes, scores, classes, valid = detect(tiles)
        for k in range(len(valid)):
            n = int(valid[k])
            b = boxes[k, :n].astype(np.float64)
            x0, y0 = origins[start + k]
            frames.append(pd.DataFrame({
                "class_idx": classes[k, :n].astype(np.int64),
                "score": scores[k, :n].astype(np.float64),
                "x": b[:, 1] + x0, "y": b[:, 0] + y0,
                "w": b[:, 3] - b[:, 1], "h": b[:, 2] - b[:, 0], "tile": start + k,
                "cut": cut_by_tile(b, x0, y0, image.shape[1], image.shape[0])}))
    return pd.concat(frames, ignore_index=True)


def meet_across_seam(a: np.ndarray, b: np.ndarray, gap: float,
                     seams: tuple[list[int], list[int]]) -> bool:
    """Whether boxes a and b (x, y, w, h) meet across a tile seam: a vertical seam x = s (or a
    horizontal one, y = s) from ``seams`` lies within ``gap`` px of the facing sides of both,
    and the boxes overlap along the seam by at least half the shorter side."""
    for axis in (0, 1):
        other = 1 - axis
        lo, hi = (a, b) if a[axis] <= b[axis] else (b, a)
        near = [c for c in seams[axis]
                if abs(lo[axis] + lo[axis + 2] - c) <= gap and abs(hi[axis] - c) <= gap]
        along = min(a[other] + a[other + 2], b[other] + b[other + 2]) - max(a[other], b[other])
        if near and along >= 0.5 * min(a[other + 2], b[other + 2]):
            return True
    return False


def seam_lines(origins: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """x and y coordinates of every tile edge inside the image (tile starts and ends)."""
    xs = sorted({c for x, _ in origins for c in (x, x + TILE)})
    ys = sorted({c for _, y in origins for c in (y, y + TILE)})
    return xs, ys


def nearby_lines(values: np.ndarray, lines: np.ndarray, gap: float
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For values (px, one axis) and sorted seam ``lines`` (px), yield (line, valid) arrays:
    the k-th line within ``gap`` + 1 px of each value. A superset of the lines within ``gap``
    px (the caller tests |value - line| <= gap), found by binary search: n log(lines) work."""
    lo = np.searchsorted(lines, values - gap - 1, "left")
    hi = np.searchsorted(lines, values + gap + 1, "right")
    for k in range(int(np.max(hi - lo, initial=0))):
        idx = lo + k
        ok = idx < hi
        yield lines[np.where(ok, idx, 0)], ok


def near_seam(xywh: np.ndarray, gap: float, seams: tuple[list[int], list[int]]) -> np.ndarray:
    """Per box (x, y, w, h rows, px): whether one of its sides lies within ``gap`` px of a
    tile seam of its axis. Only such boxes can meet another across a seam."""
    near = np.zeros(len(xywh), bool)
    for axis in (0, 1):
        lines = np.unique(np.asarray(seams[axis], float))
        for side in (xywh[:, axis], xywh[:, axis] + xywh[:, axis + 2]):
            for line, ok in nearby_lines(side, lines, gap):
                near |= ok & (np.abs(side - line) <= gap)
    return near


def share_seam(u: np.ndarray, v: np.ndarray, lines: np.ndarray, gap: float) -> np.ndarray:
    """Per row: whether one of the sorted seam ``lines`` lies within ``gap`` px of both u and
    v (px, one axis)."""
    found = np.zeros(len(u), bool)
    for line, ok in nearby_lines(u, lines, gap):
        found |= ok & (np.abs(u - line) <= gap) & (np.abs(v - line) <= gap)
    return found


def meet_across_seam_pairs(a: np.ndarray, b: np.ndarray, gap: float,
                           seams: tuple[list[int], list[int]]) -> np.ndarray:
    """:func:`meet_across_seam` on row-aligned boxes ``a`` and ``b`` (k, 4: x, y, w, h px) at
    once, in the same float operations (same answers on finite boxes)."""
    meet = np.zeros(len(a), bool)
    for axis in (0, 1):
        other = 1 - axis
        first = (a[:, axis] <= b[:, axis])[:, None]
        lo, hi = np.where(first, a, b), np.where(first, b, a)
        lines = np.unique(np.asarray(seams[axis], float))
        near = share_seam(lo[:, axis] + lo[:, axis + 2], hi[:, axis], lines, gap)
        along = (np.minimum(a[:, other] + a[:, other + 2], b[:, other] + b[:, other + 2])
                 - np.maximum(a[:, other], b[:, other]))
        meet |= near & (along >= 0.5 * np.minimum(a[:, other + 2], b[:, other + 2]))
    return meet


def seam_pairs(dets: pd.DataFrame, classes: tuple[int, ...], gap: float,
               seams: tuple[list[int], list[int]]) -> list[tuple[int, int]]:
    """Row pairs of boxes of the same kind (see KIND; classes from ``classes``) and different
    tiles that meet across a seam, ordered by the first row's position, then the second's.
    Candidates are boxes near a seam whose boxes, grown by ``gap`` px, overlap (both necessary
    for meeting), found through a grid (bloodcell.common.boxes), so the exact test runs on few
    pairs and the cost grows with the number of boxes."""
    sub = dets[dets["class_idx"].isin(classes)]
    xywh = sub[["x", "y", "w", "h"]].to_numpy(float)
    keep = near_seam(xywh, gap, seams)
    sub, xywh = sub[keep], xywh[keep]
    kind, tile, rows = KIND[sub["class_idx"].to_numpy()], sub["tile"].to_numpy(), \
        sub.index.to_numpy()
    i, j = candidate_pairs(xywh, gap)
    x0, y0, x1, y1 = grown(xywh, gap)
    ok = ((kind[i] == kind[j]) & (tile[i] != tile[j]) & (x0[j] <= x1[i]) & (x0[i] <= x1[j])
          & (y0[j] <= y1[i]) & (y0[i] <= y1[j]))
    i, j = i[ok], j[ok]
    meet = meet_across_seam_pairs(xywh[i], xywh[j], gap, seams)
    return [(int(rows[a]), int(rows[b])) for a, b in zip(i[meet], j[meet])]


def union_box(boxes: np.ndarray) -> np.ndarray:
    """The (x, y, w, h) box covering all ``boxes`` (n, 4)."""
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    return np.array([x0, y0, x1 - x0, y1 - y0])


def join_pairs(dets: pd.DataFrame, pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """Replace each connected group of paired rows by one row: the union box and the best
    score's class, except that an RBC is infected when any of its parts is."""
    parent = {r: r for p in pairs for r in p}

    def root(r: int) -> int:
        while parent[r] != r:
            r = parent[r]
        return r

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for r in parent:
        groups.setdefault(root(r), []).append(r)
    joined = []
    for rows in groups.values():
        part = dets.loc[sorted(rows)]
        best = part.loc[part["score"].idxmax()].to_dict()
        if KIND[best["class_idx"]] == KIND[INFECTED] and (part["class_idx"] == INFECTED).any():
            best["class_idx"] = INFECTED
        x, y, w, h = union_box(part[["x", "y", "w", "h"]].to_numpy(float))
        joined.append({**best, "x": x, "y": y, "w": w, "h": h, "joined": True, "cut": False})
    rest = dets.drop(index=list(parent)).assign(joined=False)
    if not joined:
        return rest
    return pd.concat([rest, pd.DataFrame(joined).astype(rest.dtypes.to_dict())],
                     ignore_index=True)


def at_border(box: np.ndarray, width: int, height: int, margin: float = 2.0) -> bool:
    """Whether a box (x, y, w, h) touches the image border (within ``margin`` px)."""
    x, y, w, h = box
    return x <= margin or y <= margin or x + w >= width - margin or y + h >= height - margin


def window_origin(box: np.ndarray, width: int, height: int) -> tuple[int, int]:
    """Top-left of the 224 window centred on a box, clamped to the (padded) image."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x = int(np.clip(round(cx - TILE / 2), 0, max(width - TILE, 0)))
    y = int(np.clip(round(cy - TILE / 2), 0, max(height - TILE, 0)))
    return x, y


def second_pass_targets(dets: pd.DataFrame, width: int, height: int) -> list[int]:
    """Rows to re-detect: white cells away from the slide border that are partial, cut by a
    tile edge or joined across a seam, and platelets joined across a seam."""
    xywh = dets[["x", "y", "w", "h"]].to_numpy(float)
    cls = dets["class_idx"].to_numpy()
    seam = dets["joined"].to_numpy(bool)
    white = (cls == PARTIAL) | (np.isin(cls, WBC) & (seam | dets["cut"].to_numpy(bool)))
    platelet = np.isin(cls, PLATELETS) & seam
    return [int(r) for k, r in enumerate(dets.index)
            if (white[k] and not at_border(xywh[k], width, height)) or platelet[k]]


def best_cover(target: np.ndarray, cands: pd.DataFrame) -> int | None:
    """Row of the candidate covering the most of the target box (at least half), or None."""
    if cands.empty:
        return None
    b = cands[["x", "y", "w", "h"]].to_numpy(float)
    ix = np.minimum(b[:, 0] + b[:, 2], target[0] + target[2]) - np.maximum(b[:, 0], target[0])
    iy = np.minimum(b[:, 1] + b[:, 3], target[1] + target[3]) - np.maximum(b[:, 1], target[1])
    cover = np.clip(ix, 0, None) * np.clip(iy, 0, None) / max(target[2] * target[3], 1e-6)
    k = int(np.argmax(cover))
    return int(cands.index[k]) if cover[k] >= 0.5 else None


def replace_target(dets: pd.DataFrame, row: int, new: pd.Series, kinds: tuple[int, ...]
                   ) -> pd.DataFrame:
    """Drop the target and every box of ``kinds`` lying mostly inside ``new``; add ``new``
    under a fresh index (other rows keep theirs)."""
    nb = new[["x", "y", "w", "h"]].to_numpy(float)
    b = dets[["x", "y", "w", "h"]].to_numpy(float)
    ix = np.minimum(b[:, 0] + b[:, 2], nb[0] + nb[2]) - np.maximum(b[:, 0], nb[0])
    iy = np.minimum(b[:, 1] + b[:, 3], nb[1] + nb[3]) - np.maximum(b[:, 1], nb[1])
    inside = np.clip(ix, 0, None) * np.clip(iy, 0, None) / np.maximum(b[:, 2] * b[:, 3], 1e-6)
    drop = (dets.index == row) | (dets["class_idx"].isin(kinds).to_numpy() & (inside >= 0.5))
    added = new.to_frame().T.set_axis([int(dets.index.max()) + 1])
    return pd.concat([dets[~drop], added]).astype(dets.dtypes.to_dict())


def second_pass(detect: TileFn, image: np.ndarray, dets: pd.DataFrame, size: tuple[int, int],
                batch: int) -> pd.DataFrame:
    """Re-detect each target in a re-centred window (all windows in one batched run)."""
    width, height = size
    targets = second_pass_targets(dets, width, height)
    if not targets:
        return dets
    boxes = {r: dets.loc[r, ["x", "y", "w", "h"]].to_numpy(float) for r in targets}
    classes = {r: int(dets.loc[r, "class_idx"]) for r in targets}
    origins = [window_origin(boxes[r], image.shape[1], image.shape[0]) for r in targets]
    # windows run top to bottom, so a smear read region by region is decoded once
    order = sorted(range(len(origins)), key=lambda k: (origins[k][1], origins[k][0]))
    found = run_tiles(detect, image, [origins[k] for k in order], batch)
    found["tile"] = np.asarray(order, np.int64)[found["tile"].to_numpy()]
    for k, r in enumerate(targets):
        if r not in dets.index:  # already replaced by an earlier target's new box
            continue
        kinds = (*WBC, PARTIAL) if KIND[classes[r]] == KIND[PARTIAL] else (classes[r],)
        cands = found[(found["tile"] == k) & found["class_idx"].isin(kinds)]
        pick = best_cover(boxes[r], cands)
        if pick is not None:
            new = cands.loc[pick].copy()
            new["tile"] = -1
            dets = replace_target(dets, r, new.reindex(dets.columns, fill_value=False), kinds)
    return dets


def suppressions(b: np.ndarray, iou: float, inside: float, metric: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, of ranked boxes ``b`` (x, y, w, h px) where box i, if kept, removes
    box j (see :func:`class_nms`), sorted by i. Only grid candidates are measured; other pairs
    do not overlap, so no rule with thresholds >= 0 holds for them."""
    i, j = candidate_pairs(b)
    if metric == "ios":
        hit = pair_ios(b[i], b[j]) > iou
    else:  # the floats of the former all-pairs version: intersection from the IoU
        overlap = pair_iou(b[i], b[j])
        area = b[:, 2] * b[:, 3]
        inter = overlap * (area[i] + area[j]) / (1 + overlap)
        hit = (overlap > iou) | (inter / np.maximum(area[j], 1e-6) > inside)
    return i[hit], j[hit]


def greedy_keep(b: np.ndarray, iou: float, inside: float, metric: str) -> np.ndarray:
    """Mask of the ranked boxes ``b`` kept by greedy NMS: each kept box, in rank order, removes
    the later boxes it suppresses."""
    i, j = suppressions(b, iou, inside, metric)
    alive = np.ones(len(b), bool)
    starts = np.searchsorted(i, np.arange(len(b) + 1))
    for k in np.unique(i):
        if alive[k]:
            alive[j[starts[k]:starts[k + 1]]] = False
    return alive


def ranked_by_kind(dets: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """Each kind's rows (KIND) in merge order: whole boxes first (not cut by a tile edge, not
    partialWBC), then by score, highest first (stable)."""
    ranked = dets.assign(kind=KIND[dets["class_idx"].to_numpy()],
                         partial=dets["class_idx"].to_numpy() == PARTIAL)
    for _, part in ranked.groupby("kind", sort=True):
        yield part.sort_values(["cut", "partial", "score"], ascending=[True, True, False],
                               kind="mergesort")


def class_nms(dets: pd.DataFrame, iou: float, inside: float = 0.7,
              metric: str = "iou") -> pd.DataFrame:
    """Greedy NMS per kind of cell (KIND), whole boxes first (not cut by a tile edge, not
    partialWBC), then by score. ``metric`` "iou": drop boxes overlapping a kept one by
    IoU > ``iou`` or lying ``inside`` (share of their own area) within it; "ios": drop boxes
    whose intersection with a kept one exceeds ``iou`` of the smaller box's area. Boxes are
    x, y, w, h px; candidates come from a grid (bloodcell.common.boxes), so memory and time grow
    with the number of boxes. Returns the kept rows in index order."""
    if metric not in MERGE_METRICS:
        raise ValueError(f"merge metric {metric!r} must be one of {', '.join(MERGE_METRICS)}")
    if not (iou >= 0 and inside >= 0):
        raise ValueError(f"merge thresholds must be >= 0, got iou {iou}, inside {inside}")
    keep = []
    for part in ranked_by_kind(dets):
        b = part[["x", "y", "w", "h"]].to_numpy(float)
        keep += list(part.index[greedy_keep(b, iou, inside, metric)])
    return dets.loc[sorted(keep)]


def clip_to_image(dets: pd.DataFrame, width: int, height: int) -> pd.DataFrame:
    """Boxes clipped to the image (drops those left empty by padding)."""
    x0, y0 = dets["x"].clip(0, width), dets["y"].clip(0, height)
    x1 = (dets["x"] + dets["w"]).clip(0, width)
    y1 = (dets["y"] + dets["h"]).clip(0, height)
    out = dets.assign(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
    return out[(out["w"] > 0) & (out["h"] > 0)]


def detect_slide(detect: TileFn, image: np.ndarray, cfg: SlideConfig) -> pd.DataFrame:
    """Detections (class_idx, score, x, y, w, h px, top-left) on an RGB uint8 image of any size.
    A test-time-augmented ``detect`` (bloodcell.model.tta.ViewFusion) runs this on each mirrored
    view of the whole image and fuses the views before the final merge; a smear read region by
    region (bloodcell.detect.smear_view.ScaledSmear) of more than WHOLE_VIEW_PX pixels is not
    mirrored whole (that would hold it in memory): each of its tiles is mirrored in place."""
    return detect_slide_passes(detect, image, cfg, (cfg.second_pass,))[cfg.second_pass]


def detect_slide_passes(detect: TileFn, image: np.ndarray, cfg: SlideConfig,
                        passes: tuple[bool, ...] = (True, False)) -> dict[bool, pd.DataFrame]:
    """{second pass or not: detect_slide's detections with ``cfg.second_pass`` set so} for each
    of ``passes``, from one tiling of the image (per view under test-time augmentation): the
    same frames as calling detect_slide once per variant, in less time."""
    height, width = image.shape[:2]
    if isinstance(detect, ViewFusion) and (isinstance(image, np.ndarray)
                                           or height * width <= WHOLE_VIEW_PX):
        fused = detect.on_image_variants(
            lambda view: detect_slide_passes(detect.per_view, view, cfg, passes),
            np.asarray(image))
        return {p: merged_views(d, width, height, cfg) for p, d in fused.items()}
    padded = pad_to_tile(image)
    origins = [(x, y) for y in tile_origins(padded.shape[0], cfg.stride)
               for x in tile_origins(padded.shape[1], cfg.stride)]
    dets = clip_to_image(run_tiles(detect, padded, origins, cfg.batch),
                         width, height)
    dets = dets.reset_index(drop=True)
    seams = seam_lines(origins)
    # only boxes a tile edge cut are parts of one cell: two whole neighbours that happen to
    # touch at a seam stay two cells
    cut = dets[dets["cut"].to_numpy(bool)]
    dets = join_pairs(dets, seam_pairs(cut, tuple(range(10)), cfg.adjacency_px, seams))
    dets = dets.reset_index(drop=True)
    return {p: final_merge(second_pass(detect, padded, dets, (width, height), cfg.batch)
                           if p else dets, width, height, cfg) for p in passes}


def merged_views(dets: pd.DataFrame, width: int, height: int, cfg: SlideConfig) -> pd.DataFrame:
    """The last step of detect_slide on fused views: as :func:`final_merge`, with every box
    taken as whole (no seam cuts remain) and the rows ordered before the clip."""
    dets = class_nms(dets.assign(cut=False), cfg.merge_iou, metric=cfg.merge_metric)
    dets = dets.sort_values(["y", "x", "class_idx"], kind="mergesort")
    return clip_to_image(dets, width, height)[["class_idx", "score", "x", "y", "w", "h"]
                                              ].reset_index(drop=True)


def final_merge(dets: pd.DataFrame, width: int, height: int, cfg: SlideConfig) -> pd.DataFrame:
    """The last step of detect_slide: class-aware merge of overlapping boxes, boxes clipped to
    the image, rows in reading order (y, x, class), columns class_idx, score, x, y, w, h."""
    dets = clip_to_image(class_nms(dets, cfg.merge_iou, metric=cfg.merge_metric), width, height)
    dets = dets.sort_values(["y", "x", "class_idx"], kind="mergesort")
    return dets[["class_idx", "score", "x", "y", "w", "h"]].reset_index(drop=True)
