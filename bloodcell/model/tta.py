"""Test-time augmentation: the detector also runs on mirrored (and transposed) copies of an
image, whose boxes are mapped back and fused.

View ``k`` of an image (0 <= k < 8) transposes it when bit 2 is set, then mirrors it left-right
(bit 0) and top-bottom (bit 1); ``flips`` uses views 0-3 (the identity, both mirrors and the
half turn), ``dihedral`` all eight. Boxes found in a view are mapped back to the image's own
frame; boxes of one group that overlap the best remaining box of that group by IoU >= FUSE_IOU
are one cell. Its box is the score-weighted mean of theirs, its class the one with the largest
summed score, and its score the sum, over views, of each view's best score there, divided by
the number of views (a cell seen in one view of four keeps a quarter of its score). This is
weighted box fusion (Solovyev et al. 2021) within one image.

Groups follow the merge that comes after fusion without augmentation. A whole slide is mirrored
as a whole and tiled again (bloodcell.detect.whole_smear.detect_slide), so each view's tiles also
sit at another offset to the cells whenever the image's size is not a multiple of the tile grid;
its boxes are grouped by kind of cell (bloodcell.common.classes.CELL_KIND: views may disagree on
a white cell's type or on whether a red cell is infected), as the slide's final merge is. A
lone 224 tile (the test split) is mirrored in place and its boxes grouped by class, as the
decoder's per-class NMS keeps one cell's boxes of two classes.
Boxes here are x, y, w, h pixels (top-left origin) unless a name says y1x1y2x2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bloodcell.common.boxes import candidate_pairs, pair_iou, pairs_csr
from bloodcell.common.classes import CELL_KIND

TileFn = Callable[[np.ndarray], tuple[np.ndarray, ...]]

VIEWS = {"none": 1, "flips": 4, "dihedral": 8}
"""tta mode -> number of views (the first N of the eight)."""
FUSE_IOU = 0.55
"""IoU with a cluster's best box at which a box of the same class joins it (WBF's customary)."""


def view_of(images: np.ndarray, k: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """View ``k`` of an image (H, W, C) or, with ``axes=(1, 2)``, of a batch (B, H, W, C):
    transpose (bit 2), then mirror along x (bit 0) and y (bit 1)."""
    y_axis, x_axis = axes
    out = np.swapaxes(images, y_axis, x_axis) if k & 4 else images
    if k & 1:
        out = np.flip(out, x_axis)
    if k & 2:
        out = np.flip(out, y_axis)
    return np.ascontiguousarray(out)


def boxes_from_view(xywh: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Boxes (n, 4) x, y, w, h found in view ``k`` (``width`` x ``height`` px, the view's own
    size) -> the same boxes in the original image (the view's steps undone in reverse order)."""
    x, y, w, h = (xywh[:, i] for i in range(4))
    if k & 2:
        y = height - y - h
    if k & 1:
        x = width - x - w
    if k & 4:
        x, y, w, h = y, x, h, w
    return np.stack([x, y, w, h], axis=1)


BY_KIND = np.asarray(CELL_KIND)
BY_CLASS = np.arange(len(CELL_KIND))
"""Groups of the 10 classes: by kind of cell (whole slides) or each class alone (tiles)."""


def fuse(xywh: np.ndarray, scores: np.ndarray, classes: np.ndarray, views: np.ndarray,
         n_views: int, groups: np.ndarray = BY_KIND, iou: float = FUSE_IOU
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of all views of one image -> fused (boxes x, y, w, h; scores; class indices 0..9),
    by descending score (module docstring). ``views``: the view index of each box;
    ``groups``: the group of each class index."""
    xywh, scores = np.asarray(xywh, float).reshape(-1, 4), np.asarray(scores, float)
    classes, views = np.asarray(classes, np.int64), np.asarray(views, np.int64)
    parts = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    kinds = groups[classes]
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        member, cluster = clusters(xywh[idx], iou)
        idx = idx[member]
        parts.append(cluster_sums(xywh[idx], scores[idx], views[idx], classes[idx], cluster,
                                  n_views))
    b, s, c = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(-s, kind="stable")
    return b[order], s[order], c[order]


PAIR_CHUNK = 2**20
"""Candidate pairs whose IoU is computed at once (bounds the memory of a whole slide's boxes)."""


def clusters(b: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clusters of boxes ``b`` (n, 4), best first: each box still free takes the free
    boxes whose IoU with it is at least ``iou``. Returns (member, cluster): the box indices in
    cluster order (each cluster's own box first, then the others ascending) and each one's
    cluster number (0, 1, ...)."""
    indptr, near = close_pairs(b, iou)
    free = np.ones(len(b), bool)
    member, sizes = [], []
    for i in range(len(b)):
        if not free[i]:
            continue
        cand = near[indptr[i]:indptr[i + 1]]
        cand = cand[free[cand]]
        free[i] = False
        free[cand] = False
        member.append(i)
        member.extend(cand.tolist())
        sizes.append(1 + len(cand))
    return np.asarray(member, np.int64), np.repeat(np.arange(len(sizes)), sizes)


def close_pairs(b: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """For each box of ``b`` (n, 4), the boxes whose IoU with it is at least ``iou``, in CSR
    form (``near[indptr[i]:indptr[i + 1]]``, ascending); the IoUs of a grid index's candidate
    pairs (bloodcell.common.boxes.candidate_pairs), :data:`PAIR_CHUNK` at a time."""
    i, j = candidate_pairs(b)
    keep = np.concatenate([pair_iou(b[i[k:k + PAIR_CHUNK]], b[j[k:k + PAIR_CHUNK]]) >= iou
                           for k in range(0, len(i), PAIR_CHUNK)] or [np.zeros(0, bool)])
    return pairs_csr(i[keep], j[keep], len(b))


def cluster_sums(b: np.ndarray, s: np.ndarray, v: np.ndarray, cls: np.ndarray,
                 cluster: np.ndarray, n_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cluster's fused box (score-weighted mean x, y, w, h), score (the sum over views of
    each view's best score, / ``n_views``, at most 1) and class (largest summed score), from
    its members' boxes ``b``, scores ``s``, views ``v`` and classes ``cls`` in cluster order.
    Sums run as numpy's sum of one cluster's values would: in order, and pairwise for the sum
    of 8 or more scores, so that the result does not depend on how many clusters are summed
    at once."""
    k = int(cluster[-1]) + 1 if len(cluster) else 0
    size = np.bincount(cluster, minlength=k)
    weight = np.bincount(cluster, weights=s, minlength=k)
    starts = np.concatenate([[0], np.cumsum(size)])
    for c in np.flatnonzero(size >= 8):
        weight[c] = s[starts[c]:starts[c + 1]].sum()
    boxes = np.stack([np.bincount(cluster, weights=b[:, j] * s, minlength=k)
                      for j in range(4)], axis=1) / weight[:, None]
    best = np.zeros((k, n_views))
    np.maximum.at(best, (cluster, v), s)
    score = np.zeros(k)
    for view in range(n_views):
        score = score + best[:, view]
    every = np.count_nonzero(best, axis=1) >= 8
    score[every] = best[every].sum(axis=1)
    votes = np.bincount(cluster * len(CELL_KIND) + cls, weights=s,
                        minlength=k * len(CELL_KIND)).reshape(k, len(CELL_KIND))
    return (boxes.reshape(-1, 4), np.minimum(1.0, score / n_views),
            np.argmax(votes, axis=1).astype(np.int64))


def fuse_frames(frames: list[pd.DataFrame], n_views: int, score_threshold: float,
                groups: np.ndarray = BY_KIND) -> pd.DataFrame:
    """Per-view detection tables (class_idx, score, x, y, w, h in the original image, view
    ``k`` at position k) -> one fused table with those columns, scores above
    ``score_threshold`` only (``groups``: see :func:`fuse`)."""
    both = pd.concat([f.assign(view=k) for k, f in enumerate(frames)], ignore_index=True)
    xywh = both[["x", "y", "w", "h"]].to_numpy(float)
    b, s, c = fuse(xywh, both["score"].to_numpy(float), both["class_idx"].to_numpy(np.int64),
                   both["view"].to_numpy(), n_views, groups)
    out = pd.DataFrame({"class_idx": c, "score": s, "x": b[:, 0], "y": b[:, 1], "w": b[:, 2],
                        "h": b[:, 3]})
    return out[out["score"] > score_threshold].reset_index(drop=True)


@dataclass(frozen=True)
class ViewFusion:
    """A tile detector with test-time augmentation. ``per_view`` decodes down to
    ``score_threshold`` (a view that misses a cell adds 0 to its mean). Called on tiles
    (B, 224, 224, 3) uint8 RGB, it fuses each tile's views and returns the decoder's arrays
    (boxes y1x1y2x2, scores, classes, valid counts) with fused scores above ``score_threshold``;
    :meth:`on_image` fuses whole-image views of any detection function instead (whole slides)."""

    per_view: TileFn
    views: int
    score_threshold: float

    def on_image(self, detect_image: Callable[[np.ndarray], pd.DataFrame],
                 image: np.ndarray) -> pd.DataFrame:
        """``detect_image`` (H, W, 3) -> (class_idx, score, x, y, w, h) run on every view of
        ``image`` and fused (scores above score_threshold)."""
        return self.on_image_variants(lambda view: {None: detect_image(view)}, image)[None]

    def on_image_variants(self, detect_image: Callable[[np.ndarray], dict],
                          image: np.ndarray) -> dict:
        """on_image for a ``detect_image`` that returns several variants of its detections
        ({key: frame}, e.g. with and without a second pass): each variant fused on its own."""
        frames: dict = {}
        for k in range(self.views):
            view = view_of(image, k)
            for key, d in detect_image(view).items():
                back = boxes_from_view(d[["x", "y", "w", "h"]].to_numpy(float), k,
                                       view.shape[1], view.shape[0])
                frames.setdefault(key, []).append(
                    d.assign(x=back[:, 0], y=back[:, 1], w=back[:, 2], h=back[:, 3]))
        return {key: fuse_frames(f, self.views, self.score_threshold) for key, f in frames.items()}

    def __call__(self, tiles: np.ndarray) -> tuple[np.ndarray, ...]:
        tiles = np.asarray(tiles)
        views = [view_of(tiles, k, axes=(1, 2)) for k in range(self.views)]
        runs = [self.per_view(view) for view in views]
        fused = []
        for t in range(len(tiles)):
            parts = [tile_view_boxes(run, t, k, views[k].shape[2], views[k].shape[1])
                     for k, run in enumerate(runs)]
            xywh, scores, classes, view = (np.concatenate(p) for p in zip(*parts))
            b, s, c = fuse(xywh, scores, classes, view, self.views, BY_CLASS)
            keep = s > self.score_threshold
            fused.append((b[keep], s[keep], c[keep]))
        return decoder_arrays(fused)


def tile_view_boxes(run: tuple[np.ndarray, ...], t: int, k: int, width: int, height: int
                    ) -> tuple[np.ndarray, ...]:
    """Tile ``t``'s detections in view ``k`` (a ``width`` x ``height`` px view; ``run``: the
    decoder's boxes y1x1y2x2, scores, classes, valid counts) -> (boxes x, y, w, h in the
    tile's own frame, scores, class indices, view indices)."""
    boxes, scores, classes, valid = run
    n = int(valid[t])
    b = boxes[t, :n].astype(float)  # y1, x1, y2, x2
    xywh = np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], 1)
    return (boxes_from_view(xywh, k, width, height), scores[t, :n].astype(float),
            classes[t, :n].astype(np.int64), np.full(n, k, np.int64))


def tta_mode(detect: TileFn) -> str:
    """The tta mode of a tile detector: a ViewFusion's by its number of views, else none."""
    views = detect.views if isinstance(detect, ViewFusion) else 1
    return next(mode for mode, n in VIEWS.items() if n == views)


def decoder_arrays(per_tile: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                   ) -> tuple[np.ndarray, ...]:
    """Per-tile (boxes x, y, w, h; scores; class indices) -> the decoder's padded arrays: boxes
    (B, N, 4) y1x1y2x2 float32, scores, classes (float32, as NMS gives them), valid counts."""
    width = max([len(s) for _, s, _ in per_tile] + [1])
    boxes = np.zeros((len(per_tile), width, 4), np.float32)
    scores = np.zeros((len(per_tile), width), np.float32)
    classes = np.zeros((len(per_tile), width), np.float32)
    for t, (b, s, c) in enumerate(per_tile):
        n = len(s)
        boxes[t, :n] = np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)
        scores[t, :n], classes[t, :n] = s, c
    return boxes, scores, classes, np.array([len(s) for _, s, _ in per_tile], np.int32)
