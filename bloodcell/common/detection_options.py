"""Command-line options of the commands that run the detector on images: ``detect``,
``evaluate-slides`` and ``evaluate-images`` (decoding, the model and its scale, whole-slide
tiling and merging). Defaults come from the params schema; the modules these options need
(the model card, the slide settings, the RBC-size estimator) are imported only when used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bloodcell.common.cli_args import param_option, typed
from bloodcell.common.tile import TILE_PX


def add_decode(p: argparse.ArgumentParser) -> None:
    """--anchors (from the model's card unless given), --score-threshold, --nms-iou, --tta."""
    p.add_argument("--anchors", type=typed("anchors", parse_anchors_arg), default=None,
                   help="anchor sizes WxH in 16-px grid units; default: the ones the model was "
                   "trained with (stored in its file); a different value is refused")
    param_option(p, "--score-threshold", key="decode.score_threshold", type=float,
                 help="boxes must score above this (class probability x objectness)")
    param_option(p, "--nms-iou", key="decode.nms_iou", type=float, help="per-class NMS IoU")
    param_option(p, "--tta", key="decode.tta", choices=("none", "flips", "dihedral"),
                 help="test-time augmentation: also detect each image mirrored (flips: 4 views) "
                 "or mirrored and transposed (dihedral: 8) and fuse the boxes; that many times "
                 "slower")


def parse_anchors_arg(text: str):
    from bloodcell.common.hyperparams import parse_anchors

    return parse_anchors(text)


def model_anchors(a: argparse.Namespace):
    """The anchors to decode ``a.model`` with: its card's (an ``--anchors`` that differs is a
    UserError); for a model without a card, ``--anchors`` or the original's."""
    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
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
    try:
        px = int(text)
    except ValueError:
        px = 0
    if not 1 <= px <= TILE_PX:
        raise argparse.ArgumentTypeError(f"{text!r}: give the tile step in px, an "
                                         f"integer 1..{TILE_PX}")
    return px


def overlap_arg(text: str) -> int:
    """``--overlap``: px shared by neighbouring 224 tiles. An integer is px (0..223); a decimal
    number is a share of the tile below 1 ("0.2"), and "20%" a percentage below 100; a share
    becomes round(224 * share) px (Python's round: to the nearest, halves to even)."""
    body = text.strip()
    try:
        if body.isdigit():
            px = int(body)
        else:
            share = float(body[:-1]) / 100 if body.endswith("%") else float(body)
            px = round(TILE_PX * share) if 0 <= share < 1 else -1
    except ValueError:
        px = -1
    if not 0 <= px < TILE_PX:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give px (an integer 0..{TILE_PX - 1}), a share of the {TILE_PX} px "
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
        if getattr(namespace, "tile_step_option", self.dest) != self.dest:
            parser.error("give --stride or --overlap, not both (stride = 224 - overlap px)")
        namespace.tile_step_option = self.dest
        namespace.overlap = values if self.dest == "overlap" else None
        namespace.stride = TILE_PX - values if self.dest == "overlap" else values


def add_slide(p: argparse.ArgumentParser) -> None:
    """Whole-slide options: --stride or --overlap, --merge-iou, --merge-metric, --adjacency-px.
    ``a.stride`` is always the tile step in px and ``a.overlap`` the overlap px or None."""
    overlap = param_option(p, "--overlap", key="slide_detection.overlap", type=overlap_arg,
                           action=TileStep, metavar="PX|SHARE|PCT",
                           help="overlap of neighbouring tiles instead of --stride: px (48), a "
                           "share of the 224 tile (0.2) or a percentage (20%%), rounded to whole "
                           "px; the stride becomes 224 - overlap")
    p.add_argument("--stride", type=stride_arg, action=TileStep,
                   default=TILE_PX - overlap.default, metavar="PX",
                   help="tile step in px, 1..224 (224: tiles only touch; default 224 - the "
                   "--overlap default)")
    param_option(p, "--merge-iou", key="slide_detection.merge_iou", type=merge_iou_arg,
                 help="same-class boxes overlapping more than this (0..1) are merged")
    param_option(p, "--merge-metric", key="slide_detection.merge_metric", choices=("iou", "ios"),
                 help="overlap measure of the final merge: iou (IoU, plus boxes 70%% inside "
                 "a kept one) or ios (intersection over the smaller box, as SAHI's NMS with IOS)")
    param_option(p, "--adjacency-px", key="slide_detection.adjacency_px", type=int,
                 help="boxes this close across a tile seam count as one cut cell")


def slide_config(a: argparse.Namespace):
    """The whole-slide settings of a command that took add_slide's options."""
    from bloodcell.detect.whole_smear import SlideConfig

    return SlideConfig(a.stride, a.merge_iou, a.adjacency_px, merge_metric=a.merge_metric,
                       overlap=a.overlap)
