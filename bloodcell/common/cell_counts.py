"""Clinical summaries of cell counts: parasitemia and the WBC differential, in percent.

Pure Python over a mapping class name (bloodcell.common.classes.CLASS_NAMES) -> number of cells;
used by detect's summary rows and by the evaluation stages' count errors.
"""

from __future__ import annotations

from collections.abc import Mapping

from bloodcell.common.classes import WBC_CLASSES


def parasitemia(class_counts: Mapping[str, int]) -> float | None:
    """Infected / (Infected + ``_``) x 100 (percent of RBCs); None when there is no RBC.

    ``class_counts`` maps class name -> number of cells (absent names count 0).
    """
    infected, healthy = class_counts.get("Infected", 0), class_counts.get("_", 0)
    total = infected + healthy
    return 100.0 * infected / total if total else None


def wbc_differential(class_counts: Mapping[str, int]) -> dict[str, float | None]:
    """Percent of each of the five WBC types among WBCs (``partialWBC`` is not counted).

    ``class_counts`` maps class name -> count (absent names count 0). Values sum to 100; every
    value is None when there is no WBC.
    """
    counts = {name: class_counts.get(name, 0) for name in WBC_CLASSES}
    total = sum(counts.values())
    return {name: (100.0 * n / total if total else None) for name, n in counts.items()}
