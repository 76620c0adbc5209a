"""ModifiedYolo: the stripped-down YOLOv2 of the original project, as Keras 3 functional models.

Input: a batch of 224x224 **RGB** images, float32 or uint8 values in 0..255 (the model scales
them to -1..1 itself, x / 127.5 - 1). The original fed BGR; we train from scratch on RGB
(fact sheet §11.10), so its weights are not loadable.

Trunk (fact sheet §3.1, with bug §11.1 fixed): 15 convolutions and 4 SAME max-pools down to
14x14x128. Each convolution is conv (no bias) -> BatchNorm -> LeakyReLU(0.1), and BatchNorm
really trains. Layer names (``conv0`` ... ``conv18`` and ``bn*``) are shared by both models, so
the detector can take the classifier's trunk weights by name.

Heads (bug §11.2 fixed: the output convolutions are linear):

- classifier: 1x1 conv to 10 logits per cell, global average pool -> (B, 10) **logits**
  (sigmoid gives the multi-label probabilities);
- detector: three 3x3 conv of 128 (+ BN + LeakyReLU) and a linear 1x1 conv to 90 channels,
  reshaped to (B, 14, 14, 6, 15), anchor-major (channel = anchor * 15 + k). Per anchor:
  [0:10] class logits, 10 tx, 11 ty, 12 tw, 13 th, 14 tconf (fact sheet §3.2 code order).

Detector head ``"passthrough"`` (YOLOv2's fine-grained features; the original's head is
``"plain"``): the trunk's 28x28x256 activation (``act_conv12``, stride 8, before the last
pool) goes through a 1x1 conv to 32 (``conv_pt``), is reorganised space-to-depth into
14x14x128 (each 16-px cell's 2x2 sub-cells side by side in the channels) and concatenated
with the head's second 3x3 conv output before the third. Max-pooling to stride 16 blurs where
inside its cell an object smaller than the cell lies (a 9-13 px thrombocyte in a 16 px cell);
the stride-8 features keep more of it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bloodcell.common.classes import N_CLASSES
from bloodcell.common.tile import GRID
from bloodcell.common.tile import TILE_PX as INPUT_SIZE
from bloodcell.model.fused_batchnorm import FusedBatchNorm

N_ANCHORS = 6
VECTOR = N_CLASSES + 5
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3
"""BatchNorm moving-average momentum. The original's 0.99 never acted (its BN was frozen);
0.9 lets the moving statistics settle within the few hundred steps of a CPU run."""

HEADS = ("plain", "passthrough")
PASSTHROUGH_FROM = "act_conv12"
PASSTHROUGH_FILTERS = 32

TRUNK: tuple[tuple[str, int, int], ...] = (
    ("conv", 3, 16), ("pool", 0, 0),
    ("conv", 3, 32), ("pool", 0, 0),
    ("conv", 1, 16), ("conv", 3, 128), ("conv", 1, 16), ("conv", 3, 128), ("pool", 0, 0),
    ("conv", 1, 32), ("conv", 3, 256), ("conv", 1, 32), ("conv", 3, 256), ("pool", 0, 0),
    ("conv", 1, 64), ("conv", 3, 512), ("conv", 1, 64), ("conv", 3, 512),
    ("conv", 1, 128),
)  # fmt: skip
"""(kind, kernel, filters) of layers 0..18; layer i is named conv<i> or pool<i>."""


def conv_block(x, name: str, kernel: int, filters: int, folded: bool = False,
               fused_bn: bool = True):
    """conv (SAME, stride 1, no bias) -> BatchNorm -> LeakyReLU(0.1). ``folded``: the
    inference form, conv with bias (BatchNorm folded in, see :func:`fold_batchnorm`) ->
    LeakyReLU. ``fused_bn``: the BatchNorm trains through TensorFlow's fused kernel
    (:class:`FusedBatchNorm`, the same layer and weights; False: Keras's own)."""
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=folded, name=name,
                      kernel_initializer="glorot_normal")(x)
    if not folded:
        norm = FusedBatchNorm if fused_bn else layers.BatchNormalization
        x = norm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"bn_{name}")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"act_{name}", dtype=activation_dtype())(x)


def activation_dtype() -> str | None:
    """The LeakyReLU layers' dtype policy: float32 under the mixed bfloat16 policy, else None
    (the global policy). The convolutions then run in bfloat16 on the CPU's matrix units, but
    TensorFlow's CPU LeakyReLU and its gradient are 5-8 times slower in bfloat16 than in
    float32 (more than the two casts cost; ``python benchmarks/train_speed.py``)."""
    policy = keras.mixed_precision.global_policy().name
    return "float32" if policy == "mixed_bfloat16" else None


def trunk_features(inputs, folded: bool = False, fused_bn: bool = True):
    """Layers 0..18 on a (B, 224, 224, 3) 0..255 RGB input -> the (B, 14, 14, 128) output
    and the (B, 28, 28, 256) stride-8 activation PASSTHROUGH_FROM."""
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    fine = None
    for i, (kind, kernel, filters) in enumerate(TRUNK):
        if kind == "pool":
            x = layers.MaxPooling2D(2, 2, padding="same", name=f"pool{i}")(x)
        else:
            x = conv_block(x, f"conv{i}", kernel, filters, folded, fused_bn)
        if f"act_conv{i}" == PASSTHROUGH_FROM:
            fine = x
    return x, fine


def trunk(inputs, folded: bool = False, fused_bn: bool = True):
    """Layers 0..18 on a (B, 224, 224, 3) 0..255 RGB input -> (B, 14, 14, 128)."""
    return trunk_features(inputs, folded, fused_bn)[0]


def space_to_depth(x, block: int = 2):
    """(B, H, W, C) -> (B, H/block, W/block, block*block*C) with built-in Keras layers only
    (a model file then loads in Keras's safe mode): channel index = (dy * block + dx) * C + c."""
    h, w, c = x.shape[1:]
    x = layers.Reshape((h // block, block, w // block, block, c), name="pt_split")(x)
    x = layers.Permute((1, 3, 2, 4, 5), name="pt_order")(x)
    return layers.Reshape((h // block, w // block, block * block * c), name="pt_stack")(x)


def classifier(fused_bn: bool = True) -> keras.Model:
    """Trunk + linear 1x1 conv to 10 + global average pool: (B, 10) logits (float32)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.Conv2D(N_CLASSES, 1, name="conv19")(trunk(inputs, fused_bn=fused_bn))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="modifiedyolo_classifier")


def detector(folded: bool = False, fused_bn: bool = True, head: str = "plain") -> keras.Model:
    """Trunk + 3 x (3x3 conv 128) + linear 1x1 conv to 90: (B, 14, 14, 6, 15) raw outputs.
    ``folded``: the inference form without BatchNorm layers (see :func:`fold_batchnorm`);
    ``fused_bn``: as :func:`conv_block`; ``head``: one of HEADS (module docstring)."""
    if head not in HEADS:
        raise ValueError(f"detector head {head!r}: expected one of {HEADS}")
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x, fine = trunk_features(inputs, folded, fused_bn)
    for i in (21, 22, 23):
        if i == 23 and head == "passthrough":
            pt = conv_block(fine, "conv_pt", 1, PASSTHROUGH_FILTERS, folded, fused_bn)
            x = layers.Concatenate(name="passthrough")([x, space_to_depth(pt)])
        x = conv_block(x, f"conv{i}", 3, 128, folded, fused_bn)
    x = layers.Conv2D(N_ANCHORS * VECTOR, 1, name="conv24")(x)
    x = layers.Reshape((GRID, GRID, N_ANCHORS, VECTOR), name="anchors")(x)
    out = layers.Activation("linear", dtype="float32", name="raw")(x)
    return keras.Model(inputs, out, name="modifiedyolo_detector")


def fold_batchnorm(net: keras.Model) -> keras.Model:
    """An inference copy of a trained detector with every BatchNorm folded into the conv before
    it: kernel * s and bias beta - mean * s, s = gamma / sqrt(var + eps). Same outputs up to
    float rounding (about 1e-5), about a quarter faster on CPU, where TensorFlow then fuses
    conv, bias and LeakyReLU into one op. Not for training (the BatchNorm statistics are gone)."""
    folded = detector(folded=True, head=detector_head(net))
    for layer in folded.layers:
        if isinstance(layer, layers.Conv2D) and layer.use_bias and layer.name != "conv24":
            (kernel,) = net.get_layer(layer.name).get_weights()
            gamma, beta, mean, var = net.get_layer(f"bn_{layer.name}").get_weights()
            s = gamma / np.sqrt(var + BN_EPSILON)
            layer.set_weights([kernel * s, beta - mean * s])
    folded.get_layer("conv24").set_weights(net.get_layer("conv24").get_weights())
    return folded


def detector_head(net: keras.Model) -> str:
    """The head (one of HEADS) a built or loaded detector has."""
    return "passthrough" if any(layer.name == "conv_pt" for layer in net.layers) else "plain"


def trunk_layer_names() -> list[str]:
    """Names of the trunk layers that carry weights (conv0..conv18 and their BatchNorms)."""
    names = []
    for i, (kind, _, _) in enumerate(TRUNK):
        if kind == "conv":
            names += [f"conv{i}", f"bn_conv{i}"]
    return names


def copy_trunk(source: keras.Model, target: keras.Model) -> int:
    """Copy the trunk weights of ``source`` into ``target`` by layer name; returns the count."""
    names = trunk_layer_names()
    for name in names:
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())
    return len(names)
