"""The trained detector on annotated real smears it never saw: BCCD (val) and IML malaria.

Runs `bloodcell evaluate-images` (the same slide detection as `bloodcell detect`) on

- BCCD's val list (Pascal VOC, classes mapped to RBC / WBC / Platelets; RBCs there are about
  103 px across, so --rbc-diameter 103), and
- IML's evaluation list (P. vivax thin smears, classes mapped to infected / healthy; RBCs
  about 82 px), the list config/lists/iml-eval.txt when it exists, else every image present;

each also with --rbc-diameter auto (estimated per image) when bloodcell.detect.rbc_size is there,
and prints mAP@0.5 overall and per class, infected F1, parasitemia error and seconds.

    python benchmarks/real_smears.py --model models/detector.keras [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data"
IML_LIST = PROJECT / "config" / "lists" / "iml-eval.txt"


def runs(data: Path) -> list[tuple[str, list[str]]]:
    """(name, evaluate-images arguments without --model/--metrics) of every benchmark run."""
    bccd, iml = data / "bccd" / "BCCD", data / "iml-malaria"
    sets = [("bccd-val", [bccd / "JPEGImages", "--labels", bccd / "Annotations", "--format",
                          "voc", "--class-map", "bccd", "--images-list",
                          bccd / "ImageSets" / "Main" / "val.txt"], "103"),
            ("iml-eval", [iml / "IML_Malaria", "--labels", iml / "annotations.json",
                          "--format", "iml", "--class-map", "iml",
                          *(["--images-list", IML_LIST] if IML_LIST.is_file() else [])], "82")]
    auto = importlib.util.find_spec("bloodcell.detect.rbc_size") is not None
    out = []
    for name, args, diameter in sets:
        out.append((f"{name} d={diameter}px", [*map(str, args), "--rbc-diameter", diameter]))
        if auto:
            out.append((f"{name} d=auto", [*map(str, args), "--rbc-diameter", "auto"]))
    return out


def report(name: str, result: dict, seconds: float) -> str:
    """One line: mAP@0.5, per-class AP@0.5, infected F1 and parasitemia error, seconds."""
    coco = result["coco"]
    per_class = "  ".join(f"{c} {'-' if v is None else f'{v:.3f}'}"
                          for c, v in coco["per_class_ap50"].items())
    line = (f"{name:20s} {result['images']:3d} images  mAP@0.5 {coco['map50']:.3f}  "
            f"mAP@[.5:.95] {coco['map50_95']:.3f}  AP@0.5: {per_class}")
    ivh = result["infected_vs_healthy"]
    if ivh is not None:
        par = ivh["parasitemia"]
        line += (f"  infected F1 {ivh['cell']['f1']:.3f}  parasitemia error "
                 f"{par['mean_abs_error_pp']:.2f} pp (pooled {par['pooled_abs_error_pp']:.2f})"
                 if par["mean_abs_error_pp"] is not None
                 else f"  infected F1 {ivh['cell']['f1']:.3f}")
    return line + f"  {seconds:.1f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/detector.keras"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"folder holding bccd/ and iml-malaria/ (default {DEFAULT_DATA})")
    p.add_argument("--out", type=Path, help="folder for the metrics JSONs (default: temporary)")
    a = p.parse_args()
    if not a.model.is_file():
        sys.exit(f"{a.model} does not exist: train first (snakemake) or pass --model")
    if not a.data.is_dir():
        sys.exit(f"{a.data} does not exist: pass --data (folder with bccd/, iml-malaria/)")
    from bloodcell.cli import main as bloodcell

    out = a.out or Path(tempfile.mkdtemp(prefix="real-smears-"))
    for name, args in runs(a.data):
        metrics = out / (name.replace(" ", "_").replace("=", "") + ".json")
        start = time.perf_counter()
        code = bloodcell(["-q", "evaluate-images", *args, "--model", str(a.model),
                          "--metrics", str(metrics)])
        seconds = time.perf_counter() - start
        if code != 0:
            print(f"{name}: evaluate-images failed (exit {code})")
            continue
        print(report(name, json.loads(metrics.read_text()), seconds), flush=True)
    print(f"metrics JSONs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
