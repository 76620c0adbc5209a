"""Metrics on hand-computed fixtures (pure numpy / pandas / pycocotools, no TensorFlow)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from pycocotools.cocoeval import COCOeval

from bloodcell.common.boxes import box_iou
from bloodcell.common.cell_counts import parasitemia, wbc_differential
from bloodcell.common.classes import CLASS_NAMES
from bloodcell.evaluate.metrics import (
    _coco_pair,
    coco_map50,
    coco_metrics,
    count_errors,
    exact_match_accuracy,
    original_map,
    rbc_metrics,
    voc_ap,
)

EOS, BASO, THR, INF, RBC = 0, 1, 6, 8, 9
SIZES = {i: (224, 224) for i in ("a", "b", "c", "d")}


def boxes(*rows: tuple) -> pd.DataFrame:
    """(image_id, class_idx, x, y, w, h) rows -> GT frame."""
    return pd.DataFrame(rows, columns=["image_id", "class_idx", "x", "y", "w", "h"])


def dets(*rows: tuple) -> pd.DataFrame:
    """(image_id, class_idx, x, y, w, h, score) rows -> detection frame."""
    return pd.DataFrame(rows, columns=["image_id", "class_idx", "x", "y", "w", "h", "score"])


def coco(gt: pd.DataFrame, det: pd.DataFrame, ids=("a", "b")) -> dict:
    return coco_metrics(gt, det, list(ids), SIZES)


# Two boxes per class, so the last cumulative precision is exactly 1.0 (pycocotools divides by
# tp + fp + eps, and 1 / (1 + eps) is 0.9999999999999998, 2 / (2 + eps) rounds to 2 / 2).
GT = boxes(("a", EOS, 10, 10, 50, 50), ("b", EOS, 100, 100, 60, 40),
           ("a", THR, 120, 20, 12, 12), ("b", THR, 5, 5, 10, 10))


def test_box_iou_is_continuous() -> None:
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 5], [10, 0, 10, 10]])
    assert iou.tolist() == [[1.0, 0.5, 0.0]]


def test_voc_ap_hand_values() -> None:
    assert voc_ap([0.5, 1.0], [1.0, 1.0]) == 1.0
    assert voc_ap([0.0, 1.0], [0.0, 0.5]) == 0.5  # FP first, then the only TP
    assert voc_ap([0.5], [1.0]) == 0.5  # half the GT found, none after
    assert voc_ap([0.0], [0.0]) == 0.0
    assert voc_ap([], []) == 0.0
    # envelope: recall .5 at precision 1, then recall 1 at 2/3 -> .5 * 1 + .5 * 2/3
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 1 / 3, abs=1e-15)


def test_perfect_detections_give_exactly_one() -> None:
    det = dets(*[(*r, 0.9 - 0.1 * n) for n, r in enumerate(GT.itertuples(index=False))])
    m = coco(GT, det)
    assert m["map50"] == 1.0 and m["map50_95"] == 1.0 and m["map30"] == 1.0
    assert m["per_class_ap50"]["Eosinophil"] == 1.0 and m["per_class_ap50"]["Thrombocytes"] == 1.0
    assert m["per_class_ap50"]["Basophil"] is None  # no GT
    assert set(m["pr_curves"]) == {"Eosinophil", "Thrombocytes"}
    curve = m["pr_curves"]["Eosinophil"]
    assert len(curve) == 101 and curve[0] == (0.0, 1.0) and curve[-1] == (1.0, 1.0)
    assert original_map(GT, det) == {"map": 100.0, "per_class": {
        n: (100.0 if n in ("Eosinophil", "Thrombocytes") else None) for n in CLASS_NAMES}}


def test_false_positive_ranked_first_gives_exactly_half() -> None:
    # One GT; a FP (score .9, no overlap) then the TP (.8): precision [0, 1/2], recall [0, 1].
    # The envelope is 1/2 at every recall point: COCO (101 points) and VOC both give 0.5, and
    # 1 / (2 + eps) rounds to exactly 0.5.
    gt = boxes(("a", EOS, 10, 10, 50, 50))
    det = dets(("a", EOS, 150, 150, 40, 40, 0.9), ("a", EOS, 10, 10, 50, 50, 0.8))
    m = coco(gt, det)
    assert m["map50"] == 0.5 and m["map30"] == 0.5 and m["map50_95"] == 0.5
    assert original_map(gt, det)["map"] == 50.0


def test_one_perfect_class_and_one_missed_class_average_to_half() -> None:
    det = dets(("a", EOS, 10, 10, 50, 50, 0.9), ("b", EOS, 100, 100, 60, 40, 0.8),
               ("a", THR, 180, 180, 12, 12, 0.7), ("b", THR, 150, 5, 10, 10, 0.6))
    m = coco(GT, det)
    assert m["per_class_ap50"]["Eosinophil"] == 1.0
    assert m["per_class_ap50"]["Thrombocytes"] == 0.0
    assert m["map50"] == 0.5 and m["map50_95"] == 0.5
    assert original_map(GT, det)["map"] == 50.0


def test_half_recall_differs_between_101_point_and_all_point() -> None:
    # Two GT, only one found (precision 1): VOC all-point gives 0.5 exactly, but COCO fills
    # precision 1 at the 51 recall points 0.00..0.50 and 0 at the other 50: 51/101 (x 1/(1+eps)).
    gt = boxes(("a", EOS, 10, 10, 50, 50), ("b", EOS, 100, 100, 60, 40))
    det = dets(("a", EOS, 10, 10, 50, 50, 0.9))
    assert coco(gt, det)["map50"] == pytest.approx(51 / 101, abs=1e-12)
    assert original_map(gt, det)["map"] == 50.0


def test_all_wrong_detections_give_exactly_zero() -> None:
    # Right boxes with the wrong class, and right classes at the wrong places.
    det = dets(("a", BASO, 10, 10, 50, 50, 0.9), ("b", BASO, 100, 100, 60, 40, 0.9),
               ("a", THR, 180, 180, 12, 12, 0.7), ("b", THR, 150, 5, 10, 10, 0.6),
               ("a", EOS, 120, 20, 12, 12, 0.5))
    m = coco(GT, det)
    assert m["map50"] == 0.0 and m["map50_95"] == 0.0 and m["map30"] == 0.0
    assert m["per_class_ap50"]["Basophil"] is None
    assert original_map(GT, det)["map"] == 0.0


def test_iou_between_thresholds_counts_at_03_only() -> None:
    gt = boxes(("a", EOS, 0, 0, 10, 10), ("b", EOS, 0, 0, 10, 10))
    det = dets(("a", EOS, 0, 0, 10, 4, 0.9), ("b", EOS, 0, 0, 10, 4, 0.8))  # IoU 0.4
    m = coco(gt, det)
    assert m["map50"] == 0.0 and m["map30"] == 1.0
    assert original_map(gt, det)["map"] == 100.0
    assert original_map(gt, det, iou_threshold=0.5)["map"] == 0.0


def test_original_map_ignores_false_positives_in_images_without_the_class() -> None:
    # Image b has no Eosinophil GT, so its Eosinophil FP (ranked first) is invisible to the
    # original's method but costs COCO half the AP of the class.
    gt = boxes(("a", EOS, 10, 10, 50, 50), ("b", THR, 5, 5, 10, 10))
    det = dets(("a", EOS, 10, 10, 50, 50, 0.9), ("b", EOS, 100, 100, 50, 50, 0.95),
               ("b", THR, 5, 5, 10, 10, 0.8))
    orig = original_map(gt, det)
    assert orig["per_class"]["Eosinophil"] == 100.0 and orig["map"] == 100.0
    m = coco(gt, det)
    assert m["per_class_ap50"]["Eosinophil"] == 0.5
    assert m["map50"] == pytest.approx(0.75, abs=1e-15)  # Thrombocytes 1/(1+eps)


def test_original_map_lets_several_gts_mark_one_prediction() -> None:
    # Two overlapping GTs both pick the same best prediction: one TP of two GT, the other
    # prediction is FP -> recall 1/2 at precision 1, then 1/2: AP 50.
    gt = boxes(("a", EOS, 0, 0, 10, 10), ("a", EOS, 2, 0, 10, 10))
    det = dets(("a", EOS, 1, 0, 10, 10, 0.9), ("a", EOS, 100, 100, 10, 10, 0.8))
    assert original_map(gt, det)["per_class"]["Eosinophil"] == 50.0


def test_empty_detections() -> None:
    empty = dets()
    m = coco(GT, empty)
    assert m["map50"] == 0.0 and m["map50_95"] == 0.0 and m["map30"] == 0.0
    assert m["per_class_ap50"]["Eosinophil"] == 0.0
    assert all(p == 0.0 for _, p in m["pr_curves"]["Thrombocytes"])
    assert original_map(GT, empty)["map"] == 0.0
    assert coco_metrics(GT, pd.DataFrame(), ["a", "b"], SIZES)["map50"] == 0.0
    r = rbc_metrics(GT, empty, ["a", "b"])
    assert r["cell"]["precision"] == 0.0 and r["image"]["f1"] == 0.0 and r["spurious"] == 0
    assert exact_match_accuracy(GT, empty, ["a", "b", "c"]) == pytest.approx(1 / 3)


def test_unknown_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in image_ids"):
        coco(GT, dets(), ids=("a",))
    with pytest.raises(ValueError, match="image_sizes"):
        coco_metrics(GT, dets(), ["a", "b"], {"a": (224, 224)})


def test_rbc_metrics_hand_case() -> None:
    gt = boxes(("a", INF, 0, 0, 10, 10), ("a", INF, 20, 0, 10, 10),    # second one missed
               ("a", RBC, 40, 0, 10, 10), ("a", RBC, 60, 0, 10, 10),
               ("a", EOS, 100, 0, 50, 50),                            # not an RBC: ignored
               ("b", RBC, 0, 0, 10, 10), ("c", INF, 0, 0, 10, 10))
    det = dets(("a", INF, 0, 0, 10, 10, 0.9),      # TP
               ("a", RBC, 40, 0, 10, 5, 0.8),      # TN (IoU exactly 0.5 counts)
               ("a", INF, 60, 0, 10, 10, 0.7),     # FP
               ("a", RBC, 200, 200, 10, 10, 0.6),  # spurious
               ("a", RBC, 0, 0, 10, 10, 0.5),      # spurious: its GT is already taken
               ("a", EOS, 100, 0, 50, 50, 0.9),    # ignored
               ("b", RBC, 0, 0, 10, 10, 0.9),      # TN
               ("c", RBC, 0, 0, 10, 10, 0.9),      # FN
               ("d", INF, 50, 50, 10, 10, 0.9))    # spurious
    r = rbc_metrics(gt, det, ["a", "b", "c", "d"])
    assert r["cells"] == {"infected": {"infected": 1, "healthy": 1, "missed": 1},
                          "healthy": {"infected": 1, "healthy": 2, "missed": 0}}
    assert r["spurious"] == 3
    assert r["cell"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 2, "precision": 0.5, "recall": 0.5,
                         "f1": 0.5, "specificity": pytest.approx(2 / 3)}
    # images: a TP, b TN, c FN (no Infected detection), d FP
    assert r["image"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1, "precision": 0.5,
                          "recall": 0.5, "f1": 0.5}
    assert rbc_metrics(gt, det, ["a", "b", "c", "d"], iou_threshold=0.6)["cells"]["healthy"] == {
        "infected": 1, "healthy": 1, "missed": 1}


def test_exact_match_accuracy() -> None:
    gt = boxes(("a", EOS, 0, 0, 10, 10), ("a", RBC, 0, 0, 5, 5), ("b", EOS, 0, 0, 10, 10))
    det = dets(("a", EOS, 50, 50, 10, 10, 0.9), ("a", RBC, 0, 0, 5, 5, 0.8),  # a: same classes
               ("a", RBC, 9, 9, 5, 5, 0.7),
               ("b", EOS, 0, 0, 10, 10, 0.9), ("b", THR, 0, 0, 5, 5, 0.3))   # b: extra class
    ids = ["a", "b", "c"]  # c: nothing in either -> match
    assert exact_match_accuracy(gt, det, ids) == pytest.approx(2 / 3)
    assert exact_match_accuracy(gt, det, ids, score_threshold=0.5) == 1.0
    assert exact_match_accuracy(gt, det, ids, score_threshold=0.95) == pytest.approx(1 / 3)
    assert exact_match_accuracy(boxes(), dets(), []) == 0.0


def test_count_errors() -> None:
    gt = boxes(("a", RBC, 0, 0, 5, 5), ("a", RBC, 9, 9, 5, 5), ("b", RBC, 0, 0, 5, 5),
               ("b", EOS, 0, 0, 10, 10))
    det = dets(("a", RBC, 0, 0, 5, 5, 0.9), ("b", RBC, 0, 0, 5, 5, 0.9),
               ("b", RBC, 0, 0, 5, 5, 0.9), ("c", RBC, 0, 0, 5, 5, 0.9),
               ("c", THR, 0, 0, 5, 5, 0.9))
    c = count_errors(gt, det, ["a", "b", "c"])
    # per image |nGT - nPred| for `_`: a 1, b 1, c 1 -> sum 3 over 3 GT
    assert c["_"] == {"gt_total": 3, "pred_total": 4, "mae_per_image": 1.0,
                      "mean_error_in_count": 1.0}
    assert c["Eosinophil"] == {"gt_total": 1, "pred_total": 0, "mae_per_image": 1 / 3,
                               "mean_error_in_count": 1.0}
    assert c["Thrombocytes"]["mean_error_in_count"] is None
    assert c["Thrombocytes"]["pred_total"] == 1
    assert c["Basophil"] == {"gt_total": 0, "pred_total": 0, "mae_per_image": 0.0,
                             "mean_error_in_count": None}


def test_parasitemia_and_wbc_differential() -> None:
    assert parasitemia({"Infected": 5, "_": 15, "Eosinophil": 3}) == 25.0
    assert parasitemia({"_": 10}) == 0.0
    assert parasitemia({"Eosinophil": 2}) is None
    diff = wbc_differential({"Eosinophil": 1, "Neutrophil": 2, "Lymphocytes": 1,
                             "partialWBC": 7, "_": 100})
    assert diff == {"Eosinophil": 25.0, "Basophil": 0.0, "Neutrophil": 50.0,
                    "Lymphocytes": 25.0, "Monocytes": 0.0}
    assert wbc_differential({"partialWBC": 3}) == dict.fromkeys(CLASS_NAMES[:5])


def test_an_untyped_white_cell_is_never_a_wrong_class() -> None:
    gt = boxes(("a", EOS, 10, 10, 50, 50), ("b", EOS, 100, 100, 60, 40),
               ("a", -1, 120, 100, 60, 60))
    right = dets(("a", EOS, 10, 10, 50, 50, 0.9), ("b", EOS, 100, 100, 60, 40, 0.9))
    on_untyped = dets(("a", BASO, 120, 100, 60, 60, 0.95), ("a", EOS, 121, 100, 60, 60, 0.99))
    both = pd.concat([right, on_untyped], ignore_index=True)
    assert coco(gt, both)["map50"] == pytest.approx(1.0)  # neither type is a false positive
    assert coco(gt, right)["map50"] == pytest.approx(1.0)  # and missing it is no false negative
    assert coco(gt, both)["per_class_ap50"]["Basophil"] is None
    elsewhere = dets(("a", EOS, 150, 10, 50, 50, 0.99))  # a WBC box away from the untyped cell
    assert coco(gt, pd.concat([right, elsewhere]))["per_class_ap50"]["Eosinophil"] < 1.0
    assert exact_match_accuracy(gt, both, ["a", "b"]) == 1.0
    assert count_errors(gt, right, ["a", "b"])["Eosinophil"]["gt_total"] == 2


def random_boxes(rng: np.random.Generator, n: int, with_score: bool) -> pd.DataFrame:
    """``n`` boxes of sizes 4..120 px (all three COCO area ranges) on images a..d, classes 0..9."""
    df = pd.DataFrame({"image_id": rng.choice(list("abcd"), n), "class_idx": rng.integers(0, 10, n),
                       "x": rng.uniform(0, 150, n), "y": rng.uniform(0, 150, n),
                       "w": rng.uniform(4, 120, n), "h": rng.uniform(4, 120, n)})
    return df.assign(score=rng.uniform(0, 1, n)) if with_score else df


def jittered(gt: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Detections near the GT boxes (a few px off, some of another class) and some strays."""
    det = gt.assign(x=gt["x"] + rng.normal(0, 4, len(gt)), y=gt["y"] + rng.normal(0, 4, len(gt)),
                    score=rng.uniform(0, 1, len(gt)))
    det.loc[rng.uniform(size=len(det)) < 0.2, "class_idx"] = rng.integers(0, 10)
    return pd.concat([det, random_boxes(rng, 60, True)], ignore_index=True)


def test_area_all_only_and_map50_alone_give_pycocotools_default_figures() -> None:
    rng = np.random.default_rng(7)
    gt = random_boxes(rng, 120, False)
    det = jittered(gt, rng)
    ids = list("abcd")
    gt_coco, dt_coco = _coco_pair(gt, det, ids, SIZES)
    ev = COCOeval(gt_coco, dt_coco, iouType="bbox")  # default: four area ranges, 10 IoUs
    ev.params.maxDets = [1, 100, 1000]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    m = coco_metrics(gt, det, ids, SIZES)
    assert 0.2 < m["map50"] < 0.95
    assert m["map50_95"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert coco_map50(gt, det, ids, SIZES) == m["map50"]
