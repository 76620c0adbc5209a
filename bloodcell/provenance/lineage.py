"""Lineage of one synthetic image: for each object, the chain image -> background -> sample ->
raw database file (path, sha256) -> the sample's split. A real tile (``real-0-NNNNNN``, made by
the real_tiles stage) leads straight to its annotated raw image (path, sha256) and the object's
box in that image's native pixels.

Only tables are read, never images: the image's shard ``synth/<split>-<k>/objects.parquet``
filtered by image id, the extract packs' id and provenance columns filtered by sample id, and
two columns of ``split/split.csv``. Boxes are (x, y, w, h): top-left corner and size in image
pixels; the window is the image's top-left corner in its background, in pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import PACK_NAME, read_parquet
from bloodcell.dataset.shards import OBJECTS_NAME, image_id, parse_image_id
from bloodcell.dataset.split import SPLIT_NAME

OBJ_COLUMNS = ["obj", "class_idx", "class_name", "x", "y", "w", "h", "visible", "sample_id",
               "background_id", "window_x", "window_y"]
PACK_COLUMNS = ["sample_id", "source", "raw_path", "raw_sha256"]
RAW_COLUMNS = ["raw_path", "raw_sha256", "raw_x", "raw_y", "raw_w", "raw_h"]
REAL_SPLIT = "real"
ID_HELP = "expected SPLIT-SHARD-INDEX such as train-0-000123 (or real-0-000123, a real tile)"


def parse_id(text: str) -> tuple[str, int, int]:
    """(split, shard, index) of an image id; UserError naming the expected form otherwise."""
    try:
        split, shard, index = parse_image_id(text.strip())
    except ValueError:
        raise UserError(f"{text!r}: not an image id; {ID_HELP}") from None
    if not split or shard < 0 or index < 0 or "/" in split or split.startswith("."):
        raise UserError(f"{text!r}: not an image id; {ID_HELP}")
    return split, shard, index


def _objects(path: Path, iid: str, columns: list[str] = OBJ_COLUMNS,
             stage: str = "synth") -> list[dict]:
    """The image's object rows (``columns``) in ``obj`` order; UserError if there are none."""
    if not path.is_file():
        raise UserError(f"{path}: no such shard for image {iid}; check the id (split and "
                        f"shard) or run the {stage} stage first")
    table = read_parquet(path, columns, "re-run the stage that wrote it",
                         filters=[("image_id", "==", iid)])
    if table.num_rows == 0:
        ids = pc.unique(read_parquet(path, ["image_id"]).column("image_id"))
        span = "{min} .. {max}".format(**pc.min_max(ids).as_py()) if len(ids) else "none"
        raise UserError(f"{path}: image {iid} not found (this shard lists {len(ids)} images "
                        f"with objects: {span}); check the index")
    return sorted(table.to_pylist(), key=lambda r: r["obj"])


def _packs(data: Path, ids: set[str]) -> list[Path]:
    """Extract packs that can hold ``ids``: data/extract/<source>/ by the id prefix, else all."""
    sources = {i.split("/", 1)[0] for i in ids}
    packs = [data / "extract" / s / PACK_NAME for s in sorted(sources)]
    if all(p.is_file() for p in packs):
        return packs
    return sorted((data / "extract").glob(f"*/{PACK_NAME}"))


def sample_info(data: Path, ids: set[str]) -> dict[str, dict]:
    """sample_id -> {source, raw_path, raw_sha256, pack} for the ids found in the packs."""
    out: dict[str, dict] = {}
    if not ids:
        return out
    for pack in _packs(data, ids):
        t = read_parquet(pack, PACK_COLUMNS, "re-run the extract stage",
                         filters=[("sample_id", "in", sorted(ids))])
        for r in t.to_pylist():
            out[r.pop("sample_id")] = {**r, "pack": str(pack)}
    return out


def sample_splits(data: Path, ids: set[str]) -> dict[str, str]:
    """sample_id -> split name from data/split/split.csv (only two columns are read)."""
    import pyarrow.csv as pcsv

    path = data / "split" / SPLIT_NAME
    if not ids or not path.is_file():
        return {}
    opts = pcsv.ConvertOptions(include_columns=["sample_id", "split"],
                               column_types={"sample_id": pa.string(), "split": pa.string()})
    t = pcsv.read_csv(path, convert_options=opts)
    t = t.filter(pc.is_in(t.column("sample_id"), value_set=pa.array(sorted(ids))))
    return dict(zip(t.column("sample_id").to_pylist(), t.column("split").to_pylist()))


def lineage(image_id_text: str, data: Path) -> list[dict]:
    """One dict per object of the image, in object order.

    Keys: image_id, split (the image's), obj, class_idx, class_name, x, y, w, h (box, top-left,
    px), visible (share of the mask visible), background_id, window_x, window_y (image's
    top-left in the background, px), sample_id, source, raw_path, raw_sha256, pack (the extract
    pack the sample came from) and sample_split; unknown provenance is None.
    """
    split, shard, index = parse_id(image_id_text)
    iid = image_id(split, shard, index)
    data = Path(data)
    if split == REAL_SPLIT:
        path = data / "real_tiles" / OBJECTS_NAME
        return [{"image_id": iid, "split": split, **r, "source": r["background_id"],
                 "pack": str(path), "sample_split": REAL_SPLIT}
                for r in _objects(path, iid, OBJ_COLUMNS + RAW_COLUMNS, "real_tiles")]
    rows = _objects(data / "synth" / f"{split}-{shard}" / OBJECTS_NAME, iid)
    ids = {r["sample_id"] for r in rows if r["sample_id"]}
    info, splits = sample_info(data, ids), sample_splits(data, ids)
    empty = {"source": None, "raw_path": None, "raw_sha256": None, "pack": None}
    return [{"image_id": iid, "split": split, **r, **info.get(r["sample_id"], empty),
             "sample_split": splits.get(r["sample_id"])} for r in rows]


def _block(r: dict, data: str) -> list[str]:
    """The text lines of one object's chain."""
    src = r["sample_id"].split("/", 1)[0] if r["sample_id"] else "?"
    lines = [
        f"{r['image_id']}  object {r['obj']}: {r['class_name']} (class {r['class_idx']})  "
        f"box x={r['x']} y={r['y']} w={r['w']} h={r['h']}  visible {r['visible'] or 0:.1%}",
        f"  background  {r['background_id']}  window at x={r['window_x']} y={r['window_y']}"
        if r["split"] != REAL_SPLIT else
        f"  real tile   of set {r['background_id']}, corner at x={r['window_x']} "
        f"y={r['window_y']} in the turned image at the 40x scale",
        f"  sample      {r['sample_id'] or '(none recorded)'}",
    ]
    if r["raw_sha256"]:
        lines += [f"  raw file    {r['source']}: {r['raw_path']}",
                  f"  sha256      {r['raw_sha256']}"]
    if r.get("raw_w") is not None:
        lines.append(f"  raw box     x={r['raw_x']:g} y={r['raw_y']:g} w={r['raw_w']:g} "
                     f"h={r['raw_h']:g} (the annotation's box, raw image px)")
    elif r["sample_id"] and not r["raw_sha256"]:
        lines.append(f"  raw file    (not found in {data}/extract/{src}/{PACK_NAME}; "
                     "re-run the extract stage)")
    split = r["sample_split"] or f"(not in {data}/split/{SPLIT_NAME})"
    lines.append(f"  split       {split}" if r["sample_id"] else "  split       -")
    if r["sample_split"] and r["sample_split"] != r["split"]:
        lines.append(f"  WARNING     sample is in {r['sample_split']} but the image is in "
                     f"{r['split']}: split leak")
    return lines


def format_lineage(rows: list[dict], data: str | Path = "data") -> str:
    """Readable chain image -> background -> sample -> raw file (path, sha256) -> split,
    one block per object separated by blank lines."""
    return "\n\n".join("\n".join(_block(r, str(data))) for r in rows)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bloodcell lineage IMAGE_ID [--data DIR]``."""
    p = sub.add_parser(
        "lineage", help="trace a synthetic image's objects back to raw database files",
        description="For each object of IMAGE_ID print its class and box (x, y, w, h, "
        "top-left, px), visible share, background and window, source sample, raw database "
        "file with its SHA-256, and the sample's split. Reads tables only (fast).")
    p.add_argument("image_id", metavar="IMAGE_ID", nargs="?",
                   help="SPLIT-SHARD-INDEX, e.g. train-0-000123")
    p.add_argument("--raw-file", metavar="PATH",
                   help="the reverse question: list the samples, backgrounds, images and "
                   "slides made from this raw database file (to withdraw it)")
    p.add_argument("--data", type=Path, default=Path("data"), metavar="DIR",
                   help="data root holding synth/, extract/ and split/ (default data)")
    p.set_defaults(main=main)
    return p


def main(a: argparse.Namespace) -> None:
    """Run the lineage subcommand and print the chains (or, with --raw-file, descendants)."""
    if (a.image_id is None) == (a.raw_file is None):
        raise UserError("lineage: give either IMAGE_ID or --raw-file PATH")
    if a.raw_file is not None:
        from bloodcell.provenance.raw_file_uses import descendants, format_descendants

        print(format_descendants(descendants(a.raw_file, a.data)))
        return
    print(format_lineage(lineage(a.image_id, a.data), a.data))
