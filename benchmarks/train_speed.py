"""Training speed of both ModifiedYolo phases, and the input pipeline's share.

For each path: images/s of the compiled training step on batches already in memory, images/s
with the real tf.data pipeline (TFRecord read, PNG decode, targets) feeding it, and the input
pipeline alone. The input share of step time is 1 - (in-memory time / pipeline time).

    python benchmarks/train_speed.py                 # shards of random images in a temp dir
    python benchmarks/train_speed.py --shards data/synth --batch 100

Prints one line per path, in one run: the classifier in float32 and in `precision: mixed`, the
detector with Keras's BatchNorm (the path before issue 16), with the fused BatchNorm in float32
and in `precision: mixed` (bfloat16 convolutions and BatchNorm, float32 LeakyReLU), then the
ratios. Targets: detector >= 30 img/s on 2 CPU cores, input < 10 % (issue 4); 1.35x the float32
path's images/s (issue 16).

``--epochs N --shards data/synth`` then also trains the detector for N whole epochs of the demo's
training loop (``train.loop.datasets`` with `augment: dihedral_stain`, ``train_one_epoch``,
the iterator ended and destroyed as in training) by the path before issue 16's last changes
(float32, tf.data autotuning on) and by the demo preset's path now (`precision: auto`,
autotuning off, the tiles decoded in the first epoch held in memory for the later ones), and
prints each epoch's images/s and the ratio of the means.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_shards(root: Path, images: int) -> Path:
    from test_train import write_shard

    write_shard(root / "synth", "train", images, 1)
    return root / "synth"


def rate(step, batches, repeats: int) -> float:
    """Images per second over ``repeats`` passes of ``step`` over the batches (after warm-up)."""
    step(*batches[0])
    n, start = 0, time.perf_counter()
    for _ in range(repeats):
        for x, y in batches:
            float(step(x, y)[0])
            n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def measure(kind: str, files: list[str], batch: int, steps: int,
            fused_bn: bool = True, mixed: bool = False) -> dict[str, float]:
    import keras

    from bloodcell.train.precision import machine_policy

    # mixed: bfloat16 on a CPU, float16 on a GPU (as `precision: mixed` trains)
    keras.mixed_precision.set_global_policy(machine_policy("mixed") if mixed else "float32")
    try:
        return _measure(kind, files, batch, steps, fused_bn)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _measure(kind: str, files: list[str], batch: int, steps: int,
             fused_bn: bool) -> dict[str, float]:
    import keras

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.model import network as model
    from bloodcell.train import input_pipeline as data
    from bloodcell.train import loop as train

    cfg = train.TrainConfig(kind, 1, batch, ((1, 1e-3),), 1, anchors=ORIGINAL_ANCHORS)
    import tensorflow as tf

    keras.utils.set_random_seed(1)  # as train.setup, but the threads stay as main() set them
    tf.config.experimental.enable_op_determinism()
    net = model.classifier(fused_bn) if kind == "classifier" else model.detector(fused_bn=fused_bn)
    step = train.step_fn(net, keras.optimizers.Adam(1e-3), train.loss_function(cfg))
    ds = data.dataset(files, batch, kind, shuffle_seed=1, anchors=ORIGINAL_ANCHORS).take(steps)
    cached = list(ds)
    memory = rate(step, cached, 1)
    start, n = time.perf_counter(), 0
    for x, y in ds:
        float(step(x, y)[0])
        n += int(x.shape[0])
    piped = n / (time.perf_counter() - start)
    start, n = time.perf_counter(), 0
    for x, _ in ds:
        n += int(x.shape[0])
    alone = n / (time.perf_counter() - start)
    return {"memory": memory, "pipeline": piped, "input_alone": alone,
            "input_share": max(0.0, 1 - piped / memory)}


def epoch_rates(files: list[str], batch: int, epochs: int, policy: str, autotune: bool,
                in_memory: bool = False) -> list[float]:
    """Images/s of ``epochs`` whole detector epochs of the training loop, start-up excluded
    (one warm-up step); ``in_memory``: decoded tiles held between epochs, as training now."""
    import keras
    import tensorflow as tf

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.model import network as model
    from bloodcell.train import input_pipeline, loop

    def options() -> tf.data.Options:
        opts = tf.data.Options()
        opts.deterministic = True
        opts.autotune.enabled = autotune
        return opts

    cfg = loop.TrainConfig("detector", epochs, batch, ((1, 1e-3),), 1, policy=policy,
                           anchors=ORIGINAL_ANCHORS, augment="dihedral_stain")
    loop.setup(cfg)
    saved, input_pipeline.pipeline_options = input_pipeline.pipeline_options, options
    try:
        net = model.detector()
        step = loop.step_fn(net, keras.optimizers.Adam(1e-3), loop.loss_function(cfg),
                            loop.loss_terms(cfg))
        n = loop.count_records(files)
        decoded = input_pipeline.decoded_examples(files, n) if in_memory else None
        step(*next(iter(loop.datasets(cfg, (files, files, ()), 0, n)[0])))
        rates = []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            batches = loop.datasets(cfg, (files, files, ()), epoch, n, decoded)[0]
            loop.train_one_epoch(step, batches, n, f"epoch {epoch}")
            rates.append(n / (time.perf_counter() - start))
        return rates
    finally:
        input_pipeline.pipeline_options = saved
        keras.mixed_precision.set_global_policy("float32")


def compare_epochs(files: list[str], batch: int, epochs: int) -> None:
    """Print whole-epoch images/s of the path before and the path now, and their ratio."""
    from bloodcell.train.precision import machine_policy

    means = []
    for name, policy, autotune, in_memory in (
            ("before: float32, autotuning on", "float32", True, False),
            ("now: precision auto, autotuning off, tiles in memory", machine_policy("auto"),
             False, True)):
        rates = epoch_rates(files, batch, epochs, policy, autotune, in_memory)
        means.append(sum(rates) / len(rates))
        print(f"detector epochs, {name} ({policy}): "
              + ", ".join(f"{r:.1f}" for r in rates) + f" img/s, mean {means[-1]:.1f}")
    print(f"detector epochs, now against before: {means[1] / means[0]:.2f}x images/s")


PATHS = (("classifier", True, False), ("classifier", True, True), ("detector", False, False),
         ("detector", True, False), ("detector", True, True))
"""(model, fused BatchNorm, mixed precision) of each measured path."""
PRECISION = {False: "float32", True: "mixed"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=Path, help="a synth folder (default: random images)")
    p.add_argument("--batch", type=int, default=50, help="the demo preset's batch")
    p.add_argument("--steps", type=int, default=12, help="batches timed per measurement")
    p.add_argument("--inter-op", type=int, default=1,
                   help="TensorFlow inter-op threads (training uses 1 for determinism; 0 = "
                   "TensorFlow's default)")
    p.add_argument("--epochs", type=int, default=0,
                   help="also time N whole detector epochs before and now (needs --shards)")
    a = p.parse_args()
    if a.epochs and not a.shards:
        p.error("--epochs needs --shards (a synth folder of a demo run)")
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(a.inter_op)
    with tempfile.TemporaryDirectory() as tmp:
        root = a.shards or make_shards(Path(tmp), a.batch * a.steps)
        files = sorted(str(f) for f in root.glob("train-*/images.tfrecord"))
        print(f"{os.cpu_count()} CPUs, GPU: {bool(tf.config.list_physical_devices('GPU'))}, "
              f"batch {a.batch}, {a.steps} steps, inter-op threads {a.inter_op or 'default'}")
        rates = {}
        for kind, fused, mixed in PATHS:
            r = measure(kind, files, a.batch, a.steps, fused, mixed)
            rates[kind, fused, mixed] = r["pipeline"]
            name = f"{kind} ({'fused' if fused else 'Keras'} BN, {PRECISION[mixed]})"
            print(f"{name:36s}: {r['memory']:6.1f} img/s on in-memory batches, "
                  f"{r['pipeline']:6.1f} img/s fed by tf.data "
                  f"(input alone {r['input_alone']:.0f} img/s, {100 * r['input_share']:.1f} % "
                  "of step time)")
        det = {k[1:]: v for k, v in rates.items() if k[0] == "detector"}
        print(f"detector, fused BatchNorm against Keras's (float32): "
              f"{det[True, False] / det[False, False]:.2f}x images/s")
        for kind in ("classifier", "detector"):
            print(f"{kind}, mixed against float32 (fused BatchNorm): "
                  f"{rates[kind, True, True] / rates[kind, True, False]:.2f}x images/s")
        if a.epochs:
            compare_epochs(files, a.batch, a.epochs)


if __name__ == "__main__":
    main()
