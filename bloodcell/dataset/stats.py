"""The dataset_stats stage: figures of the synthetic dataset for `dvc metrics` and `dvc plots`.

Reads only the objects tables of one shard. Writes a metrics JSON (images, objects, objects per
class, share of partial WBCs among WBCs, median RBCs per image) and a CSV of objects per class
for a bar plot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bloodcell.common.atomic import atomic_file, check_file
from bloodcell.common.classes import (
    CLASS_NAMES,
    PARTIAL_IDX,
    RBC_IDX,
    UNTYPED_WBC_INDEX,
    WBC_IDX,
    label_name,
)
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import read_parquet
from bloodcell.dataset.shards import OBJECTS_NAME


def load_objects(shard_dirs: list[Path],
                 columns: tuple[str, ...] = ("split", "image_id", "class_idx")) -> pd.DataFrame:
    """The given columns of every object of the given shards (synth or real_tiles)."""
    frames = []
    for d in shard_dirs:
        path = d / OBJECTS_NAME
        if not path.is_file():
            raise UserError(f"{path}: not found; run the synth (or real_tiles) stage first")
        frames.append(read_parquet(path, list(columns),
                                   "re-run the stage that wrote it").to_pandas())
    return pd.concat(frames, ignore_index=True)


def split_metrics(o: pd.DataFrame) -> dict:
    """Figures of one split's objects."""
    counts = o.class_idx.value_counts()
    wbc = int(counts.reindex([*WBC_IDX, PARTIAL_IDX], fill_value=0).sum())
    rbc = o[o.class_idx.isin(RBC_IDX)].groupby("image_id").size()
    untyped = [UNTYPED_WBC_INDEX] if UNTYPED_WBC_INDEX in counts.index else []
    labels = [*range(len(CLASS_NAMES)), *untyped]
    return {"images": int(o.image_id.nunique()), "objects": int(len(o)),
            "partial_wbc_share": round(int(counts.get(PARTIAL_IDX, 0)) / wbc, 4) if wbc else 0.0,
            "median_rbc_per_image": float(rbc.median()) if len(rbc) else 0.0,
            "per_class": {label_name(i): int(counts.get(i, 0)) for i in labels}}


def run(shard_dirs: list[Path], metrics: Path, plot: Path) -> None:
    """Write the metrics JSON and the per-class plot CSV of the given shards (one split):
    both or, on any error, neither."""
    for path in (metrics, plot):  # both checked before either is written
        check_file(path)
    o = load_objects(shard_dirs)
    result = split_metrics(o)
    splits = ",".join(sorted(o.split.unique()))
    rows = [(splits, name, n) for name, n in result["per_class"].items()]
    with atomic_file(metrics) as tmp_metrics, atomic_file(plot) as tmp_plot:
        tmp_metrics.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        pd.DataFrame(rows, columns=["split", "class_name", "objects"]).to_csv(tmp_plot,
                                                                               index=False)


def add_parser(sub) -> None:
    """``bloodcell dataset-stats``."""
    p = sub.add_parser("dataset-stats", help="metrics and a class plot of the synthetic data",
                       description="Count images and objects per split and class from the "
                       "shards' objects tables; write a metrics JSON and a plot CSV.")
    p.add_argument("shards", type=Path, nargs="+", help="synth shard folders")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--plot", type=Path, required=True, help="CSV (split, class_name, objects)")
    p.set_defaults(main=main)


def main(a) -> None:
    run(a.shards, a.metrics, a.plot)
