"""The detector loss's box term: the original's squared errors against GIoU and CIoU."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bloodcell.train.box_loss import box_term
from bloodcell.train.loss import LossWeights, detector_loss, detector_terms
from bloodcell.train.targets import detector_targets

ANCHORS = ((0.75, 0.75), (5.5, 5.5))  # a thrombocyte's anchor and a white cell's (grid cells)


def targets(boxes: list[list[float]]) -> np.ndarray:
    """(1, 14, 14, 2, 15) targets for (x, y, w, h) px boxes of class 6."""
    return detector_targets(tf.constant(boxes, tf.float32), tf.constant([6] * len(boxes)),
                            ANCHORS, 0.7).numpy()[None]


def output_for(t: np.ndarray, shift_px: float = 0.0) -> np.ndarray:
    """Raw outputs decoding to the target boxes, centres moved right by ``shift_px``."""
    raw = np.zeros(t.shape, np.float32)
    off = np.clip(t[..., 10] + shift_px / 16.0, 1e-4, 1 - 1e-4)
    raw[..., 10] = np.log(off / (1 - off))
    off_y = np.clip(t[..., 11], 1e-4, 1 - 1e-4)
    raw[..., 11] = np.log(off_y / (1 - off_y))
    raw[..., 12:14] = t[..., 12:14]
    return raw


def box_cost(t: np.ndarray, raw: np.ndarray, kind: str) -> float:
    return float(tf.reduce_sum(t[..., 14] * box_term(tf.constant(t), tf.constant(raw), kind,
                                                     ANCHORS)))


@pytest.mark.parametrize("kind", ["mse", "giou", "ciou"])
def test_a_box_placed_exactly_costs_nothing(kind):
    t = targets([[100, 100, 12, 12], [20, 30, 88, 88]])
    assert box_cost(t, output_for(t), kind) < 1e-4


def test_iou_losses_weigh_a_small_box_misplaced_by_3_px_more_than_a_large_one():
    """The squared error charges the same for a 3 px shift of a 12 px thrombocyte and of an
    88 px white cell, though it costs the thrombocyte half its IoU; the IoU losses do not."""
    small, large = targets([[100, 100, 12, 12]]), targets([[100, 100, 88, 88]])
    cost = {k: (box_cost(small, output_for(small, 3.0), k),
                box_cost(large, output_for(large, 3.0), k)) for k in ("mse", "giou", "ciou")}
    assert cost["mse"][0] == pytest.approx(cost["mse"][1], rel=1e-3)
    for kind in ("giou", "ciou"):
        assert cost[kind][0] > 0.35  # IoU of the shifted 12 px box: 9 / 15 = 0.6
        assert cost[kind][0] > 5 * cost[kind][1]


@pytest.mark.parametrize("kind", ["giou", "ciou"])
def test_iou_losses_have_finite_gradients_everywhere_and_pull_apart_boxes_together(kind):
    t = tf.constant(targets([[100, 100, 12, 12]]))
    raw = np.asarray(output_for(t.numpy(), 0.0))
    raw[..., 12:14] = np.where(t[..., 14:15] > 0, 40.0, -40.0)  # absurd sizes: exp is capped
    raw = tf.constant(raw)
    with tf.GradientTape() as tape:
        tape.watch(raw)
        loss = detector_loss(t, raw, LossWeights(box_loss=kind), ANCHORS)
    grad = tape.gradient(loss, raw)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad.numpy()))

    apart = np.asarray(output_for(t.numpy(), 0.0))  # a box that misses its object entirely
    apart[..., 10] = np.where(t[..., 14] > 0, -8.0, apart[..., 10])
    apart = tf.constant(apart)
    with tf.GradientTape() as tape:
        tape.watch(apart)
        coord = detector_terms(t, apart, box_loss=kind, anchors=ANCHORS)["coord"]
    g = tape.gradient(coord, apart)[..., 10]
    assert float(tf.reduce_min(g)) < -1e-4  # no overlap, still pulled towards the object


def test_only_responsible_anchors_pay_the_box_term_and_unknown_forms_are_refused():
    t = targets([[100, 100, 12, 12]])
    raw = output_for(t, 0.0)
    raw[..., 10:14] += np.where(t[..., 14:15] > 0, 0.0, 3.0)  # junk at the other anchors
    assert float(detector_terms(t, raw, box_loss="giou", anchors=ANCHORS)["coord"][0]) < 1e-4
    with pytest.raises(ValueError, match="anchors"):
        box_term(tf.constant(t), tf.constant(raw), "giou")
    with pytest.raises(ValueError, match="box loss"):
        box_term(tf.constant(t), tf.constant(raw), "l1", ANCHORS)
