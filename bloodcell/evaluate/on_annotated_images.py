"""``bloodcell evaluate-images``: score the detector on any folder of annotated real smears.

Each image is read as BGR (:func:`bloodcell.detect.smear_reader.read_smear`), resized by its scale
to the model's 40x scale (red cell ~34 px), and detected exactly as ``bloodcell detect`` does
(:func:`bloodcell.detect.whole_smear.detect_slide` on RGB: tiles, seam joins, second pass, merge);
boxes go back to the input image's pixels (x, y, w, h, top-left origin) and are clipped to it. Then:

1. **Classes.** Decoding scores each box by evaluation class (grouped scoring, see
   :mod:`bloodcell.model.decode`): the summed probability of the model classes the class map
   (:mod:`bloodcell.sources.class_map`) sends to one evaluation class, times objectness; the box
   keeps the best model class of the best group, which the map then turns into its evaluation class.
   Model classes mapped to null are not scored.
2. **Duplicates.** Two model classes of different kinds (e.g. Thrombocytes and Clumps, both
   "Platelets" for BCCD) may both sit on one cell after mapping; the slide merge only
   suppresses within a kind. So a greedy class-wise NMS runs *after* mapping at the slide's
   ``--merge-iou`` (higher score wins; IoU > merge_iou suppresses), so one cell gives one
   detection of its evaluation class instead of a true and a false positive.
3. **Ignored regions.** Ground-truth objects whose label maps to null are not scored; a
   detection whose IoU with one is >= 0.5 is removed (as VOC treats "difficult" objects).
   The annotation readers themselves drop IML ``difficult``, VOC ``<difficult>1`` and COCO
   crowd objects without keeping their boxes (listed under ``skipped_objects``), so a
   detection on one of those counts as a false positive (21 of IML's 38,449 objects).

Detection runs once per image at min(``--map-score-threshold``, ``--score-threshold``).
mAP integrates over scores, so it uses every box scoring >= ``--map-score-threshold``
(pycocotools COCOeval, maxDets ``--max-dets``); the operating-point metrics (counts,
infected-vs-healthy, parasitemia) use the boxes scoring > ``--score-threshold``, as
``bloodcell evaluate`` does. Ratios are in [0, 1]; parasitemia is in percent and its errors
in percentage points.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bloodcell.common.boxes import box_iou
from bloodcell.common.cell_counts import parasitemia
from bloodcell.common.classes import CLASS_NAMES
from bloodcell.common.errors import UserError
from bloodcell.common.html_table import html_table
from bloodcell.common.param_defaults import param_default
from bloodcell.evaluate import metrics
from bloodcell.sources.class_map import ClassMap, check_dataset_labels, map_detections, map_objects

log = logging.getLogger("bloodcell")

FORMATS = ("coco", "voc", "iml")
IGNORE_IOU = 0.5
"""A detection overlapping an ignored ground-truth object by at least this IoU is not scored."""
MATCH_IOU = 0.5
"""IoU of the one-to-one cell matching of the infected-vs-healthy metrics."""
FIGURE_IMAGES = 3
TABLE = "metrics.html"
"""Written last into --figures; its presence marks a folder as this command's output."""
DET_COLUMNS = ["image_id", "class_idx", "score", "x", "y", "w", "h"]
GT_COLUMNS = ["image_id", "class_idx", "x", "y", "w", "h"]


@dataclass(frozen=True)
class ScoreConfig:
    """Thresholds of the scoring (scores are class probability x objectness, in [0, 1])."""

    score_threshold: float = param_default("decode.score_threshold")
    map_score_threshold: float = param_default("evaluate.map_score_threshold")
    max_dets: int = param_default("evaluate.max_dets")
    merge_iou: float = param_default("slide_detection.merge_iou")


# --------------------------------------------------------------------------- pure helpers


def empty_detections() -> pd.DataFrame:
    """A detection table without rows (image_id, class_idx, score, x, y, w, h)."""
    return pd.DataFrame({"image_id": pd.Series(dtype=str), "class_idx": pd.Series(dtype=int),
                         **{c: pd.Series(dtype=float) for c in DET_COLUMNS[2:]}})


def nms_by_class(det: pd.DataFrame, iou: float) -> pd.DataFrame:
    """Greedy NMS per ``class_idx`` (one image's boxes, x, y, w, h px): by descending score
    (stable), a box overlapping a kept box of its class by IoU > ``iou`` is dropped. Row order
    and columns are kept."""
    keep: list = []
    for _, part in det.groupby("class_idx", sort=True):
        part = part.sort_values("score", ascending=False, kind="mergesort")
        overlap = box_iou(part[["x", "y", "w", "h"]].to_numpy(float),
                                  part[["x", "y", "w", "h"]].to_numpy(float))
        alive = np.ones(len(part), bool)
        for i in range(len(part)):
            if alive[i]:
                alive[i + 1:] &= overlap[i, i + 1:] <= iou
        keep += list(part.index[alive])
    kept = set(keep)
    return det.loc[[i for i in det.index if i in kept]]


def drop_on_ignored(det: pd.DataFrame, ignored: pd.DataFrame,
                    iou: float = IGNORE_IOU) -> pd.DataFrame:
    """One image's detections without those whose IoU with an ignored GT box is >= ``iou``."""
    if det.empty or ignored.empty:
        return det
    overlap = box_iou(det[["x", "y", "w", "h"]].to_numpy(float),
                              ignored[["x", "y", "w", "h"]].to_numpy(float))
    return det[~(overlap >= iou).any(axis=1)]


def prepare_detections(raw: pd.DataFrame, cmap: ClassMap, ignored: pd.DataFrame,
                       merge_iou: float) -> pd.DataFrame:
    """One image's model-class detections -> scored evaluation-class detections: class map
    (null dropped), class-wise NMS at ``merge_iou``, ignored regions removed (module
    docstring, steps 1-3). Columns of ``raw`` are kept; index reset."""
    mapped = nms_by_class(map_detections(raw, cmap), merge_iou)
    return drop_on_ignored(mapped, ignored).reset_index(drop=True)


def _count_table(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
                 cmap: ClassMap) -> dict[str, dict]:
    """Per evaluation class: gt_total, pred_total, mae_per_image (mean |nPred - nGT| per
    image), mean_signed_error_per_image (mean nPred - nGT: > 0 over-counts) and
    mean_error_in_count (sum |nPred - nGT| / sum nGT, None without GT)."""
    raw = metrics.count_errors(gt, det, ids)
    out = {}
    for k, name in enumerate(cmap.classes):
        row = raw[CLASS_NAMES[k]]
        signed = (row["pred_total"] - row["gt_total"]) / len(ids) if ids else 0.0
        out[name] = {**row, "mean_signed_error_per_image": signed}
    return out


def _rbc_frame(frame: pd.DataFrame, infected: int, healthy: int) -> pd.DataFrame:
    """Only the infected/healthy rows, with class_idx moved to metrics' Infected / ``_``."""
    part = frame[frame["class_idx"].isin([infected, healthy])]
    return part.assign(class_idx=np.where(part["class_idx"] == infected, metrics.INFECTED,
                                          metrics.HEALTHY))


def parasitemia_errors(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str]) -> dict:
    """Parasitemia errors over ``ids`` (tables with metrics' Infected / ``_`` classes only).

    Per image with at least one GT red cell: |predicted - true| parasitemia in percentage
    points, the prediction being 0 % when no red cell is detected. ``mean_abs_error_pp``: mean
    over those images; ``pooled_abs_error_pp``: the same error on the cells of all those images
    pooled; ``images``: how many images count (None values when none does).
    """
    def pct(frame: pd.DataFrame) -> tuple[int, int]:
        n_inf = int((frame["class_idx"] == metrics.INFECTED).sum())
        return n_inf, len(frame)

    errors, totals = [], np.zeros(4, int)
    gt_by, det_by = dict(tuple(gt.groupby("image_id"))), dict(tuple(det.groupby("image_id")))
    for i in ids:
        t_inf, t_all = pct(gt_by.get(i, gt.iloc[:0]))
        if not t_all:
            continue
        p_inf, p_all = pct(det_by.get(i, det.iloc[:0]))
        errors.append(abs(100.0 * (p_inf / p_all if p_all else 0.0) - 100.0 * t_inf / t_all))
        totals += (t_inf, t_all, p_inf, p_all)
    if not errors:
        return {"mean_abs_error_pp": None, "pooled_abs_error_pp": None, "images": 0}
    pooled_pred = 100.0 * totals[2] / totals[3] if totals[3] else 0.0
    return {"mean_abs_error_pp": float(np.mean(errors)),
            "pooled_abs_error_pp": abs(pooled_pred - 100.0 * totals[0] / totals[1]),
            "images": len(errors)}


def infected_vs_healthy(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
                        cmap: ClassMap, iou: float = MATCH_IOU) -> dict | None:
    """Malaria metrics when the map has classes ``infected`` and ``healthy`` (else None).

    Cell level: red-cell boxes matched one-to-one at IoU >= ``iou`` whatever their class
    (greedy by score), then the classes compared, positive = infected
    (:func:`bloodcell.evaluate.metrics.rbc_metrics`: ``cell``, ``image``, ``cells``, ``spurious``);
    plus ``parasitemia`` (:func:`parasitemia_errors`).
    """
    if not {"infected", "healthy"} <= set(cmap.classes):
        return None
    inf, hea = cmap.index("infected"), cmap.index("healthy")
    g, d = _rbc_frame(gt, inf, hea), _rbc_frame(det, inf, hea)
    result = metrics.rbc_metrics(g, d, ids, iou)
    result["parasitemia"] = parasitemia_errors(g, d, ids)
    return result


def score(gt: pd.DataFrame, det: pd.DataFrame, ids: list[str],
          sizes: dict[str, tuple[int, int]], cmap: ClassMap, cfg: ScoreConfig) -> dict:
    """Every metric of one evaluation (tables with evaluation class indices 0..K-1).

    ``det`` holds the detections down to the lower of the two thresholds; ``sizes`` maps
    image id -> (width, height) px. Keys: ``coco`` (map50, map50_95, map30, per_class_ap50 by
    evaluation class, None without GT), ``counts`` (:func:`_count_table`),
    ``infected_vs_healthy`` (:func:`infected_vs_healthy`), ``detections`` (operating point)
    and ``detections_for_map``.
    """
    for_map = det[det["score"] >= cfg.map_score_threshold]
    coco = metrics.coco_metrics(gt, for_map, ids, sizes, max_dets=cfg.max_dets)
    coco.pop("pr_curves")
    coco["per_class_ap50"] = {name: coco["per_class_ap50"][CLASS_NAMES[k]]
                              for k, name in enumerate(cmap.classes)}
    op = det[det["score"] > cfg.score_threshold]
    return {"coco": coco, "counts": _count_table(gt, op, ids, cmap),
            "infected_vs_healthy": infected_vs_healthy(gt, op, ids, cmap),
            "detections": len(op), "detections_for_map": len(for_map)}


def image_record(scale: float, diameter: float | None, gt: pd.DataFrame, op: pd.DataFrame,
                 cmap: ClassMap) -> dict:
    """Per-image facts: the scale used, the RBC diameter (px, given or estimated; None with
    --scale), scored GT objects and operating-point detections, and with an infected/healthy
    map the true and predicted parasitemia (percent, None without red cells)."""
    rec = {"scale": scale, "rbc_diameter_px": diameter, "objects": len(gt),
           "detections": len(op)}
    if {"infected", "healthy"} <= set(cmap.classes):
        for key, frame in (("parasitemia_true_pct", gt), ("parasitemia_pred_pct", op)):
            n = frame["class_idx"].value_counts()
            rec[key] = parasitemia({"Infected": int(n.get(cmap.index("infected"), 0)),
                                            "_": int(n.get(cmap.index("healthy"), 0))})
    return rec


# --------------------------------------------------------------------------- figures


def figure(bgr: np.ndarray, model_dets: pd.DataFrame, gt: pd.DataFrame) -> np.ndarray:
    """An annotated copy of a BGR image: detections in their model-class colours with a legend
    (:func:`bloodcell.detect.outputs.annotate`) and the scored GT boxes as thin black frames.
    Boxes are input-image pixels, top-left origin."""
    import cv2

    from bloodcell.detect.outputs import annotate

    out = annotate(bgr, model_dets)
    thick = max(1, round(max(bgr.shape[:2]) / 1500))
    for x, y, w, h in gt[["x", "y", "w", "h"]].to_numpy(float):
        cv2.rectangle(out, (round(x), round(y)), (round(x + w) - 1, round(y + h) - 1),
                      (0, 0, 0), thick, cv2.LINE_4)
    return out


def figure_name(image: str) -> str:
    """PNG file name of an image's figure: its relative name, suffix off, '/' -> '__'."""
    return str(Path(image).with_suffix("")).replace("/", "__") + ".png"


def metrics_table(result: dict, path: Path) -> None:
    """Per evaluation class AP@0.5 and count errors, plus the mean, as an HTML table."""
    coco, counts = result["coco"], result["counts"]
    rows = [[name, coco["per_class_ap50"][name], c["gt_total"], c["pred_total"],
             c["mae_per_image"], c["mean_signed_error_per_image"]]
            for name, c in counts.items()]
    rows.append(["mean (mAP@0.5)", coco["map50"], result["objects"], result["detections"],
                 None, None])
    title = (f"{result['images']} images, class map {result['class_map']} (figures: ground "
             f"truth in black, detections by model class): mAP@0.5 "
             f"{coco['map50']:.4f}, mAP@[.5:.95] {coco['map50_95']:.4f}")
    ivh = result["infected_vs_healthy"]
    if ivh is not None:
        title += f", infected F1 (cell) {ivh['cell']['f1']:.4f}"
    html_table(title, ["class", "AP@0.5", "GT", "predicted", "count MAE / image",
                             "count mean signed error / image"], rows, path)


def figures_io(a: argparse.Namespace) -> tuple[list, list]:
    """(inputs, other outputs) of an evaluate-images run, for the --figures folder's check."""
    return [a.images, a.labels, a.images_list, a.model], [a.metrics]


def check_figures_dir(path: Path, inputs=(), outputs=()) -> None:
    """Refuse (UserError) a --figures folder that evaluate-images may not replace: see
    bloodcell.common.atomic.check_output (the current folder, an input, one holding an input, a
    file, a non-empty folder without the evaluate-images marker)."""
    from bloodcell.common.atomic import check_output

    check_output(path, "evaluate-images", inputs, outputs)


# --------------------------------------------------------------------------- the run


def detect_image(detect: Callable, bgr: np.ndarray, scale: float, cfg) -> pd.DataFrame:
    """Model-class detections (class_idx 0..9, score, x, y, w, h) on a BGR uint8 image, in
    its own pixels: the image is resized by ``scale`` and detected as ``bloodcell detect``
    does, boxes are divided by ``scale`` and clipped to the image."""
    from bloodcell.detect.smear_reader import resize_smear
    from bloodcell.detect.whole_smear import clip_to_image, detect_slide

    rgb = np.ascontiguousarray(resize_smear(bgr, scale)[:, :, ::-1])
    dets = detect_slide(detect, rgb, cfg)
    dets = dets.assign(**{c: dets[c] / scale for c in ("x", "y", "w", "h")})
    return clip_to_image(dets, bgr.shape[1], bgr.shape[0]).reset_index(drop=True)


def image_scale(name: str, bgr: np.ndarray, scale: float,
                rbc_diameter: float | str | None) -> tuple[float, float | None]:
    """(scale, RBC diameter px or None) of one image: ``--scale`` (diameter None), a fixed
    ``--rbc-diameter`` (that diameter) or ``auto`` (estimated on the image by
    bloodcell.detect.rbc_size; UserError naming ``name`` when it cannot be). The scale must lie in
    0.05..20."""
    from bloodcell.detect.rbc_size import require_estimate

    factor, estimate = require_estimate(name, bgr, scale, rbc_diameter)
    diameter = estimate if rbc_diameter == "auto" else rbc_diameter
    if not 0.05 <= factor <= 20:
        raise UserError(f"{name}: scale {factor:g} is outside 0.05..20: check --scale/"
                        "--rbc-diameter")
    return float(factor), (None if diameter is None else float(diameter))


def run(images: pd.DataFrame, objects: pd.DataFrame, cmap: ClassMap, detect: Callable,
        slide_cfg, cfg: ScoreConfig, scale: float, rbc_diameter: float | str | None,
        metrics_json: Path, figures_dir: Path | None = None,
        skipped: Sequence[tuple[str, str]] = (), fmt: str = "") -> dict:
    """Detect on every image, score, and write the metrics JSON (and figures when asked).

    ``images``: image (relative name), path (absolute); ``objects``: image, label, x, y, w,
    h px top-left (labels already checked against the map); ``detect``: a compiled tile
    detector decoding at min(score thresholds). An image that cannot be read (or whose scale
    cannot be found) is skipped and recorded under ``skipped_images``; the annotation reader's
    dropped objects (``skipped``: difficult, crowd, zero-size) go to ``skipped_objects``. With
    no image left a UserError is raised. Returns the metrics written.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bloodcell.common.json_files import write_json
    from bloodcell.detect.smear_reader import read_smear
    from bloodcell.model.tta import tta_mode

    scored, ignored = map_objects(objects, cmap)
    gt_by, ign_by = dict(tuple(scored.groupby("image_id"))), dict(tuple(ignored.groupby(
        "image_id")))
    frames, ids, sizes, per_image = [], [], {}, {}
    notes: list[dict] = []
    bar = tqdm(list(zip(images["image"].astype(str), images["path"])), desc="evaluate",
               unit="image", file=sys.stderr, disable=len(images) < 2)
    with logging_redirect_tqdm():  # warnings above the progress bar, not glued to it
        for k, (name, path) in enumerate(bar):
            try:
                bgr = read_smear(Path(path))
                factor, diameter = image_scale(str(path), bgr, scale, rbc_diameter)
            except UserError as err:
                log.warning("skipped: %s", err)
                notes.append({"where": str(path), "reason": str(err)})
                continue
            raw = detect_image(detect, bgr, factor, slide_cfg)
            gt = gt_by.get(name, scored.iloc[:0])
            dets = prepare_detections(raw, cmap, ign_by.get(name, ignored.iloc[:0]),
                                      cfg.merge_iou).assign(image_id=name)
            frames.append(dets[DET_COLUMNS])
            ids.append(name)
            sizes[name] = (bgr.shape[1], bgr.shape[0])
            per_image[name] = image_record(factor, diameter, gt,
                                           dets[dets["score"] > cfg.score_threshold], cmap)
            if figures_dir is not None and len(ids) <= FIGURE_IMAGES:
                from bloodcell.common.image_files import write_png

                shown = raw[raw["score"] > cfg.score_threshold].assign(image_id=name)
                write_png(figures_dir / figure_name(name), figure(bgr, shown, gt))
    if not ids:
        first = f"first: {notes[0]['reason']}" if notes else "none listed"
        raise UserError(f"no image could be evaluated ({len(notes)} skipped, {first}); check "
                        "IMAGES and --labels")
    det = pd.concat(frames, ignore_index=True) if frames else empty_detections()
    gt = scored[scored["image_id"].isin(set(ids))]
    result = {"format": fmt, "class_map": cmap.name, "classes": list(cmap.classes),
              "images": len(ids), "objects": len(gt),
              "ignored_objects": int(ignored["image_id"].isin(set(ids)).sum()),
              "score_threshold": cfg.score_threshold,
              "map_score_threshold": cfg.map_score_threshold, "max_dets": cfg.max_dets,
              "tta": tta_mode(detect),
              **score(gt, det, ids, sizes, cmap, cfg),
              "per_image": per_image, "skipped_images": notes,
              "skipped_objects": [{"where": str(w), "reason": str(r)} for w, r in skipped]}
    write_json(result, metrics_json)
    if figures_dir is not None:
        metrics_table(result, figures_dir / TABLE)
    return result


# --------------------------------------------------------------------------- command line


def add_parser(sub) -> None:
    from bloodcell.common.cli_args import param_option
    from bloodcell.common.detection_options import add_decode, add_model_and_scale, add_slide

    p = sub.add_parser(
        "evaluate-images", help="score the detector on annotated real smear images",
        description="Detect on every annotated image of IMAGES the way `bloodcell detect` "
        "does, map the model's and the dataset's classes through a class map, and write "
        "pycocotools mAP (overall and per class), count errors per class and, for an "
        "infected/healthy map, cell-level infected F1 and parasitemia error (JSON).")
    p.add_argument("images", type=Path, metavar="IMAGES", help="folder of the images")
    p.add_argument("--labels", type=Path, required=True,
                   help="annotations: a folder of Pascal VOC XMLs (voc) or a JSON file "
                   "(coco, iml)")
    p.add_argument("--format", choices=FORMATS, required=True, help="annotation format")
    p.add_argument("--class-map", required=True, metavar="NAME|YAML",
                   help="bundled class map (bccd, iml) or the path of a class-map YAML")
    p.add_argument("--images-list", type=Path, metavar="FILE",
                   help="evaluate only the images named in FILE, one per line (file name or "
                   "stem, e.g. BCCD's ImageSets/Main/val.txt)")
    add_model_and_scale(p)
    add_decode(p)
    add_slide(p)
    param_option(p, "--map-score-threshold", key="evaluate.map_score_threshold", type=float,
                 help="lowest score kept for mAP (the other metrics use --score-threshold)")
    param_option(p, "--max-dets", key="evaluate.max_dets", type=int,
                 help="COCOeval maxDets per image")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--figures", type=Path,
                   help="folder for annotated examples (first 3 images) and metrics.html")
    p.set_defaults(main=main)


def load_annotations(a: argparse.Namespace, cmap: ClassMap):
    """The annotated images (only those of --images-list when given) with every label,
    dropped objects' included, checked against the class map."""
    from bloodcell.sources.annotations import read_annotations, read_name_list

    names = read_name_list(a.images_list) if a.images_list is not None else None
    ann = read_annotations(a.format, a.images, a.labels, names)
    if ann.images.empty:
        raise UserError(f"{a.labels}: no annotated image found in {a.images}; check the "
                        "paths and --format")
    check_dataset_labels(cmap, ann, str(a.labels))
    return ann


def main(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.common.detection_options import model_anchors, slide_config
    from bloodcell.common.tf_threads import set_tf_threads
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.runtime import tile_function
    from bloodcell.sources.class_map import load_class_map, model_groups

    if not 0.05 <= a.scale <= 20:
        raise UserError(f"--scale {a.scale:g} is outside 0.05..20; give the resize factor to "
                        "the model's 40x scale, or --rbc-diameter")
    if a.max_dets < 1:
        raise UserError("--max-dets must be >= 1")
    cmap = load_class_map(a.class_map)
    ann = load_annotations(a, cmap)
    if not a.model.is_file():
        raise UserError(f"{a.model} does not exist: train first (snakemake) or pass --model")
    if a.figures is not None:
        check_figures_dir(a.figures, *figures_io(a))
    set_tf_threads()
    cfg = ScoreConfig(a.score_threshold, a.map_score_threshold, a.max_dets, a.merge_iou)
    low = DecodeConfig(min(a.score_threshold, a.map_score_threshold), a.nms_iou,
                       groups=model_groups(cmap), tta=a.tta)
    detect = tile_function(a.model, model_anchors(a), low)
    slide_cfg = slide_config(a)
    args = (ann.images, ann.objects, cmap, detect, slide_cfg, cfg, a.scale, a.rbc_diameter,
            a.metrics)
    if a.figures is None:
        result = run(*args, skipped=ann.skipped, fmt=a.format)
    else:
        with atomic_dir(a.figures, "evaluate-images", *figures_io(a)) as tmp:
            result = run(*args, figures_dir=tmp, skipped=ann.skipped, fmt=a.format)
    print(summary_line(result, a.metrics))


def summary_line(result: dict, metrics_json: Path) -> str:
    """One line: images, mAP@0.5, mAP@[.5:.95], infected F1 when scored, the JSON path."""
    coco = result["coco"]
    line = (f"{result['images']} images ({result['class_map']}): mAP@0.5 {coco['map50']:.4f}"
            f"  mAP@[.5:.95] {coco['map50_95']:.4f}")
    ivh = result["infected_vs_healthy"]
    if ivh is not None:
        par = ivh["parasitemia"]["mean_abs_error_pp"]
        line += f"  infected F1 {ivh['cell']['f1']:.4f}"
        line += f"  parasitemia error {par:.2f} pp" if par is not None else ""
    if result["skipped_images"]:
        line += f"  ({len(result['skipped_images'])} images skipped)"
    return line + f" -> {metrics_json}"
