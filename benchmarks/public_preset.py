"""Run the public preset end to end and print its wall time and its real-smear figures.

Usage: python benchmarks/public_preset.py [--workdir DIR] [--cores 2] [--data ../shared/data]
       python benchmarks/public_preset.py --report-only --workdir DIR

Copies the pipeline into WORKDIR, makes config/params-public.yaml its params.yaml (with
sources.root pointing at --data), times `snakemake --cores N` from nothing to the report's
inputs, and prints the wall time, the time of each job (Snakemake benchmark files), and from
the metrics: the detector's synthetic test split, the synthetic slides, and the real smears
training never saw (BCCD val: mAP@0.5 per class; IML eval: infected-vs-healthy F1 and
parasitemia error). ``--report-only`` prints the figures of an earlier run in WORKDIR.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import time
from pathlib import Path

import yaml
from scratch import PROJECT, copy_pipeline


def copy_project(root: Path, data: Path) -> None:
    """The pipeline in ``root`` with the public preset as its params, reading ``data``."""
    copy_pipeline(root)
    params = yaml.safe_load((root / "config" / "params-public.yaml").read_text())
    params["sources"]["root"] = str(data.resolve())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def job_seconds(root: Path) -> dict[str, float]:
    """Wall seconds of every job from the Snakemake benchmark files."""
    out = {}
    for f in sorted((root / "logs" / "benchmarks").rglob("*.tsv")):
        with open(f, newline="") as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        out[str(f.relative_to(root / "logs" / "benchmarks").with_suffix(""))] = float(row["s"])
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def print_figures(root: Path) -> None:
    """The synthetic and real-smear figures of a finished run."""
    ev = load(root / "metrics" / "evaluate.json")
    if ev:
        print(f"synthetic test split: mAP@0.5 {ev['coco']['map50']:.3f}, "
              f"mAP@[.5:.95] {ev['coco']['map50_95']:.3f}")
    sl = load(root / "metrics" / "evaluate_slides.json")
    if sl:
        s = sl["second_pass"]
        print(f"synthetic slides (second pass): mAP@0.5 {s['map50']:.3f}, WBC type accuracy "
              f"{s['wbc_type_accuracy']}")
    for name in ("bccd", "iml"):
        m = load(root / "metrics" / "evaluate_real" / f"{name}.json")
        if not m:
            continue
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in m["coco"]["per_class_ap50"].items()
                              if v is not None)
        print(f"real smears, {name} ({m['images']} images never trained on): mAP@0.5 "
              f"{m['coco']['map50']:.3f} ({per_class}), mAP@[.5:.95] "
              f"{m['coco']['map50_95']:.3f}")
        counts = ", ".join(f"{k} {v['gt_total']}/{v['pred_total']}"
                           for k, v in m["counts"].items())
        print(f"  objects true/detected: {counts}")
        ivh = m.get("infected_vs_healthy")
        if ivh:
            print(f"  infected-vs-healthy cell F1 {ivh['cell']['f1']:.3f} (precision "
                  f"{ivh['cell']['precision']:.3f}, recall {ivh['cell']['recall']:.3f}); "
                  f"parasitemia error {ivh['parasitemia']['mean_abs_error_pp']:.2f} pp per "
                  f"image, {ivh['parasitemia']['pooled_abs_error_pp']:.2f} pp pooled")


def run_and_report(workdir: Path, cores: int, preset: str, prepare=None,
                   env: dict | None = None) -> float | None:
    """``prepare()`` the copy in ``workdir`` and time `snakemake --cores N` there (no
    ``prepare``: report an earlier run), then print each job's seconds and the figures.
    ``env``: the environment of the run (e.g. PYTHONPATH to another revision's package).
    Returns the wall seconds (None when only reporting)."""
    wall = None
    if prepare is not None:
        prepare()
        t0 = time.perf_counter()
        subprocess.run(["snakemake", "--cores", str(cores)], cwd=workdir, check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        print(f"{preset} preset end to end: {wall / 60:.1f} min ({wall:.0f} s) wall on "
              f"{cores} cores")
    for job, s in job_seconds(workdir).items():
        print(f"  {job:28s} {s:8.0f} s")
    print_figures(workdir)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-bench-public"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    if not a.report_only and not a.data.is_dir():
        raise SystemExit(f"{a.data}: the public datasets are not there; pass --data")
    prepare = None if a.report_only else lambda: copy_project(a.workdir, a.data)
    run_and_report(a.workdir, a.cores, "public", prepare)


if __name__ == "__main__":
    main()
