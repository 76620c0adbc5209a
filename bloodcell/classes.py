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

WBC_CLASSES: tuple[str, ...] = CLASS_NAMES[:5]
PLATELET_CLASSES: tuple[str, ...] = ("Thrombocytes", "Clumps")
RBC_CLASSES: tuple[str, ...] = ("Infected", "_")
