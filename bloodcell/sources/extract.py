"""Shared driver of the extract_<db> stages: run per-file jobs in parallel, write the pack.

Each source module (bloodcell.sources.<db>) turns its database folder into a list of picklable
jobs (raising UserError when the layout is wrong) and offers a pure-ish ``process(job)`` that
returns the job's samples and skips. This module runs them and writes, atomically:
``OUTDIR/samples.parquet``, ``OUTDIR/qc_counts.csv`` and ``OUTDIR/qc_skipped.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import ImageProblem, decode_color
from bloodcell.dataset.samples import PACK_NAME, Sample, Skip, write_pack, write_qc

log = logging.getLogger(__name__)
Job = TypeVar("Job")


def worker_count() -> int:
    """Worker processes for a stage: OMP_NUM_THREADS (Snakemake sets it per job), else all CPUs."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0))


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of raw file bytes (the lineage key of a raw database file)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class MaskJob:
    """One image with a mask file: paths, path relative to ROOT, class and extract params."""

    path: Path
    mask_path: Path
    rel: str
    class_name: str
    scale: float
    pad: int
    min_area: int


def cut_by_mask(job: MaskJob, source: str, fill: bool = False) -> list[Sample | Skip]:
    """Cut the one cell of a single-cell image by its mask file (the largest component, holes
    filled when ``fill``) and bring it to the 40x scale; a Skip with the reason otherwise."""
    from bloodcell.common.image_files import read_mask
    from bloodcell.dataset.masks import fill_holes, largest_component
    from bloodcell.dataset.scale import crop, mask_box, rescale

    mask_name = job.mask_path.relative_to(job.mask_path.parent.parent).as_posix()
    try:
        data, img = read_source(job.path)
    except ImageProblem as err:
        return [Skip(job.rel, job.class_name, str(err))]
    if not job.mask_path.is_file():
        return [Skip(job.rel, job.class_name, f"no mask {mask_name}")]
    try:
        mask = read_mask(job.mask_path)
    except ImageProblem as err:
        return [Skip(job.rel, job.class_name, f"mask {job.mask_path.name}: {err}")]
    if mask.shape != img.shape[:2]:
        return [Skip(job.rel, job.class_name,
                     f"mask is {mask.shape[1]}x{mask.shape[0]} px but the image is "
                     f"{img.shape[1]}x{img.shape[0]} px; use the mask made for this image")]
    cell = largest_component(mask, job.min_area)
    if cell is None:
        return [Skip(job.rel, job.class_name, f"mask holds no cell of at least {job.min_area} "
                     "px; lower the extract's min_area")]
    cell = fill_holes(cell) if fill else cell
    box = mask_box(cell, job.pad)
    small, small_mask = rescale(crop(img, box), crop(cell, box), job.scale)
    return [Sample(f"{source}/{job.rel}", source, job.class_name, job.rel, sha256_hex(data),
                   box, small, small_mask)]


def read_source(path: Path) -> tuple[bytes, np.ndarray]:
    """Raw bytes (for the sha256) and the decoded uint8 BGR image of a database file.

    Raises ImageProblem (the QC reason) for an unreadable, odd or missing file.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageProblem(f"cannot read the file ({err.strerror})") from None
    return data, decode_color(data)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_jobs(jobs: Sequence[Job], process: Callable[[Job], list], workers: int) -> list:
    """process(job) for every job, results concatenated in job order (independent of workers)."""
    results: list = []
    if workers <= 1 or len(jobs) < 64:
        for job in jobs:
            results.extend(process(job))
        return results
    chunk = max(1, min(256, len(jobs) // (workers * 8)))
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for part in pool.imap(process, jobs, chunksize=chunk):
            results.extend(part)
    return results


def write_extract(
    source: str, items: list[Sample | Skip], classes: list[str], outdir: Path,
    command: str, inputs: Sequence[Path | None] = ()
) -> tuple[list[Sample], list[Skip]]:
    """Write the pack and QC tables of one source into ``outdir`` atomically, as the output
    of ``command`` (e.g. extract-lisc) reading ``inputs`` (see bloodcell.common.atomic).

    Raises UserError when no sample at all was extracted (the database is unusable as laid out).
    """
    samples = [s for s in items if isinstance(s, Sample)]
    skips = [s for s in items if isinstance(s, Skip)]
    if not samples:
        # the first skip of a file the run tried, not one it ignores on purpose (Thumbs.db)
        notable = [s for s in skips if not s.reason.endswith("ignored")] or skips
        root = next((Path(p) for p in inputs if p is not None), None)
        first = (f"{root / notable[0].path if root else notable[0].path}: {notable[0].reason}"
                 if notable else "no files")
        raise UserError(f"{source}: no sample could be extracted ({len(skips)} files skipped, "
                        f"first: {first}); check the database and its params")
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"{source}: duplicate sample ids")
    with atomic_dir(outdir, command, inputs) as tmp:
        write_pack(samples, tmp / PACK_NAME)
        write_qc(samples, skips, classes, tmp)
    for name in classes:
        n = sum(s.class_name == name for s in samples)
        log.info("%s %-12s %6d samples", source, name, n)
    log.info("%s: %d samples, %d skipped -> %s", source, len(samples), len(skips), outdir)
    return samples, skips


def run_source(a: argparse.Namespace, planned: tuple[list, list], process: Callable[[Job], list],
               source: str, classes: Sequence[str]) -> None:
    """The body of every ``extract-<db>`` command: refuse an output folder the command may not
    replace (before the long extraction), cut the planned jobs in worker processes, and write
    the extract contract (samples.parquet, qc_counts.csv, qc_skipped.csv) atomically.
    ``planned`` is the source module's plan(...) result (jobs, skips already known)."""
    from bloodcell.common.atomic import check_output

    inputs = [a.root, getattr(a, "crops", None), getattr(a, "images_list", None)]
    check_output(a.outdir, a.command, inputs)
    jobs, skips = planned
    log.info("%s: %d files from %s", source, len(jobs), a.root)
    items = skips + run_jobs(jobs, process, worker_count())
    write_extract(source, items, classes, a.outdir, a.command, inputs)
