"""The ``evaluate_slides`` stage: whole-slide detection on the synthetic slides, with and
without the second pass.

Per variant: COCO mAP@0.5 (overall and per class), WBC type accuracy (GT white cells matched
one-to-one at IoU 0.5, class-agnostic, whose detection has the right type), per-class count
error and parasitemia error (absolute difference in percentage points, mean over slides).
Boxes: slide pixels, top-left origin (x, y, w, h).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bloodcell.common.cell_counts import parasitemia
from bloodcell.common.classes import CLASS_NAMES
from bloodcell.common.errors import UserError
from bloodcell.common.html_table import html_table
from bloodcell.common.image_files import write_png
from bloodcell.common.json_files import rounded, write_json
from bloodcell.detect.outputs import annotate
from bloodcell.detect.whole_smear import WBC, SlideConfig, detect_slide_passes
from bloodcell.evaluate import metrics
from bloodcell.model.decode import DecodeConfig
from bloodcell.model.runtime import tile_function


def load_slides(slides_dir: Path) -> tuple[list[dict], pd.DataFrame]:
    """COCO images of data/slides and their GT table (image_id = file stem)."""
    from bloodcell.sources.annotations import load_json

    path = slides_dir / "ground_truth.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: run the slides stage first")
    coco = load_json(path, "slides' COCO ground truth")
    try:
        name = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
        rows = [(name[a["image_id"]], a["category_id"] - 1, *map(float, a["bbox"]))
                for a in coco["annotations"]]
    except (KeyError, TypeError, ValueError, IndexError) as err:
        why = f"{type(err).__name__}: {err}"
        raise UserError(f"{path}: not the COCO ground truth of the slides stage ({why}); "
                        "re-run the slides stage") from None
    for im in coco["images"]:
        if not (slides_dir / im["file_name"]).is_file():
            raise UserError(f"{slides_dir / im['file_name']}: slide image not found; re-run "
                            "the slides stage")
    gt = pd.DataFrame(rows, columns=["image_id", "class_idx", "x", "y", "w", "h"])
    return coco["images"], gt


def wbc_accuracy(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str]) -> float | None:
    """Share of GT WBCs (classes 0-4) whose one-to-one match (IoU 0.5) has the right type."""
    right = total = 0
    for i in ids:
        g = gt[(gt["image_id"] == i) & gt["class_idx"].isin(WBC)]
        d = det[det["image_id"] == i]
        pairs = metrics.greedy_match(g[["x", "y", "w", "h"]].to_numpy(float),
                                     d[["x", "y", "w", "h"]].to_numpy(float),
                                     d["score"].to_numpy(float), 0.5)
        gc, dc = g["class_idx"].to_numpy(), d["class_idx"].to_numpy()
        right += sum(int(gc[gi] == dc[di]) for di, gi in pairs)
        total += len(g)
    return right / total if total else None


def parasitemia_error(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str]) -> float | None:
    """Mean over slides of |predicted - true parasitemia| in percentage points."""
    errors = []
    for i in ids:
        true = parasitemia(counts(gt[gt["image_id"] == i]))
        pred = parasitemia(counts(det[det["image_id"] == i]))
        if true is not None:
            errors.append(abs((pred or 0.0) - true))
    return float(np.mean(errors)) if errors else None


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """Boxes per class name."""
    found = frame["class_idx"].value_counts()
    return {name: int(found.get(i, 0)) for i, name in enumerate(CLASS_NAMES)}


def variant_metrics(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str], sizes: dict) -> dict:
    coco = metrics.coco_metrics(gt, det, ids, sizes, max_dets=10000)
    coco.pop("pr_curves")
    return {"map50": coco["map50"], "map50_95": coco["map50_95"],
            "per_class_ap50": coco["per_class_ap50"],
            "wbc_type_accuracy": wbc_accuracy(gt, det, ids),
            "parasitemia_abs_error_pp": parasitemia_error(gt, det, ids),
            "count_errors": {k: v["mean_error_in_count"]
                             for k, v in metrics.count_errors(gt, det, ids).items()},
            "detections": len(det)}


def run(model_path: Path, slides_dir: Path, anchors, decode: DecodeConfig, cfg: SlideConfig,
        metrics_json: Path, figures_dir: Path) -> dict:
    """Detect on every slide with and without the second pass; write metrics and figures."""
    if not model_path.is_file():
        raise UserError(f"{model_path} does not exist: run train_detector first")
    images, gt = load_slides(slides_dir)
    detect = tile_function(model_path, anchors, decode)
    found: dict[str, list[pd.DataFrame]] = {"second_pass": [], "first_pass_only": []}
    ids, sizes = [], {}
    for im in images:
        iid = Path(im["file_name"]).stem
        bgr = cv2.imread(str(slides_dir / im["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{slides_dir / im['file_name']}: unreadable slide image; re-run "
                            "the slides stage")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        ids.append(iid)
        sizes[iid] = (im["width"], im["height"])
        both = detect_slide_passes(detect, rgb, cfg)  # one tiling for both variants
        for variant, second in (("second_pass", True), ("first_pass_only", False)):
            found[variant].append(both[second].assign(image_id=iid))
        if len(ids) <= 2:  # the same slide with and without the second pass
            write_png(figures_dir / f"{iid}.png", annotate(bgr, found["second_pass"][-1]))
            write_png(figures_dir / f"{iid}_first_pass_only.png",
                      annotate(bgr, found["first_pass_only"][-1]))
    result = {v: variant_metrics(gt, pd.concat(f, ignore_index=True), ids, sizes)
              for v, f in found.items()}
    result["slides"] = len(ids)
    result["tta"] = decode.tta
    write_json(rounded(result), metrics_json)
    keys = ["map50", "wbc_type_accuracy", "parasitemia_abs_error_pp", "detections"]
    html_table(f"{len(ids)} synthetic slides: second pass or not", ["variant", *keys],
                     [[v, *(result[v][k] for k in keys)] for v in found],
                     figures_dir / "metrics.html")
    return result
