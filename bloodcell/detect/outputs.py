"""Outputs of ``bloodcell detect``: annotated images, per-image counts, COCO and QuPath GeoJSON.

Detections are a pandas DataFrame with the columns of DETECTION_COLUMNS: ``image_id`` (str),
``class_idx`` (int, 0..9, see bloodcell.common.classes), ``score`` (float) and the box ``x``, ``y``,
``w``, ``h`` (float pixels; x, y is the TOP-LEFT corner, in the pixel grid of the input image
as stored on disk). Extra columns are ignored.

Every file is written atomically (bloodcell.common.atomic) and deterministically: rows and JSON keys
are sorted, box coordinates are rounded to 2 decimals, scores to 4 and percentages to 2.
Detections are ordered by image_id, then y, x, class_idx, score (highest first), h, w.

Summary CSV columns (SUMMARY_COLUMNS), one row per image:

- ``image_id``;
- ``n_<class>``, the number of detections of each class, 0 when absent:
  ``n_eosinophil``, ``n_basophil``, ``n_neutrophil``, ``n_lymphocyte``, ``n_monocyte``,
  ``n_partial_wbc`` (partialWBC: a white cell cut by the image edge or too damaged to type),
  ``n_thrombocyte``, ``n_platelet_clump`` (Clumps), ``n_infected_rbc`` (Infected) and
  ``n_healthy_rbc`` (class ``_``);
- ``n_wbc``: the typed white cells (the five WBC classes; partialWBC excluded);
- ``n_rbc``: the red cells, infected + healthy;
- ``pct_eosinophil`` ... ``pct_monocyte``: the WBC differential, each type as % of ``n_wbc``
  (empty when there is no typed white cell);
- ``parasitemia_pct``: infected / (infected + healthy) * 100 (empty when there is no red cell).

Percentages are rounded to 2 decimals. Missing values are NaN in the row dict and empty cells
in the CSV. A ``bloodcell detect`` run adds ``file`` (the input) and ``status`` (``ok``, or
``failed`` with empty counts) after ``image_id``, and ``reason`` (why it failed) and ``sha256``
(the input's) at the end.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bloodcell import __version__
from bloodcell.common.atomic import atomic_file
from bloodcell.common.classes import (
    CLASS_NAMES,
    DISPLAY_NAMES,
    HEALTHY_IDX,
    INFECTED_IDX,
    WBC_IDX,
    coco_categories,
)
from bloodcell.common.draw import CLASS_COLOURS_BGR

DETECTION_COLUMNS: tuple[str, ...] = ("image_id", "class_idx", "score", "x", "y", "w", "h")

CLASS_SLUGS: tuple[str, ...] = (
    "eosinophil", "basophil", "neutrophil", "lymphocyte", "monocyte", "partial_wbc",
    "thrombocyte", "platelet_clump", "infected_rbc", "healthy_rbc",
)
"""Column-name form of each class, by class index (``n_<slug>``, ``pct_<slug>``)."""


COUNT_COLUMNS: tuple[str, ...] = tuple(f"n_{s}" for s in CLASS_SLUGS)
DIFFERENTIAL_COLUMNS: tuple[str, ...] = tuple(f"pct_{CLASS_SLUGS[i]}" for i in WBC_IDX)
SUMMARY_COLUMNS: tuple[str, ...] = (
    ("image_id",) + COUNT_COLUMNS + ("n_wbc", "n_rbc") + DIFFERENTIAL_COLUMNS
    + ("parasitemia_pct",)
)
RUN_COLUMNS: tuple[str, ...] = ("file", "status")
"""Columns a detect run adds after ``image_id``: the input file and ``ok`` or ``failed``."""
_PCT_COLUMNS = frozenset(DIFFERENTIAL_COLUMNS + ("parasitemia_pct",))

_SORT_BY = ["image_id", "y", "x", "class_idx", "score", "h", "w"]
_SORT_ASCENDING = [True, True, True, True, False, True, True]
_BLACK = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour_rgb(class_idx: int) -> tuple[int, int, int]:
    """The class colour of draw.CLASS_COLOURS_BGR as (r, g, b)."""
    b, g, r = CLASS_COLOURS_BGR[class_idx]
    return r, g, b


def _num(value: float, decimals: int) -> float:
    """``value`` rounded to ``decimals``, with -0.0 written as 0.0."""
    return round(float(value), decimals) + 0.0


def checked_detections(detections: pd.DataFrame, keep: Sequence[str] = ()) -> pd.DataFrame:
    """A copy of ``detections`` with the DETECTION_COLUMNS only, typed, rounded and sorted;
    the ``keep`` columns it has (e.g. SHAPE_COLUMNS) are carried along unchanged.

    Raises ValueError (a programming error, not the user's) for a missing column, a class index
    outside 0..9, a non-finite value or a negative box size.
    """
    missing = [c for c in DETECTION_COLUMNS if c not in detections.columns]
    if missing:
        raise ValueError(f"detections lack column(s) {missing}; expected {DETECTION_COLUMNS}")
    extra = [c for c in keep if c in detections.columns]
    df = detections.loc[:, [*DETECTION_COLUMNS, *extra]].copy()
    df["image_id"] = df["image_id"].astype(str)
    nums = df[["class_idx", "score", "x", "y", "w", "h"]].astype(np.float64)
    if not np.isfinite(nums.to_numpy()).all():
        raise ValueError("detections hold NaN or infinite values")
    cls = nums["class_idx"]
    if ((cls != cls.round()) | (cls < 0) | (cls >= len(CLASS_NAMES))).any():
        raise ValueError(f"class_idx must be integers 0..{len(CLASS_NAMES) - 1}")
    if ((nums["w"] < 0) | (nums["h"] < 0)).any():
        raise ValueError("detections hold negative box sizes (w, h)")
    df["class_idx"] = cls.astype(np.int64)
    for c in ("x", "y", "w", "h"):
        df[c] = nums[c].round(2) + 0.0
    df["score"] = nums["score"].round(4) + 0.0
    df = df.sort_values(_SORT_BY, ascending=_SORT_ASCENDING, kind="mergesort")
    return df.reset_index(drop=True)


# --- annotated image ---------------------------------------------------------------------------


def _line_width(h: int, w: int, det: pd.DataFrame) -> int:
    """Box line width: grows with the image (1 px up to 1500 px) but stays thin on small boxes."""
    width = max(1, round(max(h, w) / 1500))
    if len(det):
        side = float(np.median(np.minimum(det["w"], det["h"])))
        width = min(width, max(1, int(side // 10)))
    return width


def _legend(counts: dict[int, int], image_side: int) -> np.ndarray:
    """A white BGR panel listing the classes present (colour swatch, name, count)."""
    scale = max(0.4, image_side / 1600)
    thick = max(1, round(scale * 1.6))
    (_, text_h), base = cv2.getTextSize("Hg", _FONT, scale, thick)
    line = round((text_h + base) * 1.6)
    pad = max(4, line // 3)
    total = sum(counts.values())
    lines = [(None, f"{total} detection{'s' if total != 1 else ''}")]
    lines += [(c, f"{DISPLAY_NAMES[c]}: {n}") for c, n in sorted(counts.items())]
    swatch = text_h + base
    text_x = pad + swatch + pad
    width = max(cv2.getTextSize(t, _FONT, scale, thick)[0][0] for _, t in lines)
    panel = np.full((2 * pad + line * len(lines), text_x + width + 2 * pad, 3), 255, np.uint8)
    for k, (c, text) in enumerate(lines):
        top = pad + k * line + (line - swatch) // 2
        if c is not None:
            cv2.rectangle(panel, (pad, top), (pad + swatch - 1, top + swatch - 1),
                          CLASS_COLOURS_BGR[c], -1)
            cv2.rectangle(panel, (pad, top), (pad + swatch - 1, top + swatch - 1), _BLACK,
                          max(1, thick // 2))
        x = pad if c is None else text_x
        cv2.putText(panel, text, (x, top + text_h), _FONT, scale, _BLACK, thick, cv2.LINE_AA)
    return panel


def annotate(image_bgr: np.ndarray, detections: pd.DataFrame) -> np.ndarray:
    """A copy of a uint8 BGR image with the boxes in class colours and a legend on the right.

    The result is the image with a white strip appended on its right (so that no cell is
    hidden), holding the count of each class present; pixel (x, y) of the input is pixel (x, y)
    of the result. Where the legend is taller than the image, white rows are added below.
    Line width and font size grow with the image, so the figure reads the same at 224 px and at
    20000 px; boxes are drawn healthy RBCs first and white cells last, so rarer classes stay on
    top. Boxes are clipped to the image.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) BGR image, got {image_bgr.dtype} "
                         f"{image_bgr.shape}")
    det = checked_detections(detections)
    h, w = image_bgr.shape[:2]
    counts = {int(c): int(n) for c, n in det["class_idx"].value_counts().items()}
    legend = _legend(counts, max(h, w))
    gap = max(2, legend.shape[0] // 40)
    out = np.full((max(h, legend.shape[0]), w + gap + legend.shape[1], 3), 255, np.uint8)
    view = out[:h, :w]
    view[:] = image_bgr
    thick = _line_width(h, w, det)
    for c in sorted(counts, reverse=True):
        boxes = det.loc[det["class_idx"] == c, ["x", "y", "w", "h"]].to_numpy()
        for x, y, bw, bh in boxes:
            x0, y0 = round(x), round(y)
            x1, y1 = max(x0, round(x + bw) - 1), max(y0, round(y + bh) - 1)
            cv2.rectangle(view, (x0, y0), (x1, y1), CLASS_COLOURS_BGR[c], thick, cv2.LINE_8)
    out[: legend.shape[0], w + gap :] = legend
    return out


# --- per-image summary ------------------------------------------------------------------------


def summary_row(image_id: str, detections: pd.DataFrame) -> dict:
    """Counts, WBC differential and parasitemia of one image (columns: module docstring).

    Only the rows of ``detections`` whose image_id is ``image_id`` are counted, so the frame of
    a whole run may be passed.
    """
    from bloodcell.common.cell_counts import parasitemia, wbc_differential

    det = checked_detections(detections)
    det = det[det["image_id"] == str(image_id)]
    counts = np.bincount(det["class_idx"].to_numpy(), minlength=len(CLASS_NAMES))
    by_name = {name: int(n) for name, n in zip(CLASS_NAMES, counts)}
    row: dict = {"image_id": str(image_id)}
    row.update({col: int(n) for col, n in zip(COUNT_COLUMNS, counts)})
    row["n_wbc"] = int(sum(counts[i] for i in WBC_IDX))
    row["n_rbc"] = int(counts[INFECTED_IDX] + counts[HEALTHY_IDX])
    differential = wbc_differential(by_name)
    for col, i in zip(DIFFERENTIAL_COLUMNS, WBC_IDX):
        row[col] = _pct(differential[CLASS_NAMES[i]])
    row["parasitemia_pct"] = _pct(parasitemia(by_name))
    return row


def _pct(value: float | None) -> float:
    """A percentage rounded to 2 decimals, NaN where undefined (None)."""
    return math.nan if value is None else _num(value, 2)


def _cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return ""
        return f"{v:.2f}" if column in _PCT_COLUMNS else f"{v:.6g}"
    return str(value)


def write_summary_csv(rows: Iterable[Mapping], path: str | Path) -> None:
    """Write summary rows as CSV (UTF-8, ``\\n`` line ends), sorted by image_id.

    Columns are ``image_id``, the RUN_COLUMNS the rows have, the other SUMMARY_COLUMNS, then
    any extra keys of the rows in sorted order (empty where a row lacks one). Rows missing a
    SUMMARY_COLUMNS key raise ValueError.
    """
    rows = list(rows)
    for r in rows:
        missing = [c for c in SUMMARY_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"summary row {r.get('image_id')!r} lacks {missing}; "
                             "build rows with summary_row")
    keys = {k for r in rows for k in r}
    lead = [c for c in RUN_COLUMNS if c in keys]
    extra = sorted(keys - set(SUMMARY_COLUMNS) - set(lead))
    columns = list(SUMMARY_COLUMNS[:1]) + lead + list(SUMMARY_COLUMNS[1:]) + extra
    rows = sorted(rows, key=lambda r: str(r["image_id"]))
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(c, r.get(c)) for c in columns])


# --- COCO and GeoJSON ---------------------------------------------------------------------------


def _write_json(doc: object, path: str | Path) -> None:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    with atomic_file(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8", newline="\n")


def write_coco(detections: pd.DataFrame, images: Sequence[tuple[str, str, int, int]],
               path: str | Path) -> None:
    """Write detections as a COCO detection file with scores (loads with pycocotools COCO()).

    ``images`` holds (image_id, file_name, width, height) for every image of the run, also
    those without detections. Images get COCO ids 1.. in image_id order and keep theirs as
    ``bloodcell_id``; annotations get ids 1.. in detection order, ``bbox`` [x, y, w, h]
    (top-left, pixels), ``area`` w * h, ``iscrowd`` 0 and ``score``. Categories are all 10
    classes, id = class index + 1, name = the class name of bloodcell.common.classes. Raises
    ValueError for a duplicate image_id or a detection of an image not in ``images``.
    """
    ordered = sorted(images, key=lambda t: str(t[0]))
    ids = {str(iid): k + 1 for k, (iid, *_rest) in enumerate(ordered)}
    if len(ids) != len(ordered):
        raise ValueError("images hold a duplicate image_id")
    det = checked_detections(detections)
    unknown = sorted(set(det["image_id"]) - set(ids))
    if unknown:
        raise ValueError(f"detections of images not in `images`: {unknown[:5]}")
    coco_images = [{"id": ids[str(iid)], "file_name": str(name), "width": int(width),
                    "height": int(height), "bloodcell_id": str(iid)}
                   for iid, name, width, height in ordered]
    annotations = [{"id": k + 1, "image_id": ids[r.image_id],
                    "category_id": int(r.class_idx) + 1, "bbox": [r.x, r.y, r.w, r.h],
                    "area": _num(r.w * r.h, 2), "iscrowd": 0, "score": r.score}
                   for k, r in enumerate(det.itertuples(index=False))]
    doc = {"info": {"description": "bloodcell detect results; bbox is [x, y, w, h], top-left, "
                                   "in input-image pixels", "version": __version__},
           "licenses": [], "images": coco_images, "annotations": annotations,
           "categories": coco_categories()}
    _write_json(doc, path)


SHAPE_COLUMNS: tuple[str, ...] = ("outline", "measurements")
"""Optional detection columns (bloodcell.detect.outlines): ``outline``, a closed ring ((K, 2) x, y,
input px), and ``measurements``, a dict of QuPath measurement names to values."""


def geojson_feature(x: float, y: float, w: float, h: float, class_idx: int, score: float,
                    outline: list | None = None, measurements: dict | None = None) -> dict:
    """One QuPath detection: its outline polygon (the box's rectangle when ``outline`` is
    None), its classification, and the score with any other ``measurements``."""
    from bloodcell.detect.outlines import box_ring

    ring = box_ring(x, y, w, h) if outline is None else np.asarray(outline).tolist()
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "detection",
            "object_type": "detection",
            "classification": {"name": DISPLAY_NAMES[class_idx],
                               "color": list(class_colour_rgb(class_idx))},
            "measurements": {"score": _num(score, 4), **(measurements or {})},
        },
    }


def write_geojson(detections: pd.DataFrame, path: str | Path) -> None:
    """Write one image's detections as a GeoJSON FeatureCollection that QuPath imports.

    Drag the file onto the image in QuPath (0.4 or later; File > Import objects) to get one
    detection object per cell, classified with the class's display name (``Healthy RBC``, ``Infected
    RBC``, ``Neutrophil``...; bloodcell.common.classes.DISPLAY_NAMES) in its class colour, with the
    score as a measurement. Its geometry is the cell's outline and its measurements include the
    outline's (area, perimeter, mean OD) where the detections carry SHAPE_COLUMNS
    (bloodcell.detect.outlines), else the box's rectangle. Coordinates are pixels of the input
    image, origin top-left, y down (QuPath's convention). Properties carry both ``objectType``
    (QuPath >= 0.4) and ``object_type`` (older). Raises ValueError if the detections belong to more
    than one image.
    """
    det = checked_detections(detections, keep=SHAPE_COLUMNS)
    if det["image_id"].nunique() > 1:
        raise ValueError("write_geojson takes one image's detections, got image ids "
                         f"{sorted(det['image_id'].unique())[:5]}")
    outlines = det["outline"] if "outline" in det else [None] * len(det)
    extra = det["measurements"] if "measurements" in det else [None] * len(det)
    features = (geojson_feature(r.x, r.y, r.w, r.h, int(r.class_idx), r.score, ring, more)
                for r, ring, more in zip(det.itertuples(index=False), outlines, extra))
    # written feature by feature (a 20000 px smear has ~200,000): the bytes of
    # json.dumps({"features": [...], "type": "FeatureCollection"}, sort_keys=True, ...)
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.write('{"features":[')
        for k, feature in enumerate(features):
            f.write(("," if k else "") + json.dumps(feature, sort_keys=True,
                                                    separators=(",", ":"), allow_nan=False))
        f.write('],"type":"FeatureCollection"}\n')
