"""Reverse lineage: everything made from one raw database file (to withdraw that file).

A raw file gives samples (extract packs: same path, or same SHA-256 when the file is at hand);
samples give backgrounds (their recipes) and synthetic images: those that label the sample and
those whose 224x224 window overlaps the sample's place on a background (its pixels may show
unlabelled); and test slides. Only table columns are read, never images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bloodcell.common.errors import UserError
from bloodcell.common.tile import TILE_PX as WINDOW
from bloodcell.dataset.samples import PACK_NAME, read_parquet
from bloodcell.dataset.shards import OBJECTS_NAME


@dataclass
class Descendants:
    """Sample ids, background ids, image ids and slide files made from one raw file."""

    samples: list[str]
    backgrounds: list[str]
    images: list[str]
    slides: list[str]


def matching_samples(raw: str, data: Path) -> list[str]:
    """Sample ids whose raw file is ``raw`` (by path suffix, or by SHA-256 if it exists)."""
    want = Path(raw).as_posix().lstrip("./")
    digest = hashlib.sha256(Path(raw).read_bytes()).hexdigest() if Path(raw).is_file() else None
    packs = sorted((data / "extract").glob(f"*/{PACK_NAME}"))
    if not packs:
        raise UserError(f"{data / 'extract'}: no sample packs; run the extract stages first")
    found = []
    for pack in packs:
        t = read_parquet(pack, ["sample_id", "raw_path", "raw_sha256"],
                         "re-run the extract stage").to_pandas()
        by_path = t.raw_path.map(lambda p: want == p or want.endswith("/" + p))
        found += t.sample_id[by_path | (t.raw_sha256 == digest)].tolist()
    return sorted(found)


def affected_backgrounds(ids: set[str], data: Path) -> pd.DataFrame:
    """Recipe rows (background_id, x, y, w, h) placing one of the samples."""
    frames = [read_parquet(p, ["background_id", "sample_id", "x", "y", "w", "h"],
                           filters=[("sample_id", "in", sorted(ids))]).to_pandas()
              for p in sorted((data / "backgrounds").glob("*/backgrounds.parquet"))]
    empty = pd.DataFrame(columns=["background_id", "sample_id", "x", "y", "w", "h"])
    return pd.concat(frames) if frames else empty


def affected_images(ids: set[str], placed: pd.DataFrame, data: Path) -> list[str]:
    """Images labelling a sample, or whose window overlaps a sample's place on a background."""
    out: set[str] = set()
    cols = ["image_id", "sample_id", "background_id", "window_x", "window_y"]
    for path in sorted((data / "synth").glob(f"*/{OBJECTS_NAME}")):
        t = read_parquet(path, cols).to_pandas()
        out.update(t.image_id[t.sample_id.isin(ids)])
        windows = t.drop_duplicates("image_id").merge(placed, on="background_id")
        hit = ((windows.window_x < windows.x + windows.w) & (windows.x < windows.window_x + WINDOW)
               & (windows.window_y < windows.y + windows.h)
               & (windows.y < windows.window_y + WINDOW))
        out.update(windows.image_id[hit])
    return sorted(out)


def descendants(raw: str, data: Path) -> Descendants:
    """Everything under ``data`` made from the raw file ``raw``; UserError if nothing is."""
    samples = matching_samples(raw, data)
    if not samples:
        raise UserError(f"{raw}: no sample comes from this file; give its path as in the "
                        "database (e.g. cell_images/Uninfected/NAME.png) or the file itself")
    ids = set(samples)
    placed = affected_backgrounds(ids, data)
    slides_table = data / "slides" / "objects.parquet"
    slides = []
    if slides_table.is_file():
        s = read_parquet(slides_table, ["file_name", "sample_id"]).to_pandas()
        slides = sorted(set(s.file_name[s.sample_id.isin(ids)]))
    images = affected_images(ids, placed, data)
    return Descendants(samples, sorted(set(placed.background_id)), images, slides)


def format_descendants(d: Descendants) -> str:
    """Readable listing: counts first, then every id."""
    lines = [f"samples      {len(d.samples)}: {', '.join(d.samples)}",
             f"backgrounds  {len(d.backgrounds)}: {', '.join(d.backgrounds)}",
             f"slides       {len(d.slides)}: {', '.join(d.slides)}",
             f"images       {len(d.images)}"]
    return "\n".join(lines + [f"  {i}" for i in d.images])
