"""The ``evaluate`` stage: the detector on the test split's synthetic images.

Reference metrics come from pycocotools (bloodcell.evaluate.metrics.coco_metrics): mAP@0.5
(headline), mAP@[.5:.95], mAP@0.3 and per-class AP@0.5. Beside them, labelled as such, the original
project's lenient mAP@0.3 for comparison with its published 97.6 %. Also: classification exact-match
accuracy, RBC infected-vs-healthy metrics (cell and image level) and per-class count errors.

Outputs: a metrics JSON (``dvc metrics``), plot data CSVs (``dvc plots``: PR curves, a box
confusion table) and PNG figures for the report (PR curves, confusion matrix, training curves).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bloodcell.common.atomic import atomic_file
from bloodcell.common.classes import CLASS_NAMES, UNTYPED_WBC, display_name, label_name
from bloodcell.common.errors import UserError
from bloodcell.common.html_table import html_table
from bloodcell.common.json_files import write_json
from bloodcell.common.param_defaults import param_default
from bloodcell.common.tile import TILE_PX
from bloodcell.evaluate import metrics, plots
from bloodcell.model.decode import DecodeConfig
from bloodcell.model.inference import predict_shards
from bloodcell.model.runtime import tile_function

BACKGROUND = "background"
"""Confusion label of a missed GT box (predicted column) or a spurious detection (actual row)."""


@dataclass(frozen=True)
class EvalConfig:
    """``decode.score_threshold`` is the operating point (counts, RBC metrics, exact match);
    AP integrates over all thresholds, so mAP and PR curves use the boxes scoring above
    ``map_score_threshold`` (lower), as COCO-style evaluations do."""

    anchors: tuple[tuple[float, float], ...]
    decode: DecodeConfig
    max_dets: int = param_default("evaluate.max_dets")
    rbc_iou: float = param_default("evaluate.rbc_iou")
    map_score_threshold: float = param_default("evaluate.map_score_threshold")


def box_confusion(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
                  iou: float = 0.5) -> pd.DataFrame:
    """(actual, predicted) class names of boxes matched one-to-one at IoU >= ``iou``, class-
    agnostic and greedy by score; unmatched GT -> predicted "background", unmatched
    detections -> actual "background"."""
    rows = []
    gt_by, det_by = dict(tuple(gt.groupby("image_id"))), dict(tuple(det.groupby("image_id")))
    for i in ids:
        g, d = gt_by.get(i, gt.iloc[:0]), det_by.get(i, det.iloc[:0])
        gb, db = g[["x", "y", "w", "h"]].to_numpy(float), d[["x", "y", "w", "h"]].to_numpy(float)
        pairs = metrics.greedy_match(gb, db, d["score"].to_numpy(float), iou)
        gc, dc = g["class_idx"].to_numpy(), d["class_idx"].to_numpy()
        rows += [(label_name(gc[gi]), CLASS_NAMES[dc[di]]) for di, gi in pairs]
        hit_g, hit_d = {gi for _, gi in pairs}, {di for di, _ in pairs}
        rows += [(label_name(c), BACKGROUND) for k, c in enumerate(gc) if k not in hit_g]
        rows += [(BACKGROUND, CLASS_NAMES[c]) for k, c in enumerate(dc) if k not in hit_d]
    return pd.DataFrame(rows, columns=["actual", "predicted"])


def score(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str], sizes: dict, cfg: EvalConfig
          ) -> tuple[dict, pd.DataFrame]:
    """All metrics of one set of images, and the PR curve rows (class_name, recall, precision)."""
    coco = metrics.coco_metrics(gt, det, ids, sizes, max_dets=cfg.max_dets)
    det = det[det["score"] > cfg.decode.score_threshold]  # the operating point from here on
    curves = pd.DataFrame([(name, r, p) for name, pts in coco.pop("pr_curves").items()
                           for r, p in pts], columns=["class_name", "recall", "precision"])
    result = {
        "images": len(ids), "gt_boxes": len(gt), "detections": len(det),
        "score_threshold": cfg.decode.score_threshold,
        "map_score_threshold": cfg.map_score_threshold, "tta": cfg.decode.tta,
        "coco": coco,
        "original_lenient_map30_percent": metrics.original_map(gt, det, 0.3),
        "classification_exact_match": metrics.exact_match_accuracy(gt, det, ids),
        "rbc": metrics.rbc_metrics(gt, det, ids, cfg.rbc_iou),
        "count_errors": metrics.count_errors(gt, det, ids),
    }
    return result, curves


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_history(path: Path) -> pd.DataFrame:
    """A training history CSV; UserError naming it when it is missing or unreadable."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist: run the training stage first or pass its "
                        "--history file to --histories")
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' parser and decoding errors are ValueErrors
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"{path}: not a readable training history CSV ({reason}); re-run the "
                        "training stage") from None


def run(model_path: Path, test_dirs: list[Path], histories: dict[str, Path], cfg: EvalConfig,
        metrics_json: Path, plots_dir: Path, figures_dir: Path) -> dict:
    """Evaluate the detector on the shards and write metrics, plot data and figures."""
    if not model_path.is_file():
        raise UserError(f"{model_path} does not exist: run train_detector first")
    if not test_dirs:
        raise UserError("no test-* shard found: check synth.shards in params.yaml")
    history = {k: read_history(v) for k, v in histories.items()}  # before the long part
    files = [str(d / "images.tfrecord") for d in test_dirs]
    low = replace(cfg.decode, score_threshold=min(cfg.map_score_threshold,
                                                  cfg.decode.score_threshold))
    detect = tile_function(model_path, cfg.anchors, low)
    gt, det, ids = predict_shards(None, files, cfg.anchors, low, detect=detect)
    result, curves = score(gt, det, ids, {i: (TILE_PX, TILE_PX) for i in ids}, cfg)
    confusion = box_confusion(gt, det[det["score"] > cfg.decode.score_threshold], ids)
    write_json(result, metrics_json)
    write_csv(curves, plots_dir / "pr_curves.csv")
    write_csv(confusion, plots_dir / "confusion.csv")
    plots.pr_curves(curves, figures_dir / "pr_curves.png")
    untyped = [UNTYPED_WBC] if (confusion["actual"] == UNTYPED_WBC).any() else []
    plots.confusion(confusion, [*CLASS_NAMES, *untyped, BACKGROUND], figures_dir / "confusion.png")
    plots.training_curves(history,
                          figures_dir / "training_curves.png")
    summary_table(result, figures_dir / "metrics.html")
    return result


def summary_table(result: dict, path: Path) -> None:
    """The headline numbers and per-class AP@0.5 as an HTML table for the report."""
    coco, rbc = result["coco"], result["rbc"]
    rows = [["mAP@0.5 (COCO)", coco["map50"]], ["mAP@[.5:.95] (COCO)", coco["map50_95"]],
            ["mAP@0.3 (COCO)", coco["map30"]],
            ["original's lenient mAP@0.3, % (comparison only)",
             result["original_lenient_map30_percent"]["map"]],
            ["classification exact match", result["classification_exact_match"]],
            ["RBC infected F1 (cell level)", rbc["cell"]["f1"]],
            ["RBC infected F1 (image level)", rbc["image"]["f1"]]]
    rows += [[f"AP@0.5 {display_name(name)}", ap] for name, ap in coco["per_class_ap50"].items()]
    html_table(f"Test split: {result['images']} images", ["metric", "value"], rows, path)
