"""``bloodcell detect``: cells, counts and parasitemia on users' own smear images.

Per image: an annotated PNG, a QuPath GeoJSON and a cells CSV, written as the image finishes;
per run: ``summary.csv`` (status, counts per class, WBC differential in %, parasitemia in %) and
``detections.json`` (COCO, all images). Boxes are in the input image's pixels (top-left
origin), whatever ``scale`` the detector saw. Smears are read region by region
(smear_reader.open_smear), so memory stays bounded on gigapixel TIFFs. Resuming, output names and
failed images: bloodcell.detect.folder_run.
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

from bloodcell.common.errors import UserError
from bloodcell.detect.api import check_scale

SUMMARY = "summary.csv"
log = logging.getLogger("bloodcell")


ANNOTATE_MAX_SIDE = 8192
"""Longest side, in px, of an annotated PNG: larger smears are drawn on a downscaled copy."""
AUTO_CROP_PX = 4096
"""Side of the centre window, in input px, that ``--rbc-diameter auto`` measures on."""


def annotated_png(smear, dets: pd.DataFrame) -> np.ndarray:
    """The annotated image: the input at full size, or downscaled (boxes with it) when its
    longer side exceeds ANNOTATE_MAX_SIDE, so that huge smears are never held whole."""
    from bloodcell.detect import outputs
    if max(smear.width, smear.height) <= ANNOTATE_MAX_SIDE:
        return outputs.annotate(smear.region(0, 0, smear.width, smear.height), dets)
    small, factor = smear.overview(ANNOTATE_MAX_SIDE)
    return outputs.annotate(small, dets.assign(**{c: dets[c] * factor for c in "xywh"}))


def smear_scale(detector, smear, scale: float | str) -> float:
    """The resize factor of one smear: ``scale``, or with "auto" the factor from its red
    cells measured on the centre AUTO_CROP_PX window, logged as ``IMAGE: estimated RBC
    diameter D px -> scale S``; UserError naming the image when no estimate is possible or
    the scale is out of range."""
    if scale != "auto":
        return float(scale)
    diameter = detector.smear_rbc_diameter(smear, AUTO_CROP_PX)
    factor = detector.scale_for(diameter, None)
    log.info("%s: estimated RBC diameter %.1f px -> scale %.3f", smear.path, diameter, factor)
    check_scale(factor, f"{smear.path}: estimated RBC diameter {diameter:.1f} px")
    return factor


def detect_one(path: Path, detector, scale: float | str,
               pixel_size: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Cells of one smear (bloodcell.detect.api.Detector's frame with outlines, input pixels),
    read region by region (smear_reader.open_smear), with its size, scale and annotated image;
    UserError for a bad image. ``scale``: the resize factor, or "auto" (smear_scale);
    ``pixel_size``: µm per input px for the measurements, or None for px."""
    from bloodcell.detect.smear_reader import open_smear

    with open_smear(path) as smear:
        factor = smear_scale(detector, smear, scale)
        cells = detector.cells(smear.scaled(factor), factor, smear.width, smear.height,
                               outlines=True, pixel_size=pixel_size)
        image = annotated_png(smear, cells.assign(image_id=""))
        info = {"width": smear.width, "height": smear.height, "scale": round(factor, 6)}
    return cells, {**info, "annotated": image}


def finish_image(out: Path, name: str, dets: pd.DataFrame, image: np.ndarray) -> pd.DataFrame:
    """Write one image's outputs (annotated PNG, GeoJSON with the outlines ``dets`` carry,
    cells CSV); returns its checked detections (rounded, sorted), as the per-run files take
    them."""
    from bloodcell.common.image_files import write_png
    from bloodcell.detect import folder_run as run
    from bloodcell.detect import outputs

    shaped = outputs.checked_detections(dets.assign(image_id=name), keep=outputs.SHAPE_COLUMNS)
    checked = shaped[list(outputs.DETECTION_COLUMNS)]
    paths = run.outputs_of(out, name)
    write_png(paths["annotated"], image)
    outputs.write_geojson(shaped, paths["geojson"])
    run.write_cells_csv(checked, paths["cells"])
    return checked


def input_sha256(path: Path) -> str:
    """The input's sha256; UserError naming the file when it cannot be read."""
    from bloodcell.detect.folder_run import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror}); check that it exists and its "
                        "permissions") from None


def failed_row(name: str, file: str, reason: str) -> dict:
    """A summary row for an image that could not be read or detected."""
    from bloodcell.detect import outputs
    return {**dict.fromkeys(outputs.SUMMARY_COLUMNS), "image_id": name, "file": file,
            "status": "failed", "reason": reason}


def detect_images(paths: list[Path], detector, scale: float | str, out: Path, settings: dict,
                  fail_fast: bool = False, pixel_size: float | None = None) -> list[str]:
    """Detect on every image and write its outputs into ``out`` as it finishes, skipping those
    a killed run of the same command finished (bloodcell.detect.folder_run); then the per-run
    summary.csv and detections.json. Returns the failure lines (``FILE: reason``).

    ``detector``: a bloodcell.detect.api.Detector; ``scale``: the resize factor to the model's
    scale, or ``"auto"`` to set it per image from the image's estimated RBC diameter. A bad
    image becomes a ``failed`` row and the run goes on, unless ``fail_fast`` (its UserError is
    raised). ``pixel_size``: µm per input px for the GeoJSON measurements (None: px).
    """
    from bloodcell.detect import folder_run as run
    from bloodcell.detect import outputs
    names = run.output_names(paths)
    run.open_run(out, settings, names, [*paths])
    rows, frames, images, failures = [], [], [], []
    with logging_redirect_tqdm():  # log lines above the progress bar, not inside it
        for path, name in tqdm(list(zip(paths, names)), desc="detect", unit="image",
                               file=sys.stderr, disable=len(paths) < 2):
            file = path.as_posix()
            try:
                sha = input_sha256(path)
                record = run.finished(out, name, sha)
                if record is None:
                    dets, info = detect_one(path, detector, scale, pixel_size)
                    checked = finish_image(out, name, dets, info.pop("annotated"))
                    record = {"file": file, "sha256": sha, **info}
                    run.mark_finished(out, name, record)
                else:
                    checked = run.read_cells_csv(run.outputs_of(out, name)["cells"], name)
            except (UserError, OSError) as err:
                if fail_fast or not isinstance(err, UserError):
                    raise
                failures.append(f"{file}: {err}")
                rows.append(failed_row(name, file, str(err)))
                continue
            rows.append({**outputs.summary_row(name, checked), "file": file, "status": "ok",
                         "reason": "", "sha256": sha})
            frames.append(checked)
            images.append((name, path.name, record["width"], record["height"]))
    outputs.write_summary_csv(rows, out / SUMMARY)
    dets = pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=list(outputs.DETECTION_COLUMNS))
    outputs.write_coco(dets, images, out / "detections.json")
    return failures


def add_parser(sub) -> None:
    from bloodcell.common.cli_args import positive_float
    from bloodcell.common.detection_options import add_decode, add_model_and_scale, add_slide

    p = sub.add_parser("detect", help="detect cells on your own smear images",
                       description="Detect blood cells on PNG, JPEG, BMP or TIFF smears of any "
                       "size, bit depth and channel count; large TIFF, BigTIFF and pyramidal "
                       "OME-TIFF smears are read region by region. Writes per image NAME.png "
                       "(annotated; downscaled to 8192 px on its longer side when larger), "
                       "NAME.geojson (QuPath: each cell's outline, from a threshold mask "
                       "inside its box, with its class, score, area, perimeter and mean optical "
                       "density) and NAME.cells.csv (one row per cell: class, box "
                       "x, y, w, h with x, y the top-left corner, score), and per run "
                       "summary.csv (per image: status, counts per class, WBC differential %, "
                       "parasitemia % = infected / all RBCs) and detections.json (COCO). Boxes "
                       "are in the input's pixels. NAME is the image's path relative to the "
                       "folder holding all inputs, without its suffix (a.png and a.tif: a-png, "
                       "a-tif). Each image's outputs are written as it finishes: the same "
                       "command run again after a kill resumes where it stopped. An image that "
                       "cannot be read is a `failed` row of summary.csv with the reason; the "
                       "run goes on and exits with code 2 at the end.")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or folders whose images are all read (not recursive)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (created; an earlier detect output is resumed when the "
                   "command is the same, else replaced; any other non-empty folder is "
                   "refused)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first image that cannot be read (exit code 2), keeping "
                   "the images finished before it")
    p.add_argument("--pixel-size", type=positive_float, metavar="UM",
                   help="µm per input pixel: GeoJSON areas in µm² and perimeters in µm "
                   "(default: px² and px)")
    add_model_and_scale(p)
    add_decode(p)
    add_slide(p)
    p.set_defaults(main=main)


def run_settings(a: argparse.Namespace, detector, scale: float | str) -> dict:
    """What decides a detect run's output bytes, for resuming: the model file's digest and
    every option of decoding, tiling and scale."""
    from dataclasses import asdict

    from bloodcell import __version__
    from bloodcell.detect.folder_run import file_sha256

    return {"bloodcell": __version__, "model_sha256": file_sha256(a.model),
            "anchors": detector.anchors, "score_threshold": a.score_threshold,
            "nms_iou": a.nms_iou, "slide": asdict(detector.slide), "scale": scale,
            "pixel_size": a.pixel_size}


def main(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import check_output
    from bloodcell.common.detection_options import slide_config
    from bloodcell.detect.api import Detector
    from bloodcell.detect.smear_reader import list_images

    paths = list_images(a.inputs)
    if not a.model.is_file():
        raise UserError(f"{a.model} does not exist: train first (snakemake) or pass --model")
    check_output(a.out, "detect", [*a.inputs, a.model])
    detector = Detector.load(a.model, a.score_threshold, a.nms_iou, a.anchors, slide_config(a),
                             tta=a.tta)
    if a.rbc_diameter == "auto":
        scale: float | str = "auto"
    else:
        scale = detector.scale_for(a.rbc_diameter, None if a.rbc_diameter else a.scale)
        check_scale(scale, "--rbc-diameter" if a.rbc_diameter else "--scale")
    failures = detect_images(paths, detector, scale, a.out, run_settings(a, detector, scale),
                             a.fail_fast, a.pixel_size)
    done = len(paths) - len(failures)
    print(f"{done} image(s) -> {a.out}/ ({SUMMARY}, detections.json, and per image PNG, "
          "GeoJSON, cells CSV)")
    if failures:
        raise UserError(f"{len(failures)} of {len(paths)} image(s) failed, each a `failed` row "
                        f"in {a.out / SUMMARY}; first: {failures[0]}")
