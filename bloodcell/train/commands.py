"""Subcommands of the training stages: ``train-classifier`` and ``train-detector``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bloodcell.common.errors import UserError


def set_tf_threads() -> None:
    """TensorFlow's intra-op threads from OMP_NUM_THREADS (Snakemake sets it per job), and one
    inter-op thread: ops running side by side made CPU training non-deterministic even with
    op determinism on (measured: one thread gives bit-identical weights at the same speed)."""
    import tensorflow as tf

    threads = os.environ.get("OMP_NUM_THREADS", "")
    try:
        if threads.isdigit() and int(threads) > 0:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already runs in this process (a notebook): keep its own
        pass


def _type(name: str, conv):
    def parse(text: str):
        try:
            return conv(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"bad {name} {text!r}: {err}") from None

    return parse


def add_common(p: argparse.ArgumentParser) -> None:
    from bloodcell.common.option_types import parse_schedule

    p.add_argument("--shards", type=Path, required=True,
                   help="folder of the synth shards (data/synth); uses <root>/train-* for "
                   "training and <root>/valid-* for validation")
    p.add_argument("--model", type=Path, required=True, help="best model to write (.keras)")
    p.add_argument("--history", type=Path, required=True,
                   help="per-epoch history CSV to write (for dvc plots)")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch", type=int, default=100, help="images per step (default 100)")
    p.add_argument("--schedule", type=_type("schedule", parse_schedule), required=True,
                   help="learning rate by epoch: FIRST_EPOCH:LR,... starting at 1, e.g. "
                   "1:1e-3,16:1e-4,18:1e-5")
    p.add_argument("--precision", choices=["float32", "mixed"], default="float32",
                   help="mixed: bfloat16 on CPU, float16 on GPU (float32 weights)")


def add_parsers(sub) -> None:
    from bloodcell.common.option_types import parse_anchors

    p = sub.add_parser("train-classifier", help="train ModifiedYolo as a 10-class classifier",
                       description="Train the trunk + a 10-way sigmoid head on the multi-hot "
                       "labels of the synthetic shards (sigmoid cross-entropy, Adam); keep the "
                       "model with the best validation exact-match accuracy. Resumes a killed "
                       "run from its last finished epoch (state in .bloodcell-state/).")
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-detector", help="train the ModifiedYolo detector",
                       description="Copy the classifier's trunk, add the detector head "
                       "(14x14 grid x 6 anchors x 15) and train with the YOLOv2 loss averaged "
                       "per image; keep the best model by validation mAP@0.5 or loss. Resumes "
                       "a killed run from its last finished epoch.")
    add_common(p)
    p.add_argument("--init", type=Path, required=True, help="trained classifier (.keras)")
    p.add_argument("--anchors", type=_type("anchors", parse_anchors), required=True,
                   help="anchor sizes WxH in 16-px grid units, comma-separated")
    p.add_argument("--match-iou", type=float, default=0.7,
                   help="anchors above this centred IoU are responsible, else the best one")
    p.add_argument("--lambda", dest="lambdas", type=float, nargs=3, default=[5.0, 0.5, 2.5],
                   metavar=("COORD", "NOOBJ", "CLASS"), help="loss term weights")
    p.add_argument("--class-loss", choices=["mse", "ce"], default="mse",
                   help="class term: squared error on softmax (the original) or cross-entropy")
    p.add_argument("--untyped-wbc", choices=["ignore", "any_type"], default="ignore",
                   help="class term of a white cell whose type is not annotated (label -1): "
                   "none, or 'one of the five types'")
    p.add_argument("--select", choices=["map50", "loss"], default="map50",
                   help="validation metric that picks the best epoch")
    p.add_argument("--map-score-threshold", type=float, default=0.01,
                   help="lowest score kept for the validation mAP (AP integrates over scores)")
    p.add_argument("--nms-iou", type=float, default=0.45)
    p.add_argument("--real-tiles", type=Path,
                   help="a real_tiles shard folder (data/real_tiles) to mix into training")
    p.add_argument("--real-share", type=float, default=0.0,
                   help="share of each epoch's images drawn from --real-tiles (0..0.9)")
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> None:
    from bloodcell.dataset.shards import shard_dirs
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.train import loop as train
    from bloodcell.train.loss import LossWeights

    set_tf_threads()
    if a.epochs < 1 or a.batch < 1:
        raise UserError("--epochs and --batch must be >= 1 (see train_* in params.yaml)")
    kind = a.command.removeprefix("train-")
    cfg = train.TrainConfig(kind, a.epochs, a.batch, a.schedule, a.seed,
                            mixed_precision=a.precision == "mixed", select="accuracy")
    init = None
    if kind == "detector":
        cfg = train.TrainConfig(
            kind, a.epochs, a.batch, a.schedule, a.seed, anchors=a.anchors,
            match_iou=a.match_iou, weights=LossWeights(*a.lambdas, a.class_loss, a.untyped_wbc),
            select=a.select,
            decode=DecodeConfig(a.map_score_threshold, a.nms_iou),
            mixed_precision=a.precision == "mixed", real_share=a.real_share)
        init = a.init
        if not 0 <= a.real_share <= 0.9 or (a.real_share > 0 and a.real_tiles is None):
            raise UserError(f"--real-share {a.real_share} must lie in 0..0.9 and needs "
                            "--real-tiles (see train_detector.real_share in params.yaml)")
    if not a.shards.is_dir():
        raise UserError(f"{a.shards} does not exist: run the synth stage first")
    train_dirs, valid_dirs = shard_dirs(a.shards, "train"), shard_dirs(a.shards, "valid")
    if not train_dirs or not valid_dirs:
        raise UserError(f"{a.shards} has no train-* or no valid-* shard: check synth.shards in "
                        "params.yaml")
    key = [f"{k}={v}" for k, v in sorted(vars(a).items()) if k not in ("log", "quiet", "func")]
    real = [a.real_tiles] if getattr(a, "real_tiles", None) is not None else []
    train.run(cfg, train_dirs, valid_dirs, a.model, a.history, a.metrics, key, init, real)


def add_decode(p: argparse.ArgumentParser) -> None:
    """--anchors (from the model's card unless given), --score-threshold, --nms-iou."""
    p.add_argument("--anchors", type=_type("anchors", parse_anchors_arg), default=None,
                   help="anchor sizes WxH in 16-px grid units; default: the ones the model was "
                   "trained with (stored in its file); a different value is refused")
    p.add_argument("--score-threshold", type=float, default=0.2,
                   help="boxes must score above this (class probability x objectness)")
    p.add_argument("--nms-iou", type=float, default=0.45, help="per-class NMS IoU")


def parse_anchors_arg(text: str):
    from bloodcell.common.option_types import parse_anchors

    return parse_anchors(text)


def model_anchors(a: argparse.Namespace):
    """The anchors to decode ``a.model`` with: its card's (an ``--anchors`` that differs is a
    UserError); for a model without a card, ``--anchors`` or the original's."""
    from bloodcell.common.option_types import ORIGINAL_ANCHORS
    from bloodcell.model.card import model_anchors as resolve

    return resolve(a.model, a.anchors, ORIGINAL_ANCHORS)


def rbc_diameter_arg(text: str) -> float | str:
    """``--rbc-diameter``: px or auto (bloodcell.detect.rbc_size's parser, imported only when the
    option is given)."""
    from bloodcell.detect.rbc_size import rbc_diameter_arg as parse

    return parse(text)


def add_model_and_scale(p: argparse.ArgumentParser) -> None:
    """--model and the scale to the model's 40x scale: --scale or --rbc-diameter PX|auto."""
    p.add_argument("--model", type=Path, default=Path("models/detector.keras"),
                   help="trained detector (default models/detector.keras)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scale", type=float, default=1.0,
                       help="resize factor to the model's 40x scale (default 1)")
    group.add_argument("--rbc-diameter", type=rbc_diameter_arg, metavar="PX|auto",
                       help="typical RBC diameter in the images, in px, or auto: estimated "
                       "on each image (printed); sets the scale")


def stride_arg(text: str) -> int:
    """``--stride``: tile step, an integer 1..224 px."""
    from bloodcell.detect.whole_smear import TILE

    try:
        px = int(text)
    except ValueError:
        px = 0
    if not 1 <= px <= TILE:
        raise argparse.ArgumentTypeError(f"{text!r}: give the tile step in px, an "
                                         f"integer 1..{TILE}")
    return px


def overlap_arg(text: str) -> int:
    """``--overlap``: px shared by neighbouring 224 tiles. An integer is px (0..223); a decimal
    number is a share of the tile below 1 ("0.2"), and "20%" a percentage below 100; a share
    becomes round(224 * share) px (Python's round: to the nearest, halves to even)."""
    from bloodcell.detect.whole_smear import TILE

    body = text.strip()
    try:
        if body.isdigit():
            px = int(body)
        else:
            share = float(body[:-1]) / 100 if body.endswith("%") else float(body)
            px = round(TILE * share) if 0 <= share < 1 else -1
    except ValueError:
        px = -1
    if not 0 <= px < TILE:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give px (an integer 0..{TILE - 1}), a share of the {TILE} px "
            f"tile (0.2) or a percentage (20%) that leaves a stride of at least 1 px")
    return px


def merge_iou_arg(text: str) -> float:
    """``--merge-iou``: a threshold 0..1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number 0..1")
    return value


class TileStep(argparse.Action):
    """``--stride`` or ``--overlap`` (stride = 224 - overlap): sets both ``stride`` and
    ``overlap`` (None when the stride was given); giving both is an error."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from bloodcell.detect.whole_smear import TILE

        if getattr(namespace, "tile_step_option", self.dest) != self.dest:
            parser.error("give --stride or --overlap, not both (stride = 224 - overlap px)")
        namespace.tile_step_option = self.dest
        namespace.overlap = values if self.dest == "overlap" else None
        namespace.stride = TILE - values if self.dest == "overlap" else values


def add_slide(p: argparse.ArgumentParser) -> None:
    """Whole-slide options: --stride or --overlap, --merge-iou, --merge-metric, --adjacency-px.
    ``a.stride`` is always the tile step in px and ``a.overlap`` the overlap px or None."""
    from bloodcell.detect.whole_smear import DEFAULT_OVERLAP_PX, TILE

    p.add_argument("--stride", type=stride_arg, action=TileStep,
                   default=TILE - DEFAULT_OVERLAP_PX, metavar="PX",
                   help="tile step in px, 1..224 (224: tiles only touch)")
    p.add_argument("--overlap", type=overlap_arg, action=TileStep, default=DEFAULT_OVERLAP_PX,
                   metavar="PX|SHARE|PCT",
                   help="overlap of neighbouring tiles instead of --stride: px (48), a share "
                   "of the 224 tile (0.2) or a percentage (20%%), rounded to whole px; the "
                   f"stride becomes 224 - overlap (default {DEFAULT_OVERLAP_PX} px, 20%%)")
    p.add_argument("--merge-iou", type=merge_iou_arg, default=0.3,
                   help="same-class boxes overlapping more than this (0..1) are merged")
    p.add_argument("--merge-metric", choices=("iou", "ios"), default="iou",
                   help="overlap measure of the final merge: iou (IoU, plus boxes 70%% inside "
                   "a kept one; default) or ios (intersection over the smaller box, as "
                   "SAHI's NMS with IOS)")
    p.add_argument("--adjacency-px", type=int, default=6,
                   help="boxes this close across a tile seam count as one cut cell")


def slide_config(a: argparse.Namespace):
    """The whole-slide settings of a command that took add_slide's options."""
    from bloodcell.detect.whole_smear import SlideConfig

    return SlideConfig(a.stride, a.merge_iou, a.adjacency_px, merge_metric=a.merge_metric,
                       overlap=a.overlap)


def add_eval_parsers(sub) -> None:
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
    p.add_argument("--max-dets", type=int, default=1000, help="COCOeval maxDets")
    p.add_argument("--map-score-threshold", type=float, default=0.01,
                   help="lowest score kept for mAP and PR curves (the other metrics use "
                   "--score-threshold, the operating point)")
    p.add_argument("--rbc-iou", type=float, default=0.5, help="IoU of the RBC matching")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--plots", type=Path, required=True, help="folder for plot CSVs")
    p.add_argument("--figures", type=Path, required=True, help="folder for PNG figures")
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_evaluate_slides)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.dataset.shards import shard_dirs
    from bloodcell.evaluate.test_split import EvalConfig, run
    from bloodcell.model.decode import DecodeConfig

    set_tf_threads()
    cfg = EvalConfig(model_anchors(a), DecodeConfig(a.score_threshold, a.nms_iou), a.max_dets,
                     a.rbc_iou, a.map_score_threshold)
    hist = dict(zip(("classifier", "detector"), a.histories))
    inputs = [a.shards, a.model, *a.histories]
    with atomic_dir(a.plots, a.command, inputs, [a.figures, a.metrics]) as plots_tmp, \
            atomic_dir(a.figures, a.command, inputs, [a.plots, a.metrics]) as fig_tmp:
        result = run(a.model, shard_dirs(a.shards, "test"), hist, cfg, a.metrics, plots_tmp,
                     fig_tmp)
    print(f"test mAP@0.5 {result['coco']['map50']:.4f}  mAP@[.5:.95] "
          f"{result['coco']['map50_95']:.4f}  exact match "
          f"{result['classification_exact_match']:.4f}")


def cmd_evaluate_slides(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.evaluate.whole_slides import run
    from bloodcell.model.decode import DecodeConfig

    set_tf_threads()
    cfg = slide_config(a)
    with atomic_dir(a.figures, a.command, [a.slides, a.model], [a.metrics]) as fig_tmp:
        decode = DecodeConfig(a.score_threshold, a.nms_iou)
        result = run(a.model, a.slides, model_anchors(a), decode, cfg, a.metrics, fig_tmp)
    for v in ("first_pass_only", "second_pass"):
        r = result[v]
        print(f"{v}: mAP@0.5 {r['map50']:.4f}  WBC type accuracy {r['wbc_type_accuracy']}")
