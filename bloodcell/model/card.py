"""The detector's card: what detection needs to know about a model, stored inside its file.

A detector ``.keras`` file (a zip) made by ``train-detector`` holds one more entry beside
Keras's own, ``bloodcell.json`` (Keras ignores it when loading):

- ``classes``: the class names by index (bloodcell.common.classes), ``tile_px`` (224) and ``grid``;
- ``anchors``: [[w, h], ...] in grid units (1 unit = 16 px), the ones the model was trained
  with; ``rbc_diameter_px``: the healthy-RBC diameter, in px, of the images it was trained on
  (its input scale, the 40x scale);
- ``decode``: the thresholds its validation used (``nms_iou``, ``map_score_threshold``);
- ``training``: ``args_sha256`` (a digest of the training command's options, which carry
  every parameter that reaches it) and ``args`` themselves, and ``inputs``: each input shard
  folder with its record count and the sha256 of its objects table (the lineage of every
  training image), and the initial model's sha256.

``detect``, ``evaluate``, ``evaluate-slides`` and ``evaluate-images`` take anchors and scale
from the card: an ``--anchors`` value that differs from the card's is refused with one line.
Files without a card (trained before it existed) keep the command-line anchors.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from bloodcell.common.classes import CLASS_NAMES
from bloodcell.common.errors import UserError

ENTRY = "bloodcell.json"
"""Name of the card's entry inside the .keras zip."""
VERSION = 1
Anchors = tuple[tuple[float, float], ...]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def shard_lineage(folder: Path) -> dict:
    """One training input folder: its name, TFRecord count and objects table's sha256."""
    from bloodcell.dataset.tfrecords import count_records, record_files
    table = folder / "objects.parquet"
    return {"folder": folder.as_posix(),
            "records": count_records(record_files([folder])),
            "objects_sha256": file_sha256(table) if table.is_file() else None}


def make_card(anchors: Anchors, decode: dict, rbc_diameter_px: float, args: list[str],
              shards: list[Path], init: Path | None) -> dict:
    """The card of a detector trained with these options on these inputs."""
    from bloodcell.model.network import GRID, INPUT_SIZE

    return {
        "version": VERSION, "classes": list(CLASS_NAMES), "tile_px": INPUT_SIZE, "grid": GRID,
        "anchors": [[float(w), float(h)] for w, h in anchors],
        "rbc_diameter_px": float(rbc_diameter_px), "decode": decode,
        "training": {
            "args_sha256": hashlib.sha256("\0".join(args).encode()).hexdigest(),
            "args": list(args), "inputs": [shard_lineage(Path(s)) for s in shards],
            "init_sha256": file_sha256(init) if init is not None else None},
    }


def card_bytes(card: dict) -> bytes:
    """The card as stored: sorted, indented JSON."""
    return (json.dumps(card, indent=1, sort_keys=True) + "\n").encode()


def read_card(path: Path) -> dict | None:
    """The card of a .keras file, or None when it has none (or is not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            if ENTRY not in z.namelist():
                return None
            card = json.loads(z.read(ENTRY))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return card if isinstance(card, dict) else None


def anchors_text(anchors: Anchors) -> str:
    """Anchors as params.yaml writes them (``3.1x3.1,6.125x3.1,...``)."""
    return ",".join(f"{w:g}x{h:g}" for w, h in anchors)


def model_anchors(path: Path, given: Anchors | None, default: Anchors) -> Anchors:
    """The anchors to decode ``path``'s output with: the card's; ``given`` (``--anchors``)
    must then equal them (UserError otherwise). Without a card: ``given``, else ``default``."""
    card = read_card(path)
    if card is None:
        return given if given is not None else default
    own = tuple((float(w), float(h)) for w, h in card["anchors"])
    if given is not None and (len(given) != len(own) or any(
            abs(a - b) > 1e-6 for g, o in zip(given, own) for a, b in zip(g, o))):
        raise UserError(f"--anchors {anchors_text(given)} differs from the anchors "
                        f"{path} was trained with ({anchors_text(own)}); drop --anchors (the "
                        "model's are used) or pass the model trained with yours")
    return own


def model_rbc_diameter(path: Path, default: float) -> float:
    """The RBC diameter (px) of the images the model at ``path`` was trained on."""
    card = read_card(path)
    return float(card["rbc_diameter_px"]) if card else default
