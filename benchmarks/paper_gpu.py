"""The paper profile's training time on this machine (meant for one GPU): build the paper-size
shards, time both ModifiedYolo phases at the paper's batch on them, and extrapolate.

Usage: python benchmarks/paper_gpu.py [--workdir DIR] [--cores N] [--steps 200] [--mixed] [--built]

Copies the pipeline into WORKDIR with config/params-paper.yaml as its params, builds the synth
shards with `snakemake --cores N` (demo databases, extracts, split, backgrounds, synth; not
timed as training), then times --steps batches of 100 (the paper's batch) of each phase fed by
the real tf.data pipeline from those shards (benchmarks/train_speed.py's measurement), and prints
images/s and the time of 18 classifier + 52 detector epochs over 65,350 images (the paper's
schedule), against the target of 45 minutes on one GPU (the original needed 8.4 hours on a
Quadro P6000). Validation passes are not counted. Needs TensorFlow with its GPU libraries; on a
machine without a GPU it runs on the CPU (use a small --steps there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from scratch import copy_pipeline
from train_speed import measure

PAPER_IMAGES = 65_350
PAPER_EPOCHS = {"classifier": 18, "detector": 52}
TARGET_MIN = 45.0


def build_shards(root: Path, cores: int) -> float:
    """The paper preset's synth shards in ``root``; returns the seconds it took."""
    copy_pipeline(root)
    shutil.copy(root / "config" / "params-paper.yaml", root / "params.yaml")
    shards = yaml.safe_load((root / "params.yaml").read_text())["synth"]["shards"]
    targets = [f"data/synth/{name}" for name in sorted(shards) if not name.startswith("test")]
    start = time.perf_counter()
    run = subprocess.run(["snakemake", "--cores", str(cores), *targets], cwd=root,
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"snakemake failed in {root}:\n{run.stderr[-4000:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-paper-gpu"))
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=200, help="batches timed per phase")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--built", action="store_true",
                   help="WORKDIR already holds the paper shards (e.g. from dataset_paper.py)")
    p.add_argument("--mixed", action="store_true",
                   help="mixed precision (float16 on a GPU, bfloat16 on a CPU)")
    a = p.parse_args()
    if not a.built:
        seconds = build_shards(a.workdir, a.cores)
        print(f"paper shards (train + valid) built in {seconds:.0f} s on {a.cores} cores")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPU: {[g.name for g in gpus] or 'none'}, batch {a.batch}, {a.steps} steps, "
          f"{'mixed' if a.mixed else 'float32'}")
    files = sorted(str(f) for f in (a.workdir / "data" / "synth").glob("train-*/images.tfrecord"))
    total = 0.0
    for kind, epochs in PAPER_EPOCHS.items():
        r = measure(kind, files, a.batch, a.steps, mixed=a.mixed)  # sets the policy itself
        minutes = epochs * PAPER_IMAGES / r["pipeline"] / 60
        total += minutes
        print(f"{kind:10s}: {r['pipeline']:7.1f} img/s fed by tf.data ({r['memory']:.1f} on "
              f"in-memory batches, input {100 * r['input_share']:.1f} % of step time) -> "
              f"{epochs} epochs x {PAPER_IMAGES} images in {minutes:.1f} min")
    print(f"paper profile training, extrapolated: {total:.1f} min (target {TARGET_MIN:.0f} min "
          f"on one GPU; the original 8.4 h on a Quadro P6000)")


if __name__ == "__main__":
    main()
