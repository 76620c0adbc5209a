"""Where one ModifiedYolo detector training step spends its time, by op family (TF profiler).

Runs the compiled training step of the detector (the same `train.loop.step_fn` and loss as
training) on random 224 images at the demo batch, traces --steps steps with the TensorFlow
profiler, reads the trace's op events on the compute line of the host plane, and prints the
milliseconds per step and the share of each op family (forward and backward convolutions,
BatchNorm, LeakyReLU, max-pool, the optimizer update, the loss and the rest) and the convolutions'
sustained GFLOP/s.

    python benchmarks/step_profile.py [--batch 50] [--steps 3] [--keras-bn] [--precision mixed]

``--precision mixed`` profiles the `precision: mixed` path (bfloat16 convolutions and BatchNorm,
float32 LeakyReLU; the casts between them count with the layer that makes them, or as "other").
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILIES = (
    ("conv backward (input)", ("Conv2DBackpropInput",)),
    ("conv backward (filter)", ("Conv2DBackpropFilter",)),
    ("conv forward", ("Conv2D",)),
    ("BatchNorm", ("FusedBatchNorm",)),
    ("LeakyReLU", ("LeakyRelu",)),
    ("max-pool", ("MaxPool",)),
    ("optimizer (Adam)", ("ApplyAdam", "AssignVariable", "AssignAdd", "AssignSub")),
)
"""(family, op type substrings): the first family whose substring is in an op's type."""


NAME_FAMILIES = (("BatchNorm", "bn_"), ("optimizer (Adam)", "adam"), ("LeakyReLU", "act_"),
                 ("loss", "loss"))
"""(family, op name substring) for ops that are not fused kernels: Keras 3's BatchNorm and Adam
run as many element-wise ops, named after their layer or optimizer."""

TRACE_EVENTS = {"Record", "StartRegion", "StopRegion", "Process"}
"""Executor bookkeeping events of the trace, not ops."""


def family(op_type: str, name: str) -> str:
    """The op family of one traced op (its type and full name)."""
    conv = [fam for fam, keys in FAMILIES[:3] if any(k in op_type for k in keys)]
    if conv:
        return conv[0]
    for fam, key in NAME_FAMILIES:
        if key in name.lower():
            return fam
    for fam, keys in FAMILIES:
        if any(k in op_type for k in keys):
            return fam
    return "other"


def op_times(logdir: str) -> dict[str, float]:
    """Milliseconds per op family summed over the trace's compute-line op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    with open(path, "rb") as fh:
        space.ParseFromString(fh.read())
    totals: dict[str, float] = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_name, _, op_type = name.rpartition(":")
                if op_name and "::" not in name and op_type not in TRACE_EVENTS:
                    totals[family(op_type, op_name)] += event.duration_ps / 1e9
    return totals


def conv_flops(net, batch: int) -> float:
    """Forward multiply-adds x 2 of the detector's convolutions for one batch."""
    total = 0
    for layer in net.layers:
        if layer.__class__.__name__ == "Conv2D":
            _, h, w, c_out = layer.output.shape
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
            total += 2 * h * w * c_out * k
    return total * batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=3, help="steps traced (after one warm-up)")
    p.add_argument("--keras-bn", action="store_true",
                   help="Keras 3's own BatchNorm (the path before the fused one)")
    p.add_argument("--precision", choices=["float32", "mixed"], default="float32")
    a = p.parse_args()
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if a.precision == "mixed"
                                            else "float32")

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.model import network
    from bloodcell.train import loop

    tf.config.threading.set_inter_op_parallelism_threads(1)  # as training
    cfg = loop.TrainConfig("detector", 1, a.batch, ((1, 1e-3),), 1, anchors=ORIGINAL_ANCHORS)
    net = network.detector(fused_bn=not a.keras_bn)
    step = loop.step_fn(net, keras.optimizers.Adam(1e-3), loop.loss_function(cfg))
    x = tf.random.uniform((a.batch, 224, 224, 3), 0, 255, seed=1)
    y = tf.zeros((a.batch, 14, 14, network.N_ANCHORS, network.VECTOR))
    float(step(x, y)[0])
    start = time.perf_counter()
    for _ in range(a.steps):
        float(step(x, y)[0])
    untraced = (time.perf_counter() - start) / a.steps
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(a.steps):
            float(step(x, y)[0])
        tf.profiler.experimental.stop()
        times = op_times(logdir)
    total = sum(times.values())
    flops = conv_flops(net, a.batch)
    print(f"{os.cpu_count()} CPUs, batch {a.batch}, {'Keras' if a.keras_bn else 'fused'} "
          f"BatchNorm, {a.precision}: {1000 * untraced:.0f} ms per step untraced "
          f"({a.batch / untraced:.1f} img/s); traced op time {total / a.steps:.0f} ms per step")
    for fam, ms in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {fam:24s} {ms / a.steps:8.1f} ms  {100 * ms / total:5.1f} %")
    conv_ms = sum(v for k, v in times.items() if k.startswith("conv")) / a.steps
    print(f"convolutions: {3 * flops / 1e9:.0f} GFLOP per step (forward x 3) in {conv_ms:.0f} ms "
          f"= {3 * flops / 1e6 / conv_ms:.0f} GFLOP/s; forward alone {flops / 1e9 / a.batch:.2f} "
          "GFLOP per image")


if __name__ == "__main__":
    main()
