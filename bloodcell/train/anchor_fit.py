"""``bloodcell fit-anchors``: anchor sizes fitted to the training boxes (k-means on IoU).

YOLOv2 chose its anchors by k-means over the training boxes with ``1 - IoU`` as the distance
(box and anchor centred on the same point). Here every class gets the same weight (each class's
boxes are resampled to the same count) so that a small, rare class such as the thrombocytes
(about 10-13 px at the 40x scale, 1-2 % of the boxes) gets an anchor of its own instead of
being averaged into the red cells. Sizes are in grid units (16 px), as ``model.anchors`` takes
them. Only training boxes are read (the synth shards of split ``train`` and, if given, the real
tiles), so nothing of the validation or test split shapes the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bloodcell.common.errors import UserError
from bloodcell.common.tile import CELL_PX


def centred_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes (n, 2) and anchors (k, 2), both (w, h) in the same units, centres aligned
    -> (n, k)."""
    inter = (np.minimum(wh[:, None, 0], anchors[None, :, 0])
             * np.minimum(wh[:, None, 1], anchors[None, :, 1]))
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None] - inter
    return inter / union


def class_balanced(wh: np.ndarray, classes: np.ndarray, per_class: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``per_class`` boxes of each class, drawn with replacement -> (n_classes * per_class, 2)."""
    picked = [wh[rng.choice(np.flatnonzero(classes == c), per_class)]
              for c in np.unique(classes)]
    return np.concatenate(picked)


def kmeans_iou(wh: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 5,
               iterations: int = 100) -> np.ndarray:
    """k anchors (k, 2) minimising the mean ``1 - IoU`` to the nearest anchor (median update,
    as in YOLOv2's k-means), best of ``restarts`` random starts, sorted by area."""
    sizes = np.unique(wh, axis=0)
    if len(sizes) < k:
        raise UserError(f"{len(sizes)} distinct box sizes: too few for {k} anchors; lower --k "
                        "or add training data")
    best, best_fit = sizes[:k], -1.0
    for _ in range(restarts):
        anchors = sizes[rng.choice(len(sizes), k, replace=False)]
        for _ in range(iterations):
            nearest = centred_iou(wh, anchors).argmax(1)
            moved = np.array([np.median(wh[nearest == j], axis=0) if (nearest == j).any()
                              else anchors[j] for j in range(k)])
            if np.allclose(moved, anchors):
                break
            anchors = moved
        fit = centred_iou(wh, anchors).max(1).mean()
        if fit > best_fit:
            best, best_fit = anchors, fit
    return best[np.argsort(best[:, 0] * best[:, 1], kind="stable")]


def format_anchors(anchors: np.ndarray) -> str:
    """``model.anchors`` text of (k, 2) grid-unit sizes: ``"0.69x0.69,2.25x2.19,..."``."""
    return ",".join(f"{w:.2f}x{h:.2f}" for w, h in anchors)


def fit_quality(wh: np.ndarray, classes: np.ndarray, anchors: np.ndarray) -> dict[str, float]:
    """Mean IoU of each class's boxes with their nearest anchor (1 = a perfect prior)."""
    best = centred_iou(wh, anchors).max(1)
    return {str(c): float(best[classes == c].mean()) for c in np.unique(classes)}


def training_boxes(shards: Path, real_tiles: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(w, h) in grid units and the class name of every training box: the ``train`` split of
    the synth shards under ``shards`` and every box of ``real_tiles`` (training smears)."""
    from bloodcell.dataset.shards import shard_dirs
    from bloodcell.dataset.stats import load_objects

    train = shard_dirs(shards, "train")
    if not train:
        raise UserError(f"{shards}: no train-* shard; run the synth stage first")
    objects = load_objects(train + ([real_tiles] if real_tiles else []), ("w", "h", "class_name"))
    boxes = objects[["w", "h"]].to_numpy(float) / CELL_PX
    names = objects["class_name"].to_numpy(str)
    keep = (boxes > 0).all(1)
    return boxes[keep], names[keep]


def add_parser(sub) -> None:
    """``bloodcell fit-anchors``."""
    from bloodcell.common.cli_args import param_option, typed
    from bloodcell.common.hyperparams import parse_anchors

    p = sub.add_parser("fit-anchors", help="fit anchor sizes to the training boxes",
                       description=__doc__.split("\n\n")[1].replace("\n", " ")
                       + " Fits as many anchors as --compare has (the detector head has 6 "
                       "slots). Prints the model.anchors value and, per class, the mean IoU of "
                       "its boxes with the nearest anchor, fitted against --compare.")
    p.add_argument("--shards", type=Path, required=True,
                   help="folder of the synth shards (data/synth); reads <root>/train-*")
    p.add_argument("--real-tiles", type=Path, help="a real_tiles shard folder (data/real_tiles)")
    p.add_argument("--per-class", type=int, default=2000,
                   help="boxes drawn per class, so each class weighs the same")
    param_option(p, "--seed", key="seed", type=int)
    param_option(p, "--compare", key="model.anchors", type=typed("anchors", parse_anchors),
                 help="anchors to compare with")
    p.set_defaults(main=main)


def main(a: argparse.Namespace) -> None:
    """Fit and print the anchors and a per-class table of how well each set fits."""
    wh, names = training_boxes(a.shards, a.real_tiles)
    rng = np.random.default_rng(a.seed)
    anchors = kmeans_iou(class_balanced(wh, names, a.per_class, rng), len(a.compare), rng)
    fitted = fit_quality(wh, names, anchors)
    before = fit_quality(wh, names, np.array(a.compare, float))
    print(f"model.anchors: {format_anchors(anchors)}")
    print(f"{'class':<14}{'boxes':>8}{'fitted IoU':>12}{'compared IoU':>14}")
    for name in fitted:
        print(f"{name:<14}{int((names == name).sum()):>8}{fitted[name]:>12.3f}"
              f"{before[name]:>14.3f}")
