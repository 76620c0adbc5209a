"""Box term of the detector loss, per anchor: the original's squared errors or an IoU loss.

Targets and outputs follow bloodcell.train.targets: at a responsible anchor the target holds
the box centre's offset inside its cell (x_off, y_off in 0..1, grid-cell units) and
ln(box / anchor) for w and h; the raw outputs are tx, ty, tw, th with centre = sigmoid(txy)
and size = anchor * exp(twh) (bloodcell.model.decode). Both boxes sit in the same cell, so
their IoU is computed in that cell's frame, in grid-cell units (16 px).

- ``"mse"`` (the original's): squared error of sigmoid(tx), sigmoid(ty) against the offsets
  plus squared error of tw, th against ln(box / anchor). A centre off by 3 px costs the same
  on a 13 px thrombocyte as on a 90 px white cell, though it halves the thrombocyte's IoU.
- ``"giou"``: 1 - GIoU (Rezatofighi et al. 2019): scale-free, so small boxes are placed as
  carefully as large ones, and it still has a gradient when the boxes do not overlap.
- ``"ciou"``: 1 - IoU + centre distance^2 / enclosing diagonal^2 + alpha v (Zheng et al.
  2020), v the aspect-ratio mismatch and alpha = v / (1 - IoU + v), held constant.

Every form is finite at every anchor (tw, th are capped at 10 before exp, as in decoding);
the caller keeps the responsible anchors only.
"""

from __future__ import annotations

import math

import tensorflow as tf

BOX_LOSSES = ("mse", "giou", "ciou")
EPS = 1e-7


def squared_error(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """(...,) the original's x, y, w, h squared errors, summed."""
    xy = tf.reduce_sum(tf.square(tf.sigmoid(y_pred[..., 10:12]) - y_true[..., 10:12]), -1)
    wh = tf.reduce_sum(tf.square(y_pred[..., 12:14] - y_true[..., 12:14]), -1)
    return xy + wh


def cell_boxes(t: tf.Tensor, anchors: tf.Tensor, raw: bool) -> tuple[tf.Tensor, ...]:
    """Centre x, y and w, h (grid-cell units) of targets (raw False) or outputs (raw True)
    (..., A, 15) against anchors (A, 2)."""
    xy = tf.sigmoid(t[..., 10:12]) if raw else t[..., 10:12]
    wh = anchors * tf.exp(tf.minimum(t[..., 12:14], 10.0))
    return xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1]


def box_iou(y_true: tf.Tensor, y_pred: tf.Tensor,
            anchors: tuple[tuple[float, float], ...]) -> dict[str, tf.Tensor]:
    """IoU between target and predicted boxes at every anchor, (...,), with the pieces the
    IoU losses reuse: the boxes (centre x, y and w, h in grid-cell units), the union and the
    enclosing box's width and height."""
    anc = tf.constant(anchors, tf.float32)
    tx, ty, tw, th = cell_boxes(y_true, anc, raw=False)
    px, py, pw, ph = cell_boxes(y_pred, anc, raw=True)
    ix = tf.maximum(tf.minimum(tx + tw / 2, px + pw / 2) - tf.maximum(tx - tw / 2, px - pw / 2),
                    0.0)
    iy = tf.maximum(tf.minimum(ty + th / 2, py + ph / 2) - tf.maximum(ty - th / 2, py - ph / 2),
                    0.0)
    inter = ix * iy
    union = tw * th + pw * ph - inter + EPS
    return {
        "iou": inter / union, "union": union, "true": (tx, ty, tw, th), "pred": (px, py, pw, ph),
        "cw": tf.maximum(tx + tw / 2, px + pw / 2) - tf.minimum(tx - tw / 2, px - pw / 2),
        "ch": tf.maximum(ty + th / 2, py + ph / 2) - tf.minimum(ty - th / 2, py - ph / 2),
    }


def iou_loss(y_true: tf.Tensor, y_pred: tf.Tensor, anchors: tuple[tuple[float, float], ...],
             kind: str) -> tf.Tensor:
    """(...,) 1 - GIoU or the CIoU loss between target and predicted boxes at every anchor."""
    g = box_iou(y_true, y_pred, anchors)
    iou, cw, ch = g["iou"], g["cw"], g["ch"]
    if kind == "giou":
        enclosing = cw * ch + EPS
        return 1.0 - iou + (enclosing - g["union"]) / enclosing
    (tx, ty, tw, th), (px, py, pw, ph) = g["true"], g["pred"]
    centre = tf.square(px - tx) + tf.square(py - ty)
    diagonal = tf.square(cw) + tf.square(ch) + EPS
    v = (4.0 / math.pi ** 2) * tf.square(tf.atan(tw / (th + EPS)) - tf.atan(pw / (ph + EPS)))
    alpha = tf.stop_gradient(v / (1.0 - iou + v + EPS))
    return 1.0 - iou + centre / diagonal + alpha * v


def box_term(y_true: tf.Tensor, y_pred: tf.Tensor, kind: str = "mse",
             anchors: tuple[tuple[float, float], ...] = ()) -> tf.Tensor:
    """(...,) the box term of ``kind`` (one of BOX_LOSSES) at every anchor; the IoU forms need
    the anchors (grid-cell units) the outputs are relative to."""
    if kind == "mse":
        return squared_error(y_true, y_pred)
    if kind not in BOX_LOSSES or not anchors:
        raise ValueError(f"box loss {kind!r} needs one of {BOX_LOSSES} and the anchors")
    return iou_loss(y_true, y_pred, anchors, kind)
