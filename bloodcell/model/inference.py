"""Batched detector inference on 224x224 tiles and on shard files, as detection tables.

One compiled call runs the model, decoding and NMS for a whole batch of tiles. Tables use the
columns of bloodcell.model.decode.to_frame: image_id, class_idx, score, x, y, w, h (pixels,
top-left origin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from bloodcell.common.errors import UserError
from bloodcell.dataset.tfrecords import examples
from bloodcell.model.decode import DecodeConfig, detect_batch, empty_detections, to_frame
from bloodcell.model.network import GRID, N_ANCHORS, VECTOR, fold_batchnorm

TileFn = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def load_detector(path: Path) -> keras.Model:
    """A trained detector ``.keras`` file in its inference form (BatchNorm folded in). Callers
    check first that the file exists, each with its own hint. Only the native ``.keras`` format
    is read, with Keras's safe mode (no code from the file is run)."""
    if Path(path).suffix != ".keras":
        raise UserError(f"{path}: only .keras model files are loaded (got "
                        f"{Path(path).suffix or 'no suffix'}); pass a models/detector.keras "
                        "from train_detector")
    try:
        net = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a broken or foreign file: Keras raises many kinds
        raise UserError(f"{path} is not a readable Keras model ({type(e).__name__}): "
                        "pass a models/detector.keras from train_detector") from None
    if tuple(net.output_shape[1:]) != (GRID, GRID, N_ANCHORS, VECTOR):
        raise UserError(f"{path} is not a ModifiedYolo detector (output {net.output_shape}): "
                        "pass models/detector.keras, not the classifier")
    return fold_batchnorm(net)


def tile_detector(model: keras.Model, anchors: tuple[tuple[float, float], ...],
                  cfg: DecodeConfig) -> TileFn:
    """A compiled function: tiles (B, 224, 224, 3) uint8 RGB -> numpy NMS results
    (boxes y1x1y2x2, scores, classes, valid counts)."""

    @tf.function(reduce_retracing=True)
    def run(tiles: tf.Tensor):
        return detect_batch(model(tiles, training=False), anchors, cfg)

    def call(tiles: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(t.numpy() for t in run(tf.convert_to_tensor(tiles)))

    return call


def ground_truth(batch: dict[str, tf.Tensor]) -> pd.DataFrame:
    """Ground-truth table (image_id, class_idx, x, y, w, h px, top-left) of a ragged batch from
    bloodcell.dataset.tfrecords.examples, in the batch's order of images and boxes."""
    ids = np.array([i.decode() for i in batch["id"].numpy()], dtype=object)
    classes, counts = flat_rows(batch["classes"])
    b = flat_rows(batch["boxes"])[0].reshape(-1, 4).astype(np.float64)
    return pd.DataFrame({"image_id": np.repeat(ids, counts), "class_idx": classes,
                         "x": b[:, 0], "y": b[:, 1], "w": b[:, 2], "h": b[:, 3]})


def flat_rows(t: tf.Tensor | tf.RaggedTensor) -> tuple[np.ndarray, np.ndarray]:
    """A batch's per-image values, all images' rows one after the other, and each image's count
    of rows (a dense batch: every image has all its rows)."""
    if isinstance(t, tf.RaggedTensor):
        return t.flat_values.numpy(), t.row_lengths().numpy()
    values = t.numpy()
    return values.reshape(-1, *values.shape[2:]), np.full(len(values), values.shape[1])


def predict_shards(model: keras.Model | None, files: Sequence[str], anchors, cfg: DecodeConfig,
                   batch: int = 50, detect: TileFn | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(ground truth, detections, image ids) for every image of the TFRecord files; ``detect``
    reuses an already compiled :func:`tile_detector` (or one from
    bloodcell.model.runtime.tile_function), and ``model`` is then not used."""
    detect = detect or tile_detector(model, anchors, cfg)
    gts, dets, ids = [], [], []
    for ex in examples(files, batch):
        image_ids = [i.decode() for i in ex["id"].numpy()]
        boxes, scores, classes, valid = detect(ex["image"].to_tensor() if isinstance(
            ex["image"], tf.RaggedTensor) else ex["image"])
        dets.append(to_frame(image_ids, boxes, scores, classes, valid))
        gts.append(ground_truth(ex))
        ids += image_ids
    det = pd.concat(dets, ignore_index=True) if dets else empty_detections()
    return pd.concat(gts, ignore_index=True), det, ids
