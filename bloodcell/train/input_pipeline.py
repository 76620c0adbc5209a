"""tf.data input pipelines over the synthetic shards (format: bloodcell.dataset.shards).

Images come out as (B, 224, 224, 3) uint8 **RGB** (the model scales them itself). Parsing, PNG
decoding and target encoding run in parallel map calls, batches are prefetched, and the
element order is deterministic: the training order of epoch e is a shuffle seeded by
(seed, e), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from bloodcell.common.tile import TILE_PX
from bloodcell.dataset.tfrecords import parse
from bloodcell.train.augment import augment
from bloodcell.train.targets import detector_targets, multi_hot

SHUFFLE_BUFFER = 20000
"""Examples held for shuffling: serialised (about 100 kB each), or decoded (150 kB) when the
training set is held in memory (:func:`decoded_examples`); the whole dataset for the demo."""


def augmented(ds: tf.data.Dataset, mode: str, seed: int) -> tf.data.Dataset:
    """Parsed examples ``ds``, each augmented by ``mode`` (bloodcell.train.augment) with the
    stateless seed (``seed``, its index in ``ds``)."""
    if mode == "none":
        return ds

    def one(index: tf.Tensor, ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image, boxes = augment(ex["image"], ex["boxes"], mode,
                               tf.stack([tf.constant(seed, tf.int64), index]))
        return {**ex, "image": image, "boxes": boxes}

    return ds.enumerate().map(one, num_parallel_calls=tf.data.AUTOTUNE)


CACHE_BYTES = 2 * 2**30
"""Largest decoded training set held in memory between epochs (the demo's 4,000 tiles: 0.6 GB;
the paper's 65k would take 9.9 GB and are decoded every epoch)."""


def decoded_examples(files: Sequence[str], n_images: int) -> tf.data.Dataset | None:
    """The parsed examples of ``files`` in file order, kept in memory after their first full
    pass, so that later epochs skip reading and PNG decoding (about a fifth of the demo's
    input pipeline); None when ``n_images`` decoded tiles exceed :data:`CACHE_BYTES`. Build it
    once per training run and pass it to :func:`dataset` as ``decoded``: one full pass at a
    time (each epoch's iterator ends before the next starts)."""
    if n_images * TILE_PX * TILE_PX * 3 > CACHE_BYTES:
        return None
    ds = tf.data.TFRecordDataset(list(files)).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache()


def pipeline_options() -> tf.data.Options:
    """Deterministic order, and no autotuning thread: tf.data's autotuner sleeps between rounds
    (up to a minute) and destroying an epoch's iterator waited for it, 20-26 s at the end of
    most demo epochs (a quarter of each). AUTOTUNE parallelism then stays at one thread per
    CPU (at most 16)."""
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False
    return options


def dataset(files: Sequence[str], batch: int, kind: str, *, shuffle_seed: int | None = None,
            anchors: tuple[tuple[float, float], ...] = (), match_iou: float = 0.7,
            augment_mode: str = "none", decoded: tf.data.Dataset | None = None
            ) -> tf.data.Dataset:
    """Batches of (image uint8, label): ``kind`` "classifier" gives (B, 10) multi-hot labels,
    "detector" (B, 14, 14, A, 15) targets. ``shuffle_seed`` None keeps the file order;
    ``augment_mode`` (training only) is seeded by ``shuffle_seed``; ``decoded``: the files'
    examples from :func:`decoded_examples`, read instead of the files (the same batches)."""
    if augment_mode != "none" and shuffle_seed is None:
        raise ValueError("augmentation is for training batches, which have a shuffle seed")
    if decoded is None:  # shuffled serialised (smaller than decoded tiles), then parsed
        ds = shuffled(tf.data.TFRecordDataset(list(files)), shuffle_seed)
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    else:  # a shuffle's order depends on its seed and length only: the same examples
        ds = shuffled(decoded, shuffle_seed)

    def label(ex: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        if kind == "classifier":
            return ex["image"], multi_hot(ex["classes"])
        return ex["image"], detector_targets(ex["boxes"], ex["classes"], anchors, match_iou)

    ds = augmented(ds, augment_mode, shuffle_seed or 0).map(
        label, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def shuffled(ds: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """``ds`` in the order of a shuffle seeded by ``seed`` (None: unchanged)."""
    if seed is None:
        return ds
    return ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)


def validation_examples(files: Sequence[str], batch: int,
                        anchors: tuple[tuple[float, float], ...], match_iou: float
                        ) -> tf.data.Dataset:
    """The detector's validation batches in file order: parsed examples (id, image, ragged boxes
    and classes: the mAP's ground truth) with each tile's training target under ``target``, so
    that one forward pass gives both the validation loss and the detections."""
    def with_target(ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {**ex, "target": detector_targets(ex["boxes"], ex["classes"], anchors,
                                                 match_iou)}

    ds = tf.data.TFRecordDataset(list(files)).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(with_target, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ragged_batch(batch).prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def mixed(files: Sequence[str], real_files: Sequence[str], share: float, n_images: int,
          batch: int, seed: int, anchors: tuple[tuple[float, float], ...], match_iou: float,
          augment_mode: str = "none") -> tf.data.Dataset:
    """One epoch of detector batches of ``n_images`` images, ``round(share * n_images)`` of them
    real tiles (drawn from the seeded, repeated real shard) and the rest the first synthetic
    images of a seeded shuffle, interleaved in a seeded order, each augmented by
    ``augment_mode``: deterministic for a seed."""
    import numpy as np

    n_real = int(round(share * n_images))
    synth = tf.data.TFRecordDataset(list(files)).shuffle(
        SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False).take(n_images - n_real)
    real = tf.data.TFRecordDataset(list(real_files)).repeat().shuffle(
        SHUFFLE_BUFFER, seed=seed + 1, reshuffle_each_iteration=True).take(n_real)
    order = np.random.default_rng(seed).permutation(
        np.r_[np.zeros(n_images - n_real, np.int64), np.ones(n_real, np.int64)])
    ds = tf.data.Dataset.choose_from_datasets([synth, real], tf.data.Dataset.from_tensor_slices(
        order))

    def label(ex: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        return ex["image"], detector_targets(ex["boxes"], ex["classes"], anchors, match_iou)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    ds = augmented(ds, augment_mode, seed).map(label, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())
