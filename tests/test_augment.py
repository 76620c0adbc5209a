"""Training-tile augmentation: boxes follow the pixels through every flip and transpose, the
stain jitter stays within uint8 and repeats for a seed, and nothing changes with "none"."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from bloodcell.train.augment import augment, dihedral, stain


def tile_with_block(x: int, y: int, w: int, h: int) -> np.ndarray:
    img = np.zeros((224, 224, 3), np.uint8)
    img[y:y + h, x:x + w] = 255
    return img


def block_box(img: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(img[:, :, 0])
    return [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]


@pytest.mark.parametrize("flips", list(itertools.product([False, True], repeat=3)))
def test_boxes_follow_the_pixels_through_every_flip_and_transpose(flips):
    img = tile_with_block(10, 150, 30, 12)  # off-centre and not square: every move shows
    boxes = tf.constant([[10, 150, 30, 12]], tf.float32)
    out, moved = dihedral(tf.constant(img), boxes, tf.constant(flips))
    assert moved.numpy()[0].tolist() == block_box(out.numpy())


def test_no_boxes_pass_through():
    out, moved = dihedral(tf.constant(tile_with_block(1, 2, 3, 4)), tf.zeros((0, 4)),
                          tf.constant([True, True, True]))
    assert moved.shape == (0, 4)


def test_stain_jitter_repeats_for_a_seed_and_changes_with_it():
    rng = np.random.default_rng(0)
    img = tf.constant(rng.integers(60, 200, (224, 224, 3), np.uint8))
    a = stain(img, tf.constant([1, 7], tf.int64)).numpy()
    assert a.dtype == np.uint8
    assert np.array_equal(a, stain(img, tf.constant([1, 7], tf.int64)).numpy())
    b = stain(img, tf.constant([1, 8], tf.int64)).numpy()
    assert not np.array_equal(a, b)
    assert np.abs(a.astype(int) - img.numpy()).mean() < 40  # a shift, not a new image


def test_none_leaves_the_tile_and_boxes_as_they_are_and_unknown_modes_are_refused():
    img, boxes = tf.constant(tile_with_block(5, 6, 7, 8)), tf.constant([[5., 6., 7., 8.]])
    out, moved = augment(img, boxes, "none", tf.constant([0, 0], tf.int64))
    assert np.array_equal(out.numpy(), img.numpy()) and np.array_equal(moved, boxes)
    with pytest.raises(ValueError, match="dihedral"):
        augment(img, boxes, "rotate", tf.constant([0, 0], tf.int64))


def test_augmented_training_batches_are_deterministic(snakemake_run):
    from bloodcell.train.input_pipeline import dataset

    files = [str(snakemake_run / "data" / "synth" / "train-0" / "images.tfrecord")]

    def first(mode):
        ds = dataset(files, 4, "detector", shuffle_seed=5, anchors=((1.0, 1.0),),
                     augment_mode=mode)
        return next(iter(ds))

    (a, ta), (b, tb), (c, _) = first("dihedral_stain"), first("dihedral_stain"), first("none")
    assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(ta.numpy(), tb.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_training_batches_run_without_the_autotuning_thread(snakemake_run):
    """Ending an epoch must not wait on tf.data's autotuner (it sleeps up to a minute between
    rounds; with it, 20-26 s of most demo epochs went to destroying the iterator)."""
    from bloodcell.train.input_pipeline import dataset, mixed

    files = [str(snakemake_run / "data" / "synth" / "train-0" / "images.tfrecord")]
    for ds in (dataset(files, 4, "detector", shuffle_seed=5, anchors=((1.0, 1.0),)),
               dataset(files, 4, "classifier"),
               mixed(files, files, 0.5, 8, 4, 5, anchors=((1.0, 1.0),), match_iou=0.7)):
        assert ds.options().autotune.enabled is False
        assert ds.options().deterministic is True


def test_decoded_examples_held_in_memory_give_the_batches_the_files_give(snakemake_run,
                                                                          tmp_path):
    """Epochs read from the in-memory decoded examples get the same images and targets, in the
    same order, as epochs read from the files; after the first, the files are not read."""
    import shutil

    from bloodcell.train.input_pipeline import dataset, decoded_examples

    shard = tmp_path / "images.tfrecord"
    shutil.copy(snakemake_run / "data" / "synth" / "train-0" / "images.tfrecord", shard)
    files = [str(shard)]
    kw = {"anchors": ((1.0, 1.0),), "augment_mode": "dihedral_stain"}
    from_files = [list(dataset(files, 4, "detector", shuffle_seed=seed, **kw))
                  for seed in (5, 6, 7)]
    decoded = decoded_examples(files, 100)
    assert decoded is not None and decoded_examples(files, 10**6) is None  # 10^6 tiles: 150 GB
    for k, seed in enumerate((5, 6, 7)):
        from_memory = list(dataset(files, 4, "detector", shuffle_seed=seed, decoded=decoded,
                                   **kw))
        if k == 0:  # the cache is full: later epochs must not need the file
            shard.rename(tmp_path / "moved.tfrecord")
        assert len(from_memory) == len(from_files[k]) > 1
        for (a, ta), (b, tb) in zip(from_files[k], from_memory, strict=True):
            assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(ta.numpy(), tb.numpy())
