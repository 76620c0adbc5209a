"""Training-time augmentation of detector tiles: the eight flips and quarter turns of the tile
(its dihedral group) and a stain jitter (brightness, contrast, saturation, hue).

A blood smear has no up, down or handedness, so every flip or transpose of a tile is another
valid tile; stains and cameras vary from lab to lab, so colour shifts within what smears show
keep the detector from learning one lab's colours. Both are pure functions of the tile, its
boxes and a stateless seed: the same (seed, index) gives the same tile, so training stays
deterministic and a resumed run sees the same images.

Conventions: tiles (224, 224, 3) uint8 RGB; boxes (n, 4) float32 x, y, w, h in px, x, y the
top-left corner (bloodcell.dataset.tfrecords.parse).
"""

from __future__ import annotations

import tensorflow as tf

from bloodcell.common.tile import TILE_PX

MODES = ("none", "dihedral", "dihedral_stain")
"""``train_detector.augment`` values: nothing; flips and transposes; those and stain jitter."""

BRIGHTNESS = 0.08
"""Largest brightness shift, as a share of full scale (0..1)."""
CONTRAST = (0.85, 1.15)
SATURATION = (0.8, 1.2)
HUE = 0.03
"""Largest hue shift, as a share of the hue circle: a little towards purple or pink."""


def dihedral(image: tf.Tensor, boxes: tf.Tensor, flips: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The tile and its boxes mirrored left-right (``flips[0]``), top-bottom (``flips[1]``),
    then transposed (``flips[2]``, x <-> y); ``flips``: (3,) bool. Each image step is a
    ``tf.cond``, so only the chosen branch runs (``tf.where`` computed all three every time:
    three quarters of the input pipeline's augmentation time, the same bytes)."""
    x, y, w, h = tf.unstack(tf.reshape(boxes, (-1, 4)), axis=1)
    size = tf.constant(float(TILE_PX), boxes.dtype)
    image = tf.cond(flips[0], lambda: tf.reverse(image, [1]), lambda: image)
    x = tf.where(flips[0], size - x - w, x)
    image = tf.cond(flips[1], lambda: tf.reverse(image, [0]), lambda: image)
    y = tf.where(flips[1], size - y - h, y)
    image = tf.cond(flips[2], lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
    x, y, w, h = (tf.where(flips[2], b, a) for a, b in ((x, y), (y, x), (w, h), (h, w)))
    return image, tf.stack([x, y, w, h], axis=1)


def stain(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The tile with a random brightness, contrast, saturation and hue shift (stateless,
    ``seed``: (2,) int), rounded back to uint8."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    rgb = tf.image.convert_image_dtype(image, tf.float32)
    rgb = tf.image.stateless_random_brightness(rgb, BRIGHTNESS, seeds[0])
    rgb = tf.image.stateless_random_contrast(rgb, *CONTRAST, seeds[1])
    rgb = tf.image.stateless_random_saturation(rgb, *SATURATION, seeds[2])
    rgb = tf.image.stateless_random_hue(rgb, HUE, seeds[3])
    return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)


def augment(image: tf.Tensor, boxes: tf.Tensor, mode: str, seed: tf.Tensor
            ) -> tuple[tf.Tensor, tf.Tensor]:
    """One training tile augmented by ``mode`` (:data:`MODES`) with the stateless ``seed``
    ((2,) int: the run's seed and the image's index in its epoch)."""
    if mode not in MODES:
        raise ValueError(f"augment must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "none":
        return image, boxes
    flip_seed, stain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    flips = tf.random.stateless_uniform((3,), flip_seed) < 0.5
    image, boxes = dihedral(image, boxes, flips)
    if mode == "dihedral_stain":
        image = stain(image, stain_seed)
    return image, boxes
