"""Single-cell sample records and the per-source pack (one parquet file) and QC tables.

A sample is a BGR crop at the 40x scale with its bool mask, plus its lineage: the source
database, the raw file (path relative to the database folder, sha256) and the crop box in the
raw file's native pixels (x, y, w, h; top-left).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bloodcell.common.atomic import atomic_file
from bloodcell.common.classes import LABEL_INDEX
from bloodcell.common.errors import UserError
from bloodcell.common.image_files import decode_png, encode_png

PACK_NAME = "samples.parquet"
COUNTS_NAME = "qc_counts.csv"
SKIPPED_NAME = "qc_skipped.csv"


@dataclass(frozen=True)
class Sample:
    """One cut-out cell. ``image`` is uint8 (h, w, 3) BGR, ``mask`` bool (h, w), 40x scale."""

    sample_id: str
    source: str
    class_name: str
    raw_path: str
    raw_sha256: str
    src_box: tuple[int, int, int, int]
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Skip:
    """A raw file (or part of one) left out of the pack, with the reason and the fix."""

    path: str
    class_name: str
    reason: str


PACK_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("source", pa.string()),
        ("class_name", pa.string()),
        ("class_idx", pa.int8()),
        ("raw_path", pa.string()),
        ("raw_sha256", pa.string()),
        ("src_x", pa.int32()),
        ("src_y", pa.int32()),
        ("src_w", pa.int32()),
        ("src_h", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_png", pa.binary()),
        ("mask_png", pa.binary()),
    ]
)


def samples_table(samples: list[Sample]) -> pa.Table:
    """Arrow table of samples (sorted by sample_id), images and masks PNG-encoded."""
    rows = sorted(samples, key=lambda s: s.sample_id)
    cols: dict[str, list] = {name: [] for name in PACK_SCHEMA.names}
    for s in rows:
        x, y, w, h = s.src_box
        values = (s.sample_id, s.source, s.class_name, LABEL_INDEX[s.class_name], s.raw_path,
                  s.raw_sha256, x, y, w, h, s.mask.shape[1], s.mask.shape[0],
                  encode_png(s.image), encode_png(s.mask))
        for name, value in zip(PACK_SCHEMA.names, values):
            cols[name].append(value)
    return pa.table(cols, schema=PACK_SCHEMA)


def write_pack(samples: list[Sample], path: Path) -> None:
    """Write the samples as one parquet file (deterministic bytes for the same samples)."""
    with atomic_file(path) as tmp:
        pq.write_table(samples_table(samples), tmp, compression="zstd", row_group_size=4096)


def read_parquet(path: Path, columns: list[str] | None = None,
                 fix: str = "re-run the stage that wrote it", **kwargs) -> pa.Table:
    """``pq.read_table(path, columns, **kwargs)``; a UserError naming ``path`` and ``fix`` when
    the file is missing, empty, not Parquet, damaged or lacks one of ``columns``."""
    try:
        return pq.read_table(path, columns=columns, **kwargs)
    except (OSError, pa.ArrowException, KeyError, ValueError) as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"{path}: not a readable table ({reason}); {fix}") from None


def read_pack(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a pack written by write_pack (all columns unless ``columns`` names some);
    UserError for a missing or damaged pack."""
    return read_parquet(path, columns, "re-run the extract stage that wrote it")


def decode_row(table: pa.Table, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Row i's image (uint8 (h, w, 3) BGR) and mask (bool (h, w))."""
    img = decode_png(table.column("image_png")[i].as_py())
    mask = decode_png(table.column("mask_png")[i].as_py(), mask=True)
    return img, mask


def write_qc(samples: list[Sample], skips: list[Skip], classes: list[str], outdir: Path) -> None:
    """Write the QC tables: samples and skips per class, and every skipped file with its reason."""
    with atomic_file(outdir / COUNTS_NAME) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["class_name", "class_idx", "samples", "skipped"])
        for name in classes:
            n_ok = sum(s.class_name == name for s in samples)
            n_skip = sum(k.class_name == name for k in skips)
            out.writerow([name, LABEL_INDEX.get(name, ""), n_ok, n_skip])
    with atomic_file(outdir / SKIPPED_NAME) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["path", "class_name", "reason"])
        for k in sorted(skips, key=lambda k: (k.path, k.reason)):
            out.writerow([k.path, k.class_name, k.reason])
