"""Reading the synthetic shards' TFRecords with tf.data (format: bloodcell.dataset.shards).

Shared by training's input pipeline (bloodcell.train.input_pipeline), inference over shards
(bloodcell.model.inference) and the model card. Images come out as (224, 224, 3) uint8 **RGB**;
boxes as (n, 4) x, y, w, h px with a top-left origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from bloodcell.common.errors import UserError
from bloodcell.common.tile import TILE_PX
from bloodcell.dataset.shards import TFRECORD_NAME

FEATURES = {
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}
def record_files(shard_dirs: Sequence[Path]) -> list[str]:
    """The TFRecord file of every shard folder, in the given order."""
    return [str(Path(d) / TFRECORD_NAME) for d in shard_dirs]


def parse(serialised: tf.Tensor) -> dict[str, tf.Tensor]:
    """One example -> id, image (224, 224, 3) uint8 RGB, boxes (n, 4: x, y, w, h px), classes."""
    f = tf.io.parse_single_example(serialised, FEATURES)
    xmin, ymin, xmax, ymax = (tf.sparse.to_dense(f[f"image/object/bbox/{k}"])
                              for k in ("xmin", "ymin", "xmax", "ymax"))
    image = tf.io.decode_png(f["image/encoded"], channels=3)
    return {
        "id": f["image/id"],
        "image": tf.ensure_shape(image, (TILE_PX, TILE_PX, 3)),
        "boxes": tf.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=1),
        "classes": tf.sparse.to_dense(f["image/object/class/label"]),
    }


def count_records(files: Sequence[str]) -> int:
    """Number of examples in the TFRecord files (one pass over the file index, no decode);
    UserError naming a damaged file."""
    total = 0
    for f in files:
        try:
            total += int(tf.data.TFRecordDataset([f]).reduce(0, lambda n, _: n + 1))
        except tf.errors.OpError as err:
            reason = (err.message or type(err).__name__).splitlines()[0][:160]
            raise UserError(f"{f}: damaged TFRecord ({reason}); re-run the stage that wrote "
                            "it") from None
    return total


def examples(files: Sequence[str], batch: int) -> tf.data.Dataset:
    """Batches of parsed examples for evaluation: images plus ragged boxes and classes."""
    ds = tf.data.TFRecordDataset(list(files)).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ragged_batch(batch).prefetch(tf.data.AUTOTUNE)
