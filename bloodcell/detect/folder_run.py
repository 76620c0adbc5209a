"""A ``bloodcell detect`` run over many images that survives bad files and kills.

The output folder of a run (``--out``) holds, per input image with output name ``NAME``
(:func:`output_names`): ``NAME.png`` (annotated), ``NAME.geojson`` (QuPath) and
``NAME.cells.csv`` (one row per cell); per run: ``summary.csv`` and ``detections.json``.
Bookkeeping lives in the hidden folder ``.bloodcell-detect/``:

- ``run.json``: the run's settings (model file digest, decode and tiling options, scale) and
  its output names. A later run with other settings or other inputs starts the folder afresh;
  the same command resumes.
- ``NAME.json``: written last for an image whose three outputs are complete; it names the
  input's sha256, so a changed input file is detected again on resume.

Every file is written atomically, so a killed run leaves only whole files; the next run of
the same command removes the temporaries, skips the images whose record and outputs are
present, and writes the per-run files at the end. Nothing here reads images or runs a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bloodcell.common import json_files
from bloodcell.common.atomic import MARKER, atomic_file, check_output, clean_stale
from bloodcell.common.classes import DISPLAY_NAMES

STATE = ".bloodcell-detect"
"""Hidden bookkeeping folder inside a detect output folder."""
SUFFIXES = {"annotated": ".png", "geojson": ".geojson", "cells": ".cells.csv"}
"""Per-image output files: NAME + suffix."""
CELL_COLUMNS = ("cell", "class_name", "class_idx", "score", "x", "y", "w", "h")
"""Columns of NAME.cells.csv; class_name as a person reads it ("Healthy RBC"), x, y the box's
top-left corner, in input-image pixels."""


def output_names(paths: Sequence[Path]) -> list[str]:
    """One distinct output name per input image (POSIX-style, may hold ``/``).

    The name is the input's path relative to the folder that holds all inputs, without its
    suffix: ``x/a.png`` and ``y/a.png`` become ``x/a`` and ``y/a``; inputs of one folder keep
    their stem. Inputs that would share a name (``a.png`` and ``a.tif``) keep their suffix as
    ``a-png`` and ``a-tif``; any name still shared gets ``-2``, ``-3``... in input order.
    """
    absolute = [Path(os.path.abspath(p)) for p in paths]
    if not absolute:
        return []
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    rel = [p.relative_to(root) for p in absolute]
    base = [r.with_suffix("").as_posix() for r in rel]
    shared = Counter(base)
    names = [b if shared[b] == 1 else f"{b}-{r.suffix.lstrip('.') or 'none'}"
             for b, r in zip(base, rel)]
    seen: Counter = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in blocks (bounded memory on huge smears)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_json(doc: object, path: Path) -> None:
    """Sorted JSON indented by 1, floats as they are, written atomically."""
    json_files.write_json(doc, path, indent=1, digits=None)


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or not whole."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def remove_temporaries(out: Path) -> None:
    """Remove the ``.NAME.tmp-*`` files a killed run left anywhere in its own folder."""
    for tmp in sorted(out.rglob(".*.tmp-*")):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)


def clear(out: Path) -> None:
    """Empty a detect output folder (its marker stays): the record of the run goes first, so
    a kill while clearing leaves a folder the next run clears again."""
    (out / STATE / "run.json").unlink(missing_ok=True)
    for entry in sorted(out.iterdir()):
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def open_run(out: Path, settings: dict, names: list[str], inputs: list[Path]) -> None:
    """Make ``out`` ready for a run: created with its marker, kept as it is when its last run
    had the same settings and names (resume), else emptied. Refuses (UserError) a folder
    detect may not write (bloodcell.common.atomic.check_output)."""
    check_output(out, "detect", inputs)
    clean_stale(out)  # temporary siblings of earlier versions, which replaced `out` whole
    run = {"settings": settings, "names": names}
    if out.is_dir() and read_json(out / STATE / "run.json") == run:
        remove_temporaries(out)
        return
    if out.is_dir():
        clear(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("detect\n")
    write_json(run, out / STATE / "run.json")


def outputs_of(out: Path, name: str) -> dict[str, Path]:
    """The per-image output paths of ``name``."""
    return {kind: out / f"{name}{suffix}" for kind, suffix in SUFFIXES.items()}


def finished(out: Path, name: str, sha256: str) -> dict | None:
    """The record of an image whose outputs are complete for this input, else None."""
    record = read_json(out / STATE / f"{name}.json")
    if record is None or record.get("sha256") != sha256:
        return None
    if not all(p.is_file() for p in outputs_of(out, name).values()):
        return None
    return record


def mark_finished(out: Path, name: str, record: dict) -> None:
    """Write an image's record, after its outputs."""
    write_json(record, out / STATE / f"{name}.json")


def write_cells_csv(dets: pd.DataFrame, path: Path) -> None:
    """One image's cells as CSV (CELL_COLUMNS): ``dets`` as checked_detections returns them
    (rounded, sorted); ``cell`` numbers them from 1 in that order."""
    table = pd.DataFrame({
        "cell": range(1, len(dets) + 1),
        "class_name": [DISPLAY_NAMES[int(c)] for c in dets["class_idx"]],
        "class_idx": dets["class_idx"].astype(int).to_numpy(),
        **{c: dets[c].to_numpy() for c in ("score", "x", "y", "w", "h")}})
    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")


def read_cells_csv(path: Path, image_id: str) -> pd.DataFrame:
    """A finished image's detections back from its cells CSV (the DETECTION_COLUMNS)."""
    table = pd.read_csv(path, dtype={"class_name": str})
    return pd.DataFrame({"image_id": image_id, "class_idx": table["class_idx"].astype(int),
                         **{c: table[c].astype(float) for c in ("score", "x", "y", "w", "h")}})
