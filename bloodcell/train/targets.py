"""Ground truth -> detector targets (fact sheet §4), vectorised in TensorFlow for tf.data.

Grid: 14x14 cells of 16 px over a 224x224 image; 6 anchors whose sizes are in grid units.
Boxes come in as (x, y, w, h) pixels, top-left origin. The target is (14, 14, 6, 15), zero
except at responsible anchors, where it holds [one-hot(10), x_off, y_off, ln(bw / anchor_w),
ln(bh / anchor_h), 1]: x_off, y_off are the box centre's offset inside its cell (0..1).

Responsibility: every anchor whose centre-aligned IoU with the box exceeds ``match_iou`` (the
original: 0.7), else the single best anchor. Widths and heights below 1 px are raised to 1 px
so that ln() stays finite (the original could take ln(0)). When two objects claim the same
cell and anchor, the later object in the label order wins, as in the original, but
deterministically (no scatter race). An object of class -1 (an untyped white cell,
bloodcell.common.classes.UNTYPED_WBC_INDEX) gets an all-zero class one-hot: the loss then skips its
class term, and the classifier's multi-hot label leaves it out.
"""

from __future__ import annotations

import tensorflow as tf

from bloodcell.common.classes import N_CLASSES
from bloodcell.common.tile import CELL_PX, GRID


def anchor_iou(wh: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Centre-aligned IoU of boxes (n, 2) and anchors (a, 2), same units -> (n, a)."""
    inter = tf.minimum(wh[:, None, 0], anchors[None, :, 0]) * tf.minimum(
        wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def responsible(iou: tf.Tensor, match_iou: float) -> tf.Tensor:
    """Bool (n, a): anchors with IoU > match_iou, or the best anchor where none is."""
    above = iou > match_iou
    best = tf.one_hot(tf.argmax(iou, axis=1), tf.shape(iou)[1], on_value=True, off_value=False)
    return tf.where(tf.reduce_any(above, axis=1, keepdims=True), above, best)


def detector_targets(boxes: tf.Tensor, classes: tf.Tensor,
                     anchors: tuple[tuple[float, float], ...], match_iou: float) -> tf.Tensor:
    """(14, 14, A, 15) float32 targets from boxes (n, 4: x, y, w, h px) and classes (n,)."""
    anc = tf.constant(anchors, tf.float32)
    n_anchors = len(anchors)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    wh = tf.maximum(boxes[:, 2:4], 1.0) / CELL_PX
    centre = (boxes[:, 0:2] + boxes[:, 2:4] / 2.0) / CELL_PX
    cell = tf.clip_by_value(tf.floor(centre), 0.0, GRID - 1.0)
    offset = tf.clip_by_value(centre - cell, 0.0, 1.0)
    pairs = tf.where(responsible(anchor_iou(wh, anc), match_iou))  # (m, 2): object, anchor
    obj, a = pairs[:, 0], pairs[:, 1]
    col = tf.cast(tf.gather(cell[:, 0], obj), tf.int64)
    row = tf.cast(tf.gather(cell[:, 1], obj), tf.int64)
    log_wh = tf.math.log(tf.gather(wh, obj) / tf.gather(anc, a))
    vec = tf.concat([
        tf.one_hot(tf.gather(tf.cast(classes, tf.int32), obj), N_CLASSES),
        tf.gather(offset, obj), log_wh, tf.ones_like(log_wh[:, :1]),
    ], axis=1)
    slot = (row * GRID + col) * n_anchors + a
    order = tf.argsort(slot * 100000 + obj, stable=True)  # by slot, then object order
    slot, vec = tf.gather(slot, order), tf.gather(vec, order)
    # the last object per slot wins (an empty slot list stays empty)
    last = tf.concat([slot[1:] != slot[:-1], tf.ones_like(slot[:1], tf.bool)], axis=0)
    flat = tf.scatter_nd(tf.boolean_mask(slot, last)[:, None], tf.boolean_mask(vec, last),
                         (GRID * GRID * n_anchors, N_CLASSES + 5))
    return tf.reshape(flat, (GRID, GRID, n_anchors, N_CLASSES + 5))


def multi_hot(classes: tf.Tensor) -> tf.Tensor:
    """(10,) float32: 1 for every class present among ``classes``, the classifier's label."""
    hot = tf.one_hot(tf.cast(classes, tf.int32), N_CLASSES)
    return tf.reduce_max(tf.concat([hot, tf.zeros((1, N_CLASSES))], axis=0), axis=0)
