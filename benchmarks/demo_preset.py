"""Run the demo preset (the README's first command) end to end and print its wall time.

Usage: python benchmarks/demo_preset.py [--workdir DIR] [--cores 2] [--preset demo]
       python benchmarks/demo_preset.py --report-only --workdir DIR

Copies the pipeline into WORKDIR with config/params-PRESET.yaml as its params.yaml, times
`snakemake --cores N` from nothing (the demo databases are rendered by the run itself), and
prints the wall time, each job's time (Snakemake benchmark files) and the synthetic test split's
and slides' figures. ``--report-only`` prints the figures of an earlier run in WORKDIR.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from public_preset import run_and_report
from scratch import copy_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-bench-demo"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    if not a.report_only and a.workdir.exists():
        raise SystemExit(f"{a.workdir} exists: pass a new --workdir (runs start from nothing)")

    def prepare() -> None:
        copy_pipeline(a.workdir)
        shutil.copy(a.workdir / "config" / f"params-{a.preset}.yaml", a.workdir / "params.yaml")

    run_and_report(a.workdir, a.cores, a.preset, None if a.report_only else prepare)


if __name__ == "__main__":
    main()
