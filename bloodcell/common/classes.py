"""The ten classes, in the original project's fixed order and with its exact JSON strings."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "Eosinophil",
    "Basophil",
    "Neutrophil",
    "Lymphocytes",
    "Monocytes",
    "partialWBC",
    "Thrombocytes",
    "Clumps",
    "Infected",
    "_",
)
"""Index i is class i. ``_`` is a healthy red blood cell, ``Infected`` a malaria-infected one."""

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
N_CLASSES = len(CLASS_NAMES)

DISPLAY_NAMES: tuple[str, ...] = (
    "Eosinophil", "Basophil", "Neutrophil", "Lymphocyte", "Monocyte", "Partial WBC",
    "Thrombocyte", "Platelet clump", "Infected RBC", "Healthy RBC",
)
"""The class names as a person reads them (legends, figure keys, CSV, GeoJSON), by class
index; CLASS_NAMES stay in the original-format labels, COCO categories and params."""

WBC_CLASSES: tuple[str, ...] = CLASS_NAMES[:5]
PLATELET_CLASSES: tuple[str, ...] = ("Thrombocytes", "Clumps")
RBC_CLASSES: tuple[str, ...] = ("Infected", "_")

WBC_IDX: tuple[int, ...] = tuple(CLASS_INDEX[n] for n in WBC_CLASSES)
"""Class indices of the five typed white cells."""
PARTIAL_IDX: int = CLASS_INDEX["partialWBC"]
PLATELET_IDX: tuple[int, ...] = tuple(CLASS_INDEX[n] for n in PLATELET_CLASSES)
"""Class indices of thrombocytes and platelet clumps."""
INFECTED_IDX: int = CLASS_INDEX["Infected"]
HEALTHY_IDX: int = CLASS_INDEX["_"]
RBC_IDX: tuple[int, ...] = (INFECTED_IDX, HEALTHY_IDX)
"""Class indices of red cells, infected and healthy."""

CELL_KIND: tuple[int, ...] = tuple(
    0 if i in (*WBC_IDX, PARTIAL_IDX) else 3 if i in RBC_IDX else 1 + PLATELET_IDX.index(i)
    for i in range(len(CLASS_NAMES)))
"""Kind of cell of each class index: 0 white cells (types and partial), 1 thrombocytes,
2 clumps, 3 red cells (infected or healthy). Two boxes of one kind on one cell are one cell."""

UNTYPED_WBC = "WBC"
"""A white cell whose annotation does not name its type (BCCD's ``WBC``). Its label index is
UNTYPED_WBC_INDEX: it trains the box and objectness terms, not the class term, and evaluation
never counts it as a wrong class."""
UNTYPED_WBC_INDEX = -1

LABEL_INDEX: dict[str, int] = {**CLASS_INDEX, UNTYPED_WBC: UNTYPED_WBC_INDEX}
"""Every label a sample or object may carry: the ten classes plus the untyped white cell."""


def coco_categories() -> list[dict]:
    """COCO categories of the ten classes: id = class index + 1, the class name, and a
    supercategory ``wbc``, ``platelet`` or ``rbc`` (a fresh list on every call)."""
    def group(name: str) -> str:
        return "rbc" if name in RBC_CLASSES else "platelet" if name in PLATELET_CLASSES else "wbc"

    return [{"id": i + 1, "name": n, "supercategory": group(n)} for i, n in enumerate(CLASS_NAMES)]


def display_name(name: str) -> str:
    """The human-readable form of a class name (``_`` -> ``Healthy RBC``); other names (the
    untyped ``WBC``, a dataset's own classes) as they are."""
    return DISPLAY_NAMES[CLASS_INDEX[name]] if name in CLASS_INDEX else name


def label_name(idx: int) -> str:
    """The name of a label index: a class name, or UNTYPED_WBC for -1 (not CLASS_NAMES[-1])."""
    return UNTYPED_WBC if idx == UNTYPED_WBC_INDEX else CLASS_NAMES[idx]
