"""Whole-slide detection variants on the synthetic slides: tile overlap, second pass, merge.

For each variant: COCO mAP@0.5, WBC type accuracy, mean count error per class, parasitemia
error (percentage points, mean over slides) and seconds per 1000x1000 px of slide (detection
only: tiling, the compiled model calls, stitching, second pass and merge; the image is read
before the clock starts). The same measures as the evaluate_slides stage
(bloodcell/evaluate/on_slides.py), on the slides of a pipeline run.

    python benchmarks/slide_variants.py --run DIR [--variants NAME ...]

DIR is a finished pipeline run (models/detector.keras, data/slides, params.yaml; the
test-split mAP@0.5 of the same model is read from metrics/evaluate.json when present).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = {
    "stride224+2nd": {"overlap": 0, "second_pass": True},
    "stride224": {"overlap": 0, "second_pass": False},
    "overlap20%+2nd": {"overlap": 45, "second_pass": True},
    "overlap20%": {"overlap": 45, "second_pass": False},
    "overlap50%+2nd": {"overlap": 112, "second_pass": True},
    "overlap50%": {"overlap": 112, "second_pass": False},
    "overlap20%+2nd+ios": {"overlap": 45, "second_pass": True, "merge_metric": "ios"},
    "overlap50%+2nd+ios": {"overlap": 112, "second_pass": True, "merge_metric": "ios"},
}
"""Name -> SlideConfig fields; overlap in px of the 224 tile (20 % = 45 px, 50 % = 112 px)."""


def slide_config(params: dict, fields: dict):
    from bloodcell.detect.whole_smear import TILE, SlideConfig

    s = params["slide_detection"]
    base = SlideConfig(merge_iou=s["merge_iou"], adjacency_px=s["adjacency_px"])
    overlap = fields["overlap"]
    rest = {k: v for k, v in fields.items() if k != "overlap"}
    return dataclasses.replace(base, stride=TILE - overlap, overlap=overlap, **rest)


def measure(detect, slides: list, gt, cfg) -> dict:
    import pandas as pd

    from bloodcell.detect.whole_smear import detect_slide
    from bloodcell.evaluate.on_slides import variant_metrics

    found, seconds, megapixels = [], 0.0, 0.0
    for iid, rgb in slides:
        start = time.perf_counter()
        found.append(detect_slide(detect, rgb, cfg).assign(image_id=iid))
        seconds += time.perf_counter() - start
        megapixels += rgb.shape[0] * rgb.shape[1] / 1e6
    ids = [iid for iid, _ in slides]
    sizes = {iid: (rgb.shape[1], rgb.shape[0]) for iid, rgb in slides}
    result = variant_metrics(gt, pd.concat(found, ignore_index=True), ids, sizes)
    result["s_per_1000x1000"] = seconds / megapixels
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished pipeline run")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    a = parser.parse_args()

    import cv2
    import numpy as np
    import yaml

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS, parse_anchors
    from bloodcell.common.tf_threads import set_tf_threads
    from bloodcell.evaluate.on_slides import load_slides
    from bloodcell.model.card import model_anchors
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.inference import load_detector, tile_detector

    set_tf_threads()
    params = yaml.safe_load((a.run / "params.yaml").read_text())
    d = params["decode"]
    model = a.run / "models" / "detector.keras"
    anchors = model_anchors(model, parse_anchors(params["model"]["anchors"]), ORIGINAL_ANCHORS)
    detect = tile_detector(load_detector(model), anchors,
                           DecodeConfig(d["score_threshold"], d["nms_iou"]))
    images, gt = load_slides(a.run / "data" / "slides")
    slides = [(Path(im["file_name"]).stem, np.ascontiguousarray(
        cv2.imread(str(a.run / "data" / "slides" / im["file_name"]))[:, :, ::-1]))
        for im in images]
    detect(slides[0][1][None, :224, :224])  # compile before timing
    test = a.run / "metrics" / "evaluate.json"
    if test.is_file():
        test_map = json.loads(test.read_text())["coco"]["map50"]
        print(f"test split mAP@0.5 (same model): {test_map:.3f}")
    print(f"{len(slides)} synthetic slides")
    print(f"{'variant':20s} {'mAP50':>6s} {'WBCacc':>6s} {'parasit':>7s} {'s/Mpx':>6s} "
          "count errors per class")
    for name in a.variants:
        r = measure(detect, slides, gt, slide_config(params, VARIANTS[name]))
        errors = " ".join(f"{k}:{v:.2f}" for k, v in r["count_errors"].items() if v is not None)
        print(f"{name:20s} {r['map50']:6.3f} {r['wbc_type_accuracy'] or 0:6.3f} "
              f"{r['parasitemia_abs_error_pp'] or 0:7.2f} {r['s_per_1000x1000']:6.3f} {errors}",
              flush=True)


if __name__ == "__main__":
    main()
