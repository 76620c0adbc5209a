"""Time the paper-profile dataset: backgrounds + 78,470 synthetic images + slides.

Usage: python benchmarks/dataset_paper.py [--workdir DIR] [--cores 2]
Copies the pipeline into WORKDIR, switches it to config/params-paper.yaml, runs the DAG up to
the split (not timed), then times `snakemake --cores N` with the dataset stages' outputs as its
targets (every synth shard and data/slides, which pull in the backgrounds; training, evaluation
and the report are not run), and prints wall time, images/s, the largest per-job peak RSS
(Snakemake benchmark files) and the time of `dvc status` after `dvc commit` of those stages.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from scratch import copy_pipeline


def sh(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss_mb(root: Path) -> tuple[float, str]:
    best = (0.0, "")
    for f in (root / "logs" / "benchmarks").rglob("*.tsv"):
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rss = float(row.get("max_rss") or 0)
                best = max(best, (rss, f.stem))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-bench-paper"))
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    root = a.workdir
    copy_pipeline(root)
    shutil.copy(root / "config" / "params-paper.yaml", root / "params.yaml")
    cores = ["--cores", str(a.cores)]
    prep = sh(["snakemake", *cores, "data/split"], root)
    print(f"demo + extract + split (not timed): {prep:.0f} s")
    params = yaml.safe_load((root / "params.yaml").read_text())
    shards = params["synth"]["shards"]
    targets = [f"data/synth/{name}" for name in sorted(shards)] + ["data/slides"]
    wall = sh(["snakemake", *cores, *targets], root)
    n = sum(s["images"] for s in shards.values())
    rss, job = peak_rss_mb(root)
    print(f"backgrounds + synth + slides: {n} images in {wall:.1f} s wall on {a.cores} cores "
          f"({n / wall:.0f} images/s); largest job peak RSS {rss:.0f} MB ({job})")
    if not (root / ".dvc").is_dir():
        sh(["dvc", "init", "--no-scm", "-q"], root)
    made = ["demo_sources", *[f"extract_{db}" for db in ("lisc", "iumc", "mamic", "kaggle")],
            "split", "backgrounds", "synth", "slides"]
    print(f"dvc commit -f: {sh(['dvc', 'commit', '-f', '-q', *made], root):.1f} s")
    print(f"dvc status of those stages: {sh(['dvc', 'status', '-q', *made], root):.2f} s")


if __name__ == "__main__":
    main()
