"""Detection metrics: COCO mAP (the reference), the original's lenient mAP, RBC, count metrics.

Data contract (pandas DataFrames, one row per box):

- ground truth ``gt``: ``image_id`` (str), ``class_idx`` (int 0..9, see
  :data:`bloodcell.common.classes.CLASS_NAMES`, or -1 for a white cell of unknown type, which is
  never counted as a wrong class: COCOeval ignores any WBC-type detection on it, exact match does
  not compare WBC types on its image, and counts leave it out), ``x``, ``y``, ``w``, ``h`` (float,
  **pixels**; ``x``, ``y`` is the box's **top-left** corner; continuous coordinates, so a box covers
  ``[x, x + w) x [y, y + h)`` and its area is ``w * h``, with no ``+1``).
- detections ``det``: the same columns plus ``score`` (float in [0, 1]).
- ``image_ids``: every image evaluated; an image may have no GT and/or no detections. A box whose
  image is not in ``image_ids`` is a :class:`ValueError`.

The headline metric is pycocotools' COCOeval (:func:`coco_metrics`). :func:`original_map`
reproduces the original project's lenient mAP for comparison only (it ignores false positives in
images without the class). Ratios are returned in [0, 1] unless a docstring says percent.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bloodcell.common.boxes import box_iou
from bloodcell.common.classes import CLASS_NAMES, UNTYPED_WBC_INDEX, WBC_CLASSES, coco_categories
from bloodcell.common.classes import HEALTHY_IDX as HEALTHY
from bloodcell.common.classes import INFECTED_IDX as INFECTED

BOX_COLUMNS = ("image_id", "class_idx", "x", "y", "w", "h")
"""Ground-truth columns; detections add ``score``."""


def _boxes(df: pd.DataFrame | None, with_score: bool, name: str) -> pd.DataFrame:
    """A checked copy of ``df`` with exactly the contract's columns (empty frames allowed)."""
    cols = list(BOX_COLUMNS) + (["score"] if with_score else [])
    if df is None or (len(df) == 0 and not set(cols) <= set(df.columns)):
        df = pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; expected {cols}")
    out = df.loc[:, cols].reset_index(drop=True).copy()
    out["image_id"] = out["image_id"].astype(str)
    out["class_idx"] = out["class_idx"].astype(int)
    lowest = UNTYPED_WBC_INDEX if name == "gt" else 0
    bad = out.loc[~out["class_idx"].between(lowest, len(CLASS_NAMES) - 1), "class_idx"]
    if len(bad):
        raise ValueError(f"{name} has class_idx outside {lowest}..{len(CLASS_NAMES) - 1}: "
                         f"{bad.iloc[0]}")
    for c in cols[2:]:
        out[c] = out[c].astype(float)
    return out


def _image_list(image_ids: Sequence[str], *frames: pd.DataFrame) -> list[str]:
    """``image_ids`` as unique strings in sorted order; every box's image must be among them."""
    ids = sorted({str(i) for i in image_ids})
    known = set(ids)
    for f in frames:
        unknown = sorted(set(f["image_id"]) - known)
        if unknown:
            raise ValueError(f"boxes refer to images not in image_ids, e.g. {unknown[0]!r}")
    return ids


def _xywh(df: pd.DataFrame) -> np.ndarray:
    return df[["x", "y", "w", "h"]].to_numpy(float)


# --------------------------------------------------------------------------- COCO (reference)


def _coco_anns(df: pd.DataFrame, id_map: Mapping[str, int], with_score: bool) -> list[dict]:
    """COCO annotations (ids from 1: pycocotools reads id 0 as "unmatched").

    An untyped white cell (class -1) becomes one ignored (``iscrowd``) box per WBC type, so a
    detection of any type on it is neither a true nor a false positive.
    """
    anns = []
    for r in df.itertuples(index=False):
        typed = r.class_idx != UNTYPED_WBC_INDEX
        for c in [r.class_idx] if typed else range(len(WBC_CLASSES)):
            ann = {"id": len(anns) + 1, "image_id": id_map[r.image_id], "category_id": int(c) + 1,
                   "bbox": [r.x, r.y, r.w, r.h], "area": r.w * r.h, "iscrowd": int(not typed)}
            if with_score:
                ann["score"] = float(r.score)
            anns.append(ann)
    return anns


def _coco_pair(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
               image_sizes: Mapping[str, tuple[int, int]]) -> tuple[COCO, COCO]:
    """In-memory COCO ground truth and results: image i of sorted ids -> int id i + 1.

    The results object is built directly rather than with ``loadRes``, which fails on an empty
    list; its annotations match what ``loadRes`` would make (area w*h, iscrowd 0).
    """
    sizes = {str(k): v for k, v in image_sizes.items()}
    lacking = [i for i in ids if i not in sizes]
    if lacking:
        raise ValueError(f"image_sizes has no (width, height) for image {lacking[0]!r}")
    id_map = {s: n + 1 for n, s in enumerate(ids)}
    images = [{"id": id_map[s], "file_name": s, "width": int(sizes[s][0]),
               "height": int(sizes[s][1])} for s in ids]
    cats = coco_categories()
    pair = []
    for df, with_score in ((gt, False), (det, True)):
        coco = COCO()
        coco.dataset = {"images": images, "categories": cats,
                        "annotations": _coco_anns(df, id_map, with_score)}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        pair.append(coco)
    return pair[0], pair[1]


def _coco_precision(gt: COCO, dt: COCO, iou_thrs: Sequence[float] | None,
                    max_dets: int) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval bbox precision [T, R=101, K=10] at area 'all', maxDets ``max_dets``; recThrs.

    Entries are -1 for classes without GT (as in pycocotools). Only the area range 'all' is
    evaluated (COCOeval matches each area range on its own, so its figures are those of the
    default four ranges, in a quarter of the matching).
    """
    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.maxDets = [1, 100, int(max_dets)]
    ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
    if iou_thrs is not None:
        ev.params.iouThrs = np.asarray(iou_thrs, float)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, -1], ev.params.recThrs


def _class_aps(precision: np.ndarray) -> list[float | None]:
    """Per class AP (mean over IoU thresholds and recall points); None for classes without GT."""
    return [None if np.all(precision[:, :, k] < 0) else float(np.mean(precision[:, :, k]))
            for k in range(precision.shape[2])]


def _mean(values: Sequence[float | None]) -> float:
    """Mean of the non-None values; 0.0 when there are none (no class has GT)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else 0.0


def coco_metrics(gt: pd.DataFrame, det: pd.DataFrame, image_ids: Sequence[str],
                 image_sizes: Mapping[str, tuple[int, int]], max_dets: int = 1000) -> dict:
    """pycocotools COCOeval (bbox, area 'all', at most ``max_dets`` detections per image/class).

    Boxes are x, y, w, h pixels (top-left); category_id = class_idx + 1. ``image_sizes`` maps
    image id -> (width, height) px. Returns floats in [0, 1] (not x100):

    - ``map50``: AP at IoU 0.5, mean over the classes that have GT (101-point interpolation);
    - ``map50_95``: mean over IoU 0.50:0.05:0.95; ``map30``: a second run at IoU 0.3 only;
    - ``per_class_ap50``: {class name: AP@0.5, or None when the class has no GT};
    - ``pr_curves``: {class name: [(recall, precision)] at the 101 COCO recall points, IoU 0.5}
      for the classes with GT.

    Empty ``det`` gives 0.0 everywhere; no GT at all gives 0.0 means and no curves.
    """
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    ids = _image_list(image_ids, gt, det)
    coco_gt, coco_dt = _coco_pair(gt, det, ids, image_sizes)
    prec, rec_thrs = _coco_precision(coco_gt, coco_dt, None, max_dets)
    prec30, _ = _coco_precision(coco_gt, coco_dt, [0.3], max_dets)
    ap50 = _class_aps(prec[:1])
    curves = {name: [(float(r), float(p)) for r, p in zip(rec_thrs, prec[0, :, k])]
              for k, name in enumerate(CLASS_NAMES) if ap50[k] is not None}
    return {"map50": _mean(ap50), "map50_95": _mean(_class_aps(prec)),
            "map30": _mean(_class_aps(prec30)),
            "per_class_ap50": dict(zip(CLASS_NAMES, ap50)), "pr_curves": curves}


def coco_map50(gt: pd.DataFrame, det: pd.DataFrame, image_ids: Sequence[str],
               image_sizes: Mapping[str, tuple[int, int]], max_dets: int = 1000) -> float:
    """:func:`coco_metrics`'s ``map50`` alone (same arguments, same value): COCOeval at IoU 0.5
    only, a tenth of the matching (each IoU threshold is matched on its own). For the
    per-epoch validation."""
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    coco_gt, coco_dt = _coco_pair(gt, det, _image_list(image_ids, gt, det), image_sizes)
    return _mean(_class_aps(_coco_precision(coco_gt, coco_dt, [0.5], max_dets)[0]))


# --------------------------------------------------------------------------- original's mAP


def voc_ap(recall: Sequence[float], precision: Sequence[float]) -> float:
    """All-point interpolated AP (VOC 2010+): area under the monotone precision envelope.

    ``recall`` and ``precision`` are the cumulative values in score order (same length,
    ratios in [0, 1]). Returns a ratio in [0, 1]; 0.0 for empty inputs.
    """
    rec = np.concatenate([[0.0], np.asarray(recall, float), [1.0]])
    pre = np.concatenate([[0.0], np.asarray(precision, float), [0.0]])
    if len(rec) != len(pre):
        raise ValueError("recall and precision must have the same length")
    pre = np.maximum.accumulate(pre[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1])
    return float(np.sum((rec[steps + 1] - rec[steps]) * pre[steps + 1]))


def _original_class_ap(gt_c: pd.DataFrame, det_c: pd.DataFrame, iou_threshold: float) -> float:
    """The original's AP (ratio) of one class; ``det_c`` is already limited to scanned images."""
    if len(det_c) == 0:
        return 0.0
    det_c = det_c.reset_index(drop=True)
    tp = np.zeros(len(det_c), bool)
    for image_id, g in gt_c.groupby("image_id", sort=False):
        rows = np.flatnonzero(det_c["image_id"].to_numpy() == image_id)
        if len(rows) == 0:
            continue
        iou = box_iou(_xywh(g), _xywh(det_c.iloc[rows]))
        best = iou.argmax(axis=1)
        hit = iou[np.arange(len(g)), best] > iou_threshold
        tp[rows[best[hit]]] = True  # several GTs may mark the same prediction
    order = np.argsort(-det_c["score"].to_numpy(), kind="mergesort")
    ctp = np.cumsum(tp[order])
    cfp = np.cumsum(~tp[order])
    return voc_ap(ctp / len(gt_c), ctp / (ctp + cfp))


def original_map(gt: pd.DataFrame, det: pd.DataFrame, iou_threshold: float = 0.3) -> dict:
    """The ORIGINAL project's lenient mAP (``calculateMAP``), for comparison only, never headline.

    Per class c: only images whose GT contains c are scanned (false positives of c in other
    images are ignored); each GT box of c marks the class-c prediction of its image with the
    highest IoU > ``iou_threshold`` as TP (several GTs may mark one prediction); the other
    class-c predictions of those images are FP; AP = :func:`voc_ap` of the cumulative TP/FP in
    score order. Boxes are x, y, w, h px (top-left) and IoU is continuous (the original used
    ``+1``). Differences: a class with GT but no prediction gets AP 0 (the original raised), and
    the mean covers classes with GT only (0.0 when none has GT).

    Returns ``{"map": percent, "per_class": {class name: AP percent, or None without GT}}``.
    """
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(CLASS_NAMES):
        gt_c = gt[gt["class_idx"] == k]
        if len(gt_c) == 0:
            per_class[name] = None
            continue
        scanned = det["image_id"].isin(set(gt_c["image_id"]))
        det_c = det[(det["class_idx"] == k) & scanned]
        per_class[name] = 100.0 * _original_class_ap(gt_c, det_c, iou_threshold)
    return {"map": _mean(list(per_class.values())), "per_class": per_class}


# --------------------------------------------------------------------------- other metrics


def _multi_hot(df: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """(len(ids), 10) bool: class present in each image (untyped white cells left out)."""
    hot = np.zeros((len(ids), len(CLASS_NAMES)), bool)
    row = {s: n for n, s in enumerate(ids)}
    df = df[df["class_idx"] >= 0]
    hot[[row[i] for i in df["image_id"]], df["class_idx"].to_numpy(int)] = True
    return hot


def exact_match_accuracy(gt: pd.DataFrame, det: pd.DataFrame, image_ids: Sequence[str],
                         score_threshold: float = 0.0) -> float:
    """Share of images whose detected-class multi-hot (10) equals the GT multi-hot exactly.

    Detections count when ``score >= score_threshold``. On an image with an untyped white cell
    the five WBC types are not compared. Returns a ratio in [0, 1] (the original printed it in
    percent); 0.0 when ``image_ids`` is empty.
    """
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    ids = _image_list(image_ids, gt, det)
    if not ids:
        return 0.0
    det = det[det["score"] >= score_threshold]
    compared = np.ones((len(ids), len(CLASS_NAMES)), bool)
    untyped = set(gt.loc[gt["class_idx"] == UNTYPED_WBC_INDEX, "image_id"])
    compared[[n for n, i in enumerate(ids) if i in untyped], : len(WBC_CLASSES)] = False
    same = np.all((_multi_hot(gt, ids) == _multi_hot(det, ids)) | ~compared, axis=1)
    return float(np.mean(same))


def _ratio(num: float, den: float) -> float:
    """num / den, or 0.0 when den is 0 (every ratio in this module follows this rule)."""
    return float(num) / float(den) if den else 0.0


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 (0.0 on a zero denominator)."""
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": p, "recall": r, "f1": _ratio(2 * p * r, p + r)}


def greedy_match(gt_boxes: np.ndarray, det_boxes: np.ndarray, scores: np.ndarray,
                  iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one (det row, gt row) pairs: by descending score (stable), each detection takes the
    free GT box with the highest IoU >= ``iou_threshold``."""
    iou = box_iou(det_boxes, gt_boxes)
    free = np.ones(len(gt_boxes), bool)
    pairs = []
    for d in np.argsort(-scores, kind="mergesort"):
        cand = np.where(free, iou[d], -1.0)
        if len(cand) and cand.max() >= iou_threshold:
            g = int(cand.argmax())
            free[g] = False
            pairs.append((int(d), g))
    return pairs


def _rbc_cells(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
               iou_threshold: float) -> tuple[dict, int]:
    """Cell table {GT: {pred or missed: n}} over RBC boxes, and the unmatched prediction count."""
    name = {INFECTED: "infected", HEALTHY: "healthy"}
    table = {g: {"infected": 0, "healthy": 0, "missed": 0} for g in ("infected", "healthy")}
    spurious = 0
    gt_by, det_by = dict(tuple(gt.groupby("image_id"))), dict(tuple(det.groupby("image_id")))
    empty_gt, empty_det = gt.iloc[:0], det.iloc[:0]
    for i in ids:
        g, d = gt_by.get(i, empty_gt), det_by.get(i, empty_det)
        pairs = greedy_match(_xywh(g), _xywh(d), d["score"].to_numpy(float), iou_threshold)
        g_cls, d_cls = g["class_idx"].to_numpy(), d["class_idx"].to_numpy()
        for di, gi in pairs:
            table[name[g_cls[gi]]][name[d_cls[di]]] += 1
        matched = np.zeros(len(g), bool)
        matched[[gi for _, gi in pairs]] = True
        for c in g_cls[~matched]:
            table[name[c]]["missed"] += 1
        spurious += len(d) - len(pairs)
    return table, spurious


def rbc_metrics(gt: pd.DataFrame, det: pd.DataFrame, image_ids: Sequence[str],
                iou_threshold: float = 0.5) -> dict:
    """Malaria RBC metrics, positive = Infected; only classes ``Infected`` and ``_`` are used.

    Cell level: predicted RBC boxes, in descending score order, are matched one-to-one to free GT
    RBC boxes of the same image with the highest IoU >= ``iou_threshold`` (boxes x, y, w, h px,
    top-left; matching ignores which of the two RBC classes). Returns:

    - ``cells``: {"infected"|"healthy" (GT): {"infected": n, "healthy": n (predicted),
      "missed": n (GT left unmatched)}}; ``spurious``: predictions left unmatched;
    - ``cell``: tp, fp, fn, tn of the matched pairs, precision, recall, f1, specificity;
    - ``image``: truth = the image has a GT Infected box, prediction = it has an Infected
      detection (matched or not); tp, fp, fn, tn, precision, recall, f1.

    Every ratio is 0.0 when its denominator is 0 (e.g. no detections).
    """
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    ids = _image_list(image_ids, gt, det)
    gt = gt[gt["class_idx"].isin([INFECTED, HEALTHY])]
    det = det[det["class_idx"].isin([INFECTED, HEALTHY])]
    cells, spurious = _rbc_cells(gt, det, ids, iou_threshold)
    tp, fn = cells["infected"]["infected"], cells["infected"]["healthy"]
    fp, tn = cells["healthy"]["infected"], cells["healthy"]["healthy"]
    cell = {"tp": tp, "fp": fp, "fn": fn, "tn": tn, **_prf(tp, fp, fn),
            "specificity": _ratio(tn, tn + fp)}
    truth = {i: False for i in ids} | dict.fromkeys(gt.loc[gt["class_idx"] == INFECTED,
                                                           "image_id"], True)
    pred = set(det.loc[det["class_idx"] == INFECTED, "image_id"])
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for i, t in truth.items():
        counts[("t" if t == (i in pred) else "f") + ("p" if i in pred else "n")] += 1
    image = {**counts, **_prf(counts["tp"], counts["fp"], counts["fn"])}
    return {"cells": cells, "spurious": spurious, "cell": cell, "image": image}


def _counts(df: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """(len(ids), 10) int: boxes of each class in each image (untyped white cells left out)."""
    out = np.zeros((len(ids), len(CLASS_NAMES)), int)
    row = {s: n for n, s in enumerate(ids)}
    df = df[df["class_idx"] >= 0]
    np.add.at(out, ([row[i] for i in df["image_id"]], df["class_idx"].to_numpy(int)), 1)
    return out


def count_errors(gt: pd.DataFrame, det: pd.DataFrame, image_ids: Sequence[str]) -> dict:
    """Per class name: box counts, no box matching (as the original's count metrics).

    ``gt_total``, ``pred_total`` (ints); ``mae_per_image``: mean over ``image_ids`` of
    |nGT - nPred| (boxes per image; 0.0 with no images); ``mean_error_in_count``: the original's
    sum|nGT - nPred| / sum nGT (a ratio, None when the class has no GT).
    """
    gt, det = _boxes(gt, False, "gt"), _boxes(det, True, "det")
    ids = _image_list(image_ids, gt, det)
    n_gt, n_det = _counts(gt, ids), _counts(det, ids)
    err = np.abs(n_gt - n_det)
    out = {}
    for k, name in enumerate(CLASS_NAMES):
        total = int(n_gt[:, k].sum())
        out[name] = {"gt_total": total, "pred_total": int(n_det[:, k].sum()),
                     "mae_per_image": float(err[:, k].mean()) if ids else 0.0,
                     "mean_error_in_count": float(err[:, k].sum()) / total if total else None}
    return out
