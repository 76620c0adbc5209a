"""Time extract-kaggle on a demo Kaggle database of the real size (27,558 cells).

Usage: python benchmarks/extract_kaggle.py [--per-class 13779] [--workdir DIR]
Prints the number of cells, wall time, cells/s and peak memory of the extract run. The demo
database is rendered first (not timed) and kept in WORKDIR for re-runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=13779)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-bench-kaggle"))
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    root = args.workdir / f"kaggle-{args.per_class}"
    if not (root / "cell_images").is_dir():
        from bloodcell.common.atomic import atomic_dir
        from bloodcell.sources.demo.databases import make_kaggle

        t0 = time.perf_counter()
        with atomic_dir(root) as tmp:
            make_kaggle(tmp, args.per_class, seed=1)
        print(f"rendered demo Kaggle database in {time.perf_counter() - t0:.1f} s -> {root}")
    out = args.workdir / "extract"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.workers))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bloodcell", "-q", "extract-kaggle", str(root),
                    str(out), "--scale", "0.26"], check=True, env=env)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n = 2 * args.per_class
    print(f"extract-kaggle: {n} cells, {args.workers} workers, {wall:.1f} s wall, "
          f"{n / wall:.0f} cells/s, peak RSS of one process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
