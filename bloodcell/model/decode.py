"""Detector outputs -> boxes: decoding (fact sheet §3.4) and vectorised NMS.

Per anchor: class probabilities = softmax(logits), objectness = sigmoid(tconf), centre =
(cell + sigmoid(txy)) * 16 px, size = anchor * exp(twh) * 16 px. Each anchor box keeps its
best class only (the original's "one class per box") with score = probability x objectness.
Boxes scoring at most ``score_threshold`` are dropped, then greedy per-class NMS at
``nms_iou`` runs on all 1,176 boxes of every tile at once (tf.image.combined_non_max_suppression,
no Python loop). Boxes are continuous pixels, top-left origin, (x, y, w, h), clipped to the tile.
The original used one constant for both thresholds (0.2 and 0.7); here they are separate.

Grouped scoring (``DecodeConfig.groups``, used when detections are scored against a dataset's
own classes through a class map): each model class belongs to a group (or to none, -1); a box
takes the group with the largest summed probability, score = that sum x objectness, and keeps
the most probable class of that group as its class. A white cell whose type the model is unsure
of (probability spread over five types) then still scores as a white cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from bloodcell.common.param_defaults import param_default
from bloodcell.common.tile import CELL_PX, GRID, TILE_PX


@dataclass(frozen=True)
class DecodeConfig:
    """Post-processing params: score threshold, NMS IoU (defaults: the schema's decode.*), most
    boxes kept per tile."""

    score_threshold: float = param_default("decode.score_threshold")
    nms_iou: float = param_default("decode.nms_iou")
    max_boxes: int = 300
    groups: tuple[int, ...] | None = None
    """Group of each of the 10 classes (-1: none) for grouped scoring; None: best class."""
    tta: str = param_default("decode.tta")
    """Test-time augmentation of detection (bloodcell.model.tta; runtime.tile_function applies
    it): none, flips or dihedral. Training's validation never uses it."""


def best_class(probs: tf.Tensor, groups: tuple[int, ...] | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(class, score) per box from class probabilities x objectness (..., 10): the best class,
    or with ``groups`` the best class of the group with the largest summed score."""
    if groups is None:
        return tf.argmax(probs, -1), tf.reduce_max(probs, -1)
    member = tf.one_hot(groups, max(groups) + 1, dtype=probs.dtype)  # (10, K); -1 -> zeros
    group_scores = tf.tensordot(probs, member, axes=1)  # (..., K)
    best = tf.argmax(group_scores, -1)
    in_best = tf.gather(tf.transpose(member), best)  # (..., 10): classes of the best group
    return tf.argmax(probs * in_best - (1.0 - in_best), -1), tf.reduce_max(group_scores, -1)


def decode_boxes(raw: tf.Tensor, anchors: tuple[tuple[float, float], ...],
                 groups: tuple[int, ...] | None = None
                 ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Raw (B, 14, 14, A, 15) -> boxes (B, N, 4) as y1, x1, y2, x2 px, best class (B, N) and
    its score (B, N), N = 14 * 14 * A, in row, column, anchor order (``groups``: see
    :func:`best_class`)."""
    raw = tf.cast(raw, tf.float32)
    batch = tf.shape(raw)[0]
    grid = tf.range(GRID, dtype=tf.float32)
    col = tf.reshape(grid, (1, 1, GRID, 1))
    row = tf.reshape(grid, (1, GRID, 1, 1))
    anc = tf.constant(anchors, tf.float32)
    cx = (col + tf.sigmoid(raw[..., 10])) * CELL_PX
    cy = (row + tf.sigmoid(raw[..., 11])) * CELL_PX
    w = anc[:, 0] * tf.exp(tf.minimum(raw[..., 12], 10.0)) * CELL_PX
    h = anc[:, 1] * tf.exp(tf.minimum(raw[..., 13], 10.0)) * CELL_PX
    boxes = tf.clip_by_value(tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1),
                             0.0, TILE_PX)
    probs = tf.nn.softmax(raw[..., :10]) * tf.sigmoid(raw[..., 14:15])
    n = GRID * GRID * len(anchors)
    classes, scores = best_class(probs, groups)
    return (tf.reshape(boxes, (batch, n, 4)), tf.reshape(classes, (batch, n)),
            tf.reshape(scores, (batch, n)))


def nms(boxes: tf.Tensor, classes: tf.Tensor, scores: tf.Tensor, cfg: DecodeConfig
        ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-class NMS over a batch: boxes (B, N, 4 y1x1y2x2), one class and score per box.
    Returns padded boxes (B, K, 4), scores (B, K), classes (B, K) and valid counts (B,)."""
    per_class = tf.one_hot(classes, 10) * scores[..., None]
    out = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], per_class, cfg.max_boxes, cfg.max_boxes,
        iou_threshold=cfg.nms_iou, score_threshold=cfg.score_threshold, clip_boxes=False)
    return out.nmsed_boxes, out.nmsed_scores, tf.cast(out.nmsed_classes, tf.int32), \
        out.valid_detections


def detect_batch(raw: tf.Tensor, anchors: tuple[tuple[float, float], ...], cfg: DecodeConfig
                 ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Raw detector outputs -> NMS results (see :func:`nms`)."""
    boxes, classes, scores = decode_boxes(raw, anchors, cfg.groups)
    return nms(boxes, classes, scores, cfg)


def to_frame(image_ids: list[str], boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
             valid: np.ndarray, offsets: np.ndarray | None = None) -> pd.DataFrame:
    """NMS results of a batch -> detections table (image_id, class_idx, score, x, y, w, h px,
    top-left). ``offsets`` (B, 2: x, y px) shifts tile boxes into slide coordinates."""
    rows = []
    for i, iid in enumerate(image_ids):
        k = int(valid[i])
        b = boxes[i, :k].astype(np.float64)
        dx, dy = (offsets[i] if offsets is not None else (0.0, 0.0))
        rows.append(pd.DataFrame({
            "image_id": iid, "class_idx": classes[i, :k].astype(np.int64),
            "score": scores[i, :k].astype(np.float64),
            "x": b[:, 1] + dx, "y": b[:, 0] + dy, "w": b[:, 3] - b[:, 1], "h": b[:, 2] - b[:, 0],
        }))
    return pd.concat(rows, ignore_index=True) if rows else empty_detections()


def empty_detections() -> pd.DataFrame:
    """A detections table with no rows and the right columns."""
    return pd.DataFrame({"image_id": pd.Series(dtype=str), "class_idx": pd.Series(dtype=int),
                         "score": pd.Series(dtype=float), "x": pd.Series(dtype=float),
                         "y": pd.Series(dtype=float), "w": pd.Series(dtype=float),
                         "h": pd.Series(dtype=float)})
