"""Subcommands of the training stages: ``train-classifier`` and ``train-detector``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bloodcell.common.cli_args import param_option, typed
from bloodcell.common.errors import UserError
from bloodcell.common.param_defaults import param_default
from bloodcell.common.tf_threads import set_tf_threads
from bloodcell.train import precision

log = logging.getLogger("bloodcell")


def add_common(p: argparse.ArgumentParser, kind: str) -> None:
    """Options both training stages take; ``kind``: train_classifier or train_detector (the
    params group their defaults come from)."""
    from bloodcell.common.hyperparams import parse_schedule

    p.add_argument("--shards", type=Path, required=True,
                   help="folder of the synth shards (data/synth); uses <root>/train-* for "
                   "training and <root>/valid-* for validation")
    p.add_argument("--model", type=Path, required=True, help="best model to write (.keras)")
    p.add_argument("--history", type=Path, required=True,
                   help="per-epoch history CSV to write (for dvc plots)")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    param_option(p, "--batch", key=f"{kind}.batch", type=int, help="images per step")
    p.add_argument("--schedule", type=typed("schedule", parse_schedule), required=True,
                   help="learning rate by epoch: FIRST_EPOCH:LR,... starting at 1, e.g. "
                   "1:1e-3,16:1e-4,18:1e-5")
    param_option(p, "--precision", key=f"{kind}.precision", choices=list(precision.CHOICES),
                 help="mixed: bfloat16 on CPU, float16 on GPU (float32 weights); auto: mixed "
                 "on a GPU or a CPU with AMX or AVX-512 BF16, else float32")


def add_parser(sub) -> None:
    """``bloodcell train-classifier`` and ``bloodcell train-detector``."""
    from bloodcell.common.hyperparams import parse_anchors

    p = sub.add_parser("train-classifier", help="train ModifiedYolo as a 10-class classifier",
                       description="Train the trunk + a 10-way sigmoid head on the multi-hot "
                       "labels of the synthetic shards (sigmoid cross-entropy, Adam); keep the "
                       "model with the best validation exact-match accuracy. Resumes a killed "
                       "run from its last finished epoch (state in .bloodcell-state/).")
    add_common(p, "train_classifier")
    p.set_defaults(main=main)

    p = sub.add_parser("train-detector", help="train the ModifiedYolo detector",
                       description="Copy the classifier's trunk, add the detector head "
                       "(14x14 grid x 6 anchors x 15) and train with the YOLOv2 loss averaged "
                       "per image; keep the best model by validation mAP@0.5 or loss. Resumes "
                       "a killed run from its last finished epoch.")
    add_common(p, "train_detector")
    p.add_argument("--init", type=Path, required=True, help="trained classifier (.keras)")
    p.add_argument("--anchors", type=typed("anchors", parse_anchors), required=True,
                   help="anchor sizes WxH in 16-px grid units, comma-separated")
    param_option(p, "--match-iou", key="model.match_iou", type=float,
                 help="anchors above this centred IoU are responsible, else the best one")
    param_option(p, "--head", key="model.head", choices=["plain", "passthrough"],
                 help="detector head: the original's, or with YOLOv2's passthrough of the "
                 "trunk's stride-8 features (for cells smaller than a 16-px grid cell)")
    p.add_argument("--lambda", dest="lambdas", type=float, nargs=3,
                   default=[param_default(f"train_detector.lambda_{term}")
                            for term in ("coord", "noobj", "class")],
                   metavar=("COORD", "NOOBJ", "CLASS"),
                   help="loss term weights; params.yaml train_detector.lambda_*")
    param_option(p, "--class-loss", key="train_detector.class_loss", choices=["mse", "ce"],
                 help="class term: squared error on softmax (the original) or cross-entropy")
    param_option(p, "--obj-loss", key="train_detector.obj_loss", choices=["mse", "bce"],
                 help="objectness term: squared error on sigmoid (the original) or binary "
                 "cross-entropy")
    param_option(p, "--obj-target", key="train_detector.obj_target", choices=["one", "iou"],
                 help="objectness target at a responsible anchor: 1 (the original) or, as in "
                 "YOLOv2, the IoU of its predicted box with the object")
    param_option(p, "--box-loss", key="train_detector.box_loss", choices=["mse", "giou", "ciou"],
                 help="box term: squared errors of x, y, w, h (the original) or an IoU loss, "
                 "which weighs a small box's misplacement as much as a large one's")
    param_option(p, "--untyped-wbc", key="train_detector.untyped_wbc",
                 choices=["ignore", "any_type"],
                 help="class term of a white cell whose type is not annotated (label -1): "
                 "none, or 'one of the five types'")
    param_option(p, "--select", key="train_detector.select", choices=["map50", "loss"],
                 help="validation metric that picks the best epoch")
    param_option(p, "--map-score-threshold", key="evaluate.map_score_threshold", type=float,
                 help="lowest score kept for the validation mAP (AP integrates over scores)")
    param_option(p, "--nms-iou", key="decode.nms_iou", type=float)
    param_option(p, "--augment", key="train_detector.augment",
                 choices=["none", "dihedral", "dihedral_stain"],
                 help="training-tile augmentation: the tile's 8 flips and quarter turns, and "
                 "those with a stain jitter (brightness, contrast, saturation, hue)")
    param_option(p, "--ema", key="train_detector.ema", type=float,
                 help="momentum of a moving average of the weights (e.g. 0.99), which "
                 "validation scores and the kept model is; 0: off")
    p.add_argument("--real-tiles", type=Path,
                   help="a real_tiles shard folder (data/real_tiles) to mix into training")
    param_option(p, "--real-share", key="train_detector.real_share", type=float,
                 help="share of each epoch's images drawn from --real-tiles (0..0.9)")
    p.set_defaults(main=main)


def main(a: argparse.Namespace) -> None:
    from bloodcell.dataset.shards import shard_dirs
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.train import loop as train
    from bloodcell.train.loss import LossWeights

    set_tf_threads()
    if a.epochs < 1 or a.batch < 1:
        raise UserError("--epochs and --batch must be >= 1 (see train_* in params.yaml)")
    kind = a.command.removeprefix("train-")
    policy = precision.machine_policy(a.precision)
    log.info("precision %s: Keras policy %s", a.precision, policy)
    cfg = train.TrainConfig(kind, a.epochs, a.batch, a.schedule, a.seed, policy=policy,
                            select="accuracy")
    init = None
    if kind == "detector":
        cfg = train.TrainConfig(
            kind, a.epochs, a.batch, a.schedule, a.seed, anchors=a.anchors,
            match_iou=a.match_iou, weights=LossWeights(*a.lambdas, a.class_loss, a.untyped_wbc,
                                                         a.obj_loss, a.box_loss, a.obj_target),
            select=a.select,
            decode=DecodeConfig(a.map_score_threshold, a.nms_iou),
            policy=policy, real_share=a.real_share, head=a.head,
            augment=a.augment, ema=a.ema)
        init = a.init
        if not 0 <= a.ema < 1:
            raise UserError(f"--ema {a.ema} must lie in [0, 1) (0: off; see "
                            "train_detector.ema in params.yaml)")
        if not 0 <= a.real_share <= 0.9 or (a.real_share > 0 and a.real_tiles is None):
            raise UserError(f"--real-share {a.real_share} must lie in 0..0.9 and needs "
                            "--real-tiles (see train_detector.real_share in params.yaml)")
    if not a.shards.is_dir():
        raise UserError(f"{a.shards} does not exist: run the synth stage first")
    train_dirs, valid_dirs = shard_dirs(a.shards, "train"), shard_dirs(a.shards, "valid")
    if not train_dirs or not valid_dirs:
        raise UserError(f"{a.shards} has no train-* or no valid-* shard: check synth.shards in "
                        "params.yaml")
    key = [f"{k}={v}" for k, v in sorted(vars(a).items()) if k not in ("log", "quiet", "main")]
    real = [a.real_tiles] if getattr(a, "real_tiles", None) is not None else []
    train.run(cfg, train_dirs, valid_dirs, a.model, a.history, a.metrics, key, init, real)
