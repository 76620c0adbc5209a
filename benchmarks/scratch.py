"""A scratch copy of the pipeline for benchmarks that run it (never the checkout itself)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
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


def export_revision(rev: str, dst: Path) -> None:
    """The tree of git revision ``rev`` (with its own bloodcell package) in ``dst``."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=PROJECT, check=True,
                             capture_output=True).stdout
    dst.mkdir(parents=True, exist_ok=True)
    tar_path = dst.parent / f"{dst.name}.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dst, filter="tar")
    tar_path.unlink()
