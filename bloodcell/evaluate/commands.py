"""Subcommands of the evaluation stages: ``evaluate`` (the test split's synthetic images) and
``evaluate-slides`` (the synthetic whole slides). TensorFlow is imported only when one runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from bloodcell.common.cli_args import param_option
from bloodcell.common.detection_options import add_decode, add_slide, model_anchors, slide_config
from bloodcell.common.tf_threads import set_tf_threads


def add_parser(sub) -> None:
    """``bloodcell evaluate`` and ``bloodcell evaluate-slides``."""
    p = sub.add_parser("evaluate", help="evaluate the detector on the test split",
                       description="Detect on the test shards and write COCO mAP (pycocotools), "
                       "the original's lenient mAP for comparison, exact-match accuracy, RBC "
                       "infected-vs-healthy metrics and count errors (JSON), plot data (CSV) "
                       "and figures (PNG).")
    p.add_argument("--shards", type=Path, required=True, help="data/synth; uses test-* shards")
    p.add_argument("--model", type=Path, required=True, help="trained detector (.keras)")
    p.add_argument("--histories", type=Path, nargs=2, required=True,
                   metavar=("CLASSIFIER_CSV", "DETECTOR_CSV"), help="training histories")
    add_decode(p)
    param_option(p, "--max-dets", key="evaluate.max_dets", type=int, help="COCOeval maxDets")
    param_option(p, "--map-score-threshold", key="evaluate.map_score_threshold", type=float,
                 help="lowest score kept for mAP and PR curves (the other metrics use "
                   "--score-threshold, the operating point)")
    param_option(p, "--rbc-iou", key="evaluate.rbc_iou", type=float,
                 help="IoU of the RBC matching")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--plots", type=Path, required=True, help="folder for plot CSVs")
    p.add_argument("--figures", type=Path, required=True, help="folder for PNG figures")
    p.set_defaults(main=main_evaluate)

    p = sub.add_parser("evaluate-slides", help="whole-slide detection on the synthetic slides",
                       description="Detect on every slide of data/slides with and without the "
                       "second pass; write mAP@0.5 per class, WBC type accuracy, count and "
                       "parasitemia errors (JSON) and annotated examples (PNG).")
    p.add_argument("--slides", type=Path, required=True, help="data/slides")
    p.add_argument("--model", type=Path, required=True, help="trained detector (.keras)")
    add_decode(p)
    add_slide(p)
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--figures", type=Path, required=True, help="folder for annotated slides")
    p.set_defaults(main=main_evaluate_slides)


def main_evaluate(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.dataset.shards import shard_dirs
    from bloodcell.evaluate.on_test_split import EvalConfig, run
    from bloodcell.model.decode import DecodeConfig

    set_tf_threads()
    decode = DecodeConfig(a.score_threshold, a.nms_iou, tta=a.tta)
    cfg = EvalConfig(model_anchors(a), decode, a.max_dets, a.rbc_iou, a.map_score_threshold)
    hist = dict(zip(("classifier", "detector"), a.histories))
    inputs = [a.shards, a.model, *a.histories]
    with atomic_dir(a.plots, a.command, inputs, [a.figures, a.metrics]) as plots_tmp, \
            atomic_dir(a.figures, a.command, inputs, [a.plots, a.metrics]) as fig_tmp:
        result = run(a.model, shard_dirs(a.shards, "test"), hist, cfg, a.metrics, plots_tmp,
                     fig_tmp)
    print(f"test mAP@0.5 {result['coco']['map50']:.4f}  mAP@[.5:.95] "
          f"{result['coco']['map50_95']:.4f}  exact match "
          f"{result['classification_exact_match']:.4f}")


def main_evaluate_slides(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.evaluate.on_slides import run
    from bloodcell.model.decode import DecodeConfig

    set_tf_threads()
    cfg = slide_config(a)
    with atomic_dir(a.figures, a.command, [a.slides, a.model], [a.metrics]) as fig_tmp:
        decode = DecodeConfig(a.score_threshold, a.nms_iou, tta=a.tta)
        result = run(a.model, a.slides, model_anchors(a), decode, cfg, a.metrics, fig_tmp)
    for v in ("first_pass_only", "second_pass"):
        r = result[v]
        print(f"{v}: mAP@0.5 {r['map50']:.4f}  WBC type accuracy {r['wbc_type_accuracy']}")
