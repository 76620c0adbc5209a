"""``bloodcell detect``: cells, counts and parasitemia on users' own smear images.

Per image: an annotated PNG and a QuPath GeoJSON; per run: ``summary.csv`` (counts per class,
WBC differential in %, parasitemia in %) and ``detections.json`` (COCO, all images). Boxes are
in the input image's pixels (top-left origin), whatever ``scale`` the detector saw.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bloodcell.errors import UserError

SUMMARY = "summary.csv"
log = logging.getLogger("bloodcell")


def to_input_pixels(dets: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Boxes detected on an image resized by ``scale`` back in the input's pixels."""
    return dets.assign(x=dets["x"] / scale, y=dets["y"] / scale, w=dets["w"] / scale,
                       h=dets["h"] / scale)


def check_scale(scale: float, what: str) -> None:
    """UserError unless the detector's ``scale`` lies in 0.05..20 (``what`` names its source)."""
    if not 0.05 <= scale <= 20:
        raise UserError(f"{what}: scale {scale:g} is outside 0.05..20: check --scale/"
                        "--rbc-diameter")


def auto_scale(path: Path, bgr: np.ndarray) -> float:
    """The scale of one image (uint8 BGR) from its estimated RBC diameter, logged as
    ``IMAGE: estimated RBC diameter D px -> scale S``; UserError naming the image and the fix
    when no estimate is possible or the scale is out of range."""
    from bloodcell.rbc_size import require_estimate

    scale, diameter = require_estimate(str(path), bgr, 1.0, "auto")
    log.info("%s: estimated RBC diameter %.1f px -> scale %.3f", path, diameter, scale)
    check_scale(scale, f"{path}: estimated RBC diameter {diameter:.1f} px")
    return scale


def detect_images(paths: list[Path], detect, cfg, scale: float | str, out: Path) -> None:
    """Detect on every image and write the per-image and per-run outputs into ``out``.

    ``scale``: the resize factor to the model's scale, or ``"auto"`` to set it per image from
    the image's estimated RBC diameter (auto_scale).
    """
    from bloodcell import detect_outputs as outputs
    from bloodcell.slide import clip_to_image, detect_slide
    from bloodcell.smear_io import read_smear, rescale

    rows, frames, images = [], [], []
    fixed = scale
    with logging_redirect_tqdm():  # log lines above the progress bar, not inside it
        for path in tqdm(paths, desc="detect", unit="image", file=sys.stderr,
                         disable=len(paths) < 2):
            bgr = read_smear(path)
            scale = auto_scale(path, bgr) if fixed == "auto" else fixed
            rgb = np.ascontiguousarray(rescale(bgr, scale)[:, :, ::-1])
            dets = clip_to_image(to_input_pixels(detect_slide(detect, rgb, cfg), scale),
                                 bgr.shape[1], bgr.shape[0]).assign(image_id=path.stem)
            outputs.write_png(out / f"{path.stem}.png", outputs.annotate(bgr, dets))
            outputs.write_geojson(dets, out / f"{path.stem}.geojson")
            rows.append(outputs.summary_row(path.stem, dets))
            frames.append(dets)
            images.append((path.stem, path.name, bgr.shape[1], bgr.shape[0]))
    outputs.write_summary_csv(rows, out / SUMMARY)
    outputs.write_coco(pd.concat(frames, ignore_index=True), images, out / "detections.json")


def add_parser(sub) -> None:
    from bloodcell.cli_train import add_decode, add_model_and_scale, add_slide

    p = sub.add_parser("detect", help="detect cells on your own smear images",
                       description="Detect blood cells on PNG, JPEG, BMP or TIFF smears of any "
                       "size, bit depth and channel count. Writes per image an annotated PNG "
                       "and a QuPath GeoJSON, and per run summary.csv (counts per class, WBC "
                       "differential %%, parasitemia %% = infected / all RBCs) and "
                       "detections.json (COCO). Boxes are in the input's pixels.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or folders whose images are all read (not recursive)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (created; an earlier detect output is replaced, any "
                   "other non-empty folder is refused)")
    add_model_and_scale(p)
    add_decode(p, anchors_required=False)
    add_slide(p)
    p.set_defaults(func=cmd_detect)


def cmd_detect(a: argparse.Namespace) -> None:
    from bloodcell.atomic import atomic_dir, check_output
    from bloodcell.cli_train import set_tf_threads
    from bloodcell.decode import DecodeConfig
    from bloodcell.inference import load_detector, tile_detector
    from bloodcell.slide import SlideConfig
    from bloodcell.smear_io import list_images, scale_from_rbc_diameter

    paths = list_images(a.inputs)
    if a.rbc_diameter == "auto":
        scale: float | str = "auto"
    else:
        scale = scale_from_rbc_diameter(a.rbc_diameter) if a.rbc_diameter else a.scale
        check_scale(scale, "--rbc-diameter" if a.rbc_diameter else "--scale")
    if not a.model.is_file():
        raise UserError(f"{a.model} does not exist: train first (snakemake) or pass --model")
    check_output(a.out, "detect", [*a.inputs, a.model])
    set_tf_threads()
    model = load_detector(a.model)
    detect = tile_detector(model, a.anchors, DecodeConfig(a.score_threshold, a.nms_iou))
    cfg = SlideConfig(a.stride, a.merge_iou, a.adjacency_px)
    with atomic_dir(a.out, "detect", [*a.inputs, a.model]) as tmp:
        detect_images(paths, detect, cfg, scale, tmp)
    print(f"{len(paths)} image(s) -> {a.out}/ ({SUMMARY}, detections.json, PNG, GeoJSON)")
