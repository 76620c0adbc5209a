"""A detector's TFLite form, carried inside a copy of its ``.keras`` file.

``bloodcell quantize`` writes a new ``.keras`` file: every entry of the trained detector's file
(Keras's own and the card, bloodcell.model.card) plus one more, ``detector.tflite``, the
flatbuffer of bloodcell.model.quantize. The card gains a ``tflite`` section: the mode, whether
the output convolution stayed float, the flatbuffer's sha256, the calibration tiles' count and
shard lineage, and the sha256 of the ``.keras`` file it was converted from. The file stays a
valid Keras model (Keras ignores unknown entries), so anchors and scale come from the same card
as always; detection and evaluation run the flatbuffer when it is there
(:func:`bloodcell.model.inference.tile_function`). Entries are written with a fixed date, so
the same inputs give the same bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from bloodcell.common.atomic import atomic_file
from bloodcell.model import card as model_card

ENTRY = "detector.tflite"
"""Name of the flatbuffer's entry inside the .keras zip."""
_DATE = (1980, 1, 1, 0, 0, 0)


def read_flatbuffer(path: Path) -> bytes | None:
    """The TFLite flatbuffer inside a detector ``.keras`` file, or None when it has none (or
    is not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(ENTRY) if ENTRY in z.namelist() else None
    except (OSError, zipfile.BadZipFile):
        return None


def write_with_flatbuffer(source: Path, dest: Path, flatbuffer: bytes, tflite: dict) -> None:
    """Write ``dest`` (atomically): ``source``'s entries, its card with ``tflite`` added as the
    card's ``tflite`` section, and ``flatbuffer`` as :data:`ENTRY`. ``source`` is only read."""
    card = model_card.read_card(source) or {}
    card = {**card, "tflite": tflite}
    with zipfile.ZipFile(source) as src, atomic_file(dest) as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename not in (model_card.ENTRY, ENTRY):
                dst.writestr(zipfile.ZipInfo(info.filename, _DATE), src.read(info.filename))
        dst.writestr(zipfile.ZipInfo(model_card.ENTRY, _DATE), model_card.card_bytes(card))
        dst.writestr(zipfile.ZipInfo(ENTRY, _DATE), flatbuffer)
