"""Losses of the two training phases (fact sheet §5), averaged per image.

The original summed the detector loss over the batch, so its learning rate depended on the
batch size; here every term is summed over one image's 14x14x6 anchors and then averaged over
the images of the batch. Otherwise the terms are the original's:

- x, y: squared error of sigmoid(tx), sigmoid(ty) against the cell offsets (responsible
  anchors only);
- w, h: squared error of the raw tw, th against ln(b / anchor) (no sqrt); or, with
  ``box_loss`` "giou" / "ciou", one IoU-based term in place of x, y, w, h
  (bloodcell.train.box_loss), weighted by lambda_coord like them;
- conf: squared error of sigmoid(tconf) against 1 at responsible anchors and, weighted by
  lambda_noobj, against 0 at every other anchor (``obj_loss="mse"``, the original's), or the
  binary cross-entropy of tconf against the same targets (``"bce"``). The squared error's
  gradient, 2 s (1 - s) (s - 1), vanishes once an anchor's score s has sunk near 0: an anchor
  that is rarely responsible (the small one fitted to the thrombocytes, 1-2 % of the boxes)
  learns the class of its objects but never scores them. Cross-entropy's gradient, s - 1, does
  not vanish. The target at a responsible anchor is 1 (``obj_target="one"``, the original's)
  or, as in YOLOv2, the IoU of the anchor's predicted box with its object (``"iou"``, held
  constant: no gradient flows into the box through it), so that a box's score also says how
  well it is placed and, at a cell, the better-placed box outranks the others;
- class: squared error of softmax(logits) against the one-hot class (responsible anchors),
  the original's form (``class_loss="mse"``), or softmax cross-entropy (``"ce"``), whose
  gradient does not vanish on confidently wrong classes, so classes separate in fewer epochs.
  An object whose class is unknown (an untyped white cell, label -1: its target one-hot is all
  zero) always trains x, y, w, h and objectness; its class term is left out
  (``untyped_wbc="ignore"``) or asks only that it be *some* white-cell type
  (``"any_type"``: cross-entropy of the summed probability of the five types, or for ``mse``
  the squared error of that sum against 1 plus the other classes' squared probabilities),
  so that no type is ever taught wrongly and the cell is not taken for another kind of cell.

Total = lambda_coord (x + y + w + h) + conf_obj + lambda_noobj conf_noobj + lambda_class class.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from bloodcell.common.param_defaults import param_default
from bloodcell.train.box_loss import box_iou, box_term


@dataclass(frozen=True)
class LossWeights:
    """The YOLOv2 term weights (defaults: the schema's train_detector.lambda_*, the original's
    5.0, 0.5, 2.5) and the class term's form: "mse", the original's and the library default, or
    "ce" (the pipeline's default preset sets train_detector.class_loss)."""

    coord: float = param_default("train_detector.lambda_coord")
    noobj: float = param_default("train_detector.lambda_noobj")
    cls: float = param_default("train_detector.lambda_class")
    class_loss: str = "mse"
    untyped_wbc: str = "ignore"  # "ignore" or "any_type" (see the module docstring)
    obj_loss: str = "mse"  # "mse" (the original's) or "bce" (see the module docstring)
    box_loss: str = "mse"  # "mse" (the original's), "giou" or "ciou" (bloodcell.train.box_loss)
    obj_target: str = "one"  # "one" (the original's) or "iou" (see the module docstring)


WBC_TYPES = 5
"""The first five classes are the white-cell types (bloodcell.common.classes.WBC_CLASSES)."""


def any_type_term(logits: tf.Tensor, class_loss: str) -> tf.Tensor:
    """Per-anchor class term (...,) that only asks for *some* white-cell type."""
    if class_loss == "ce":
        return tf.reduce_logsumexp(logits, -1) - tf.reduce_logsumexp(logits[..., :WBC_TYPES], -1)
    p = tf.nn.softmax(logits)
    return tf.square(1.0 - tf.reduce_sum(p[..., :WBC_TYPES], -1)) + tf.reduce_sum(
        tf.square(p[..., WBC_TYPES:]), -1)


def objectness_target(y_true: tf.Tensor, y_pred: tf.Tensor, obj_target: str,
                      anchors: tuple[tuple[float, float], ...]) -> tf.Tensor | float:
    """The objectness target at the responsible anchors: 1, or the IoU (...,) of each anchor's
    predicted box with its object, held constant (see the module docstring)."""
    if obj_target == "one":
        return 1.0
    if obj_target != "iou" or not anchors:
        raise ValueError(f"objectness target {obj_target!r} must be one or iou (iou needs the "
                         "anchors)")
    return tf.stop_gradient(box_iou(y_true, y_pred, anchors)["iou"])


def detector_terms(y_true: tf.Tensor, y_pred: tf.Tensor, class_loss: str = "mse",
                   untyped_wbc: str = "ignore", obj_loss: str = "mse", box_loss: str = "mse",
                   anchors: tuple[tuple[float, float], ...] = (),
                   obj_target: str = "one") -> dict[str, tf.Tensor]:
    """Per-image sums (B,) of each term, from (B, 14, 14, A, 15) targets and raw outputs
    (``anchors`` in grid-cell units: needed by the IoU box losses and ``obj_target="iou"``)."""
    y_pred = tf.cast(y_pred, tf.float32)
    obj = y_true[..., 14]
    noobj = 1.0 - obj
    typed = tf.reduce_sum(y_true[..., :10], -1)  # 1 where the object's class is known, else 0
    box = box_term(y_true, y_pred, box_loss, anchors)
    target = objectness_target(y_true, y_pred, obj_target, anchors)
    if obj_loss == "bce":  # -t ln s - (1 - t) ln(1 - s) and -ln(1 - s), s = sigmoid(tconf)
        up, down = tf.nn.softplus(-y_pred[..., 14]), tf.nn.softplus(y_pred[..., 14])
        is_obj, not_obj = target * up + (1.0 - target) * down, down
    else:
        is_obj = tf.square(tf.sigmoid(y_pred[..., 14]) - target)
        not_obj = tf.square(tf.sigmoid(y_pred[..., 14]))
    if class_loss == "ce":
        cls = tf.nn.softmax_cross_entropy_with_logits(labels=y_true[..., :10],
                                                      logits=y_pred[..., :10])
    else:
        cls = tf.reduce_sum(tf.square(tf.nn.softmax(y_pred[..., :10]) - y_true[..., :10]), -1)

    untyped = (any_type_term(y_pred[..., :10], class_loss) if untyped_wbc == "any_type"
               else tf.zeros_like(cls))

    def per_image(t: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(t, axis=[1, 2, 3])

    return {
        "coord": per_image(obj * box),
        "obj": per_image(obj * is_obj),
        "noobj": per_image(noobj * not_obj),
        "class": per_image(obj * (typed * cls + (1.0 - typed) * untyped)),
    }


def detector_loss(y_true: tf.Tensor, y_pred: tf.Tensor, w: LossWeights,
                  anchors: tuple[tuple[float, float], ...] = ()) -> tf.Tensor:
    """Scalar: the weighted YOLOv2 loss, summed per image and averaged over the batch."""
    t = detector_terms(y_true, y_pred, w.class_loss, w.untyped_wbc, w.obj_loss, w.box_loss,
                       anchors, w.obj_target)
    total = w.coord * t["coord"] + t["obj"] + w.noobj * t["noobj"] + w.cls * t["class"]
    return tf.reduce_mean(total)


def classifier_loss(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Scalar: sigmoid cross-entropy of (B, 10) logits against the multi-hot labels, mean."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits))
