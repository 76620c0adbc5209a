"""Time of the detector's training input pipeline alone (no training step): one demo epoch of
batches with `augment: dihedral_stain`, read as training reads them now and as it read them
before, in one run.

    python benchmarks/input_pipeline.py --shards RUN/data/synth [--epochs 3]

Three ways, each over ``--epochs`` epochs (epoch seeds as `train_detector`'s):

- before: every epoch reads and PNG-decodes the TFRecords, and each flip or transpose of a
  tile is a ``tf.where`` on the whole image (both branches computed, the path before 09f3e75);
- the flips in ``tf.cond`` (only the chosen branch runs), still decoding every epoch;
- now: the flips in ``tf.cond`` and the decoded examples held in memory after the first epoch
  (``input_pipeline.decoded_examples``; its first epoch decodes and fills the memory).

Prints each epoch's seconds, the mean of epochs 2 on, and whether all three gave the same
batches. On a 2-core machine the pipeline shares the cores with the training step, so its
seconds add to each epoch's wall time almost one for one.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def dihedral_where(image, boxes, flips):
    """The flips and transpose as they were before 09f3e75: ``tf.where`` on whole images."""
    import tensorflow as tf

    from bloodcell.common.tile import TILE_PX

    x, y, w, h = tf.unstack(tf.reshape(boxes, (-1, 4)), axis=1)
    size = tf.constant(float(TILE_PX), boxes.dtype)
    image = tf.where(flips[0], tf.reverse(image, [1]), image)
    x = tf.where(flips[0], size - x - w, x)
    image = tf.where(flips[1], tf.reverse(image, [0]), image)
    y = tf.where(flips[1], size - y - h, y)
    image = tf.where(flips[2], tf.transpose(image, [1, 0, 2]), image)
    x, y, w, h = (tf.where(flips[2], b, a) for a, b in ((x, y), (y, x), (w, h), (h, w)))
    return image, tf.stack([x, y, w, h], axis=1)


def epochs(files: list[str], anchors, seed: int, epochs_n: int, decoded) -> tuple:
    """(seconds per epoch, a checksum of every batch) of ``epochs_n`` epochs."""
    import numpy as np

    from bloodcell.train import input_pipeline

    seconds, sums = [], []
    for epoch in range(1, epochs_n + 1):
        ds = input_pipeline.dataset(files, 50, "detector", shuffle_seed=seed * 1000 + epoch,
                                    anchors=anchors, augment_mode="dihedral_stain",
                                    decoded=decoded)
        start = time.perf_counter()
        batches = [(x.numpy(), y.numpy()) for x, y in ds]
        seconds.append(time.perf_counter() - start)
        sums.append([(int(x.astype(np.int64).sum()), float(y.sum())) for x, y in batches])
    return seconds, sums


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=Path, required=True, help="a demo run's data/synth")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=20190814, help="params.yaml's seed")
    a = p.parse_args()
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bloodcell.common.hyperparams import parse_anchors
    from bloodcell.dataset.tfrecords import count_records
    from bloodcell.train import augment, input_pipeline

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "config"
                             / "params-demo.yaml").read_text())
    anchors = parse_anchors(params["model"]["anchors"])
    files = sorted(str(f) for f in a.shards.glob("train-*/images.tfrecord"))
    n = count_records(files)
    print(f"{os.cpu_count()} CPUs, {n} training tiles, batch 50, {a.epochs} epochs each")
    kept, results = augment.dihedral, {}
    try:
        augment.dihedral = dihedral_where
        results["before: decode every epoch, flips by tf.where"] = epochs(
            files, anchors, a.seed, a.epochs, None)
    finally:
        augment.dihedral = kept
    results["flips by tf.cond, decode every epoch"] = epochs(files, anchors, a.seed,
                                                             a.epochs, None)
    results["now: flips by tf.cond, decoded tiles in memory"] = epochs(
        files, anchors, a.seed, a.epochs, input_pipeline.decoded_examples(files, n))
    for name, (seconds, _) in results.items():
        later = seconds[1:] or seconds
        print(f"{name:48s}: " + ", ".join(f"{s:.2f}" for s in seconds)
              + f" s per epoch, mean of epochs 2 on {sum(later) / len(later):.2f} s")
    sums = [s for _, s in results.values()]
    print("the same batches all three ways:", all(s == sums[0] for s in sums))


if __name__ == "__main__":
    main()
