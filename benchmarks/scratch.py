"""A scratch copy of the pipeline for benchmarks that run it (never the checkout itself)."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "dvc.yaml", ".dvcignore", "workflow", "config", "bloodcell"]


def copy_pipeline(root: Path) -> None:
    """Copy the files a Snakemake/DVC run needs from the checkout into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in COPIED:
        src, dst = PROJECT / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
