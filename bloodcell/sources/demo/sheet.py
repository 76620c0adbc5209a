"""Render a contact sheet of demo cells at the common 40x scale.

Usage: ``python -m bloodcell.sources.demo.sheet OUT.png``

One row per class (Eosinophil, Basophil, Neutrophil, Lymphocytes, Monocytes, Thrombocytes,
Clumps, Infected RBC, healthy RBC), 8 examples each, every cell on its own plasma tile at the
40x scale of the pipeline: WBCs 70-105 px, thrombocytes 15-27 px, clumps 30-72 px, RBCs 33-40 px
(healthy RBC about 36 px across). The output is a deterministic uint8 BGR PNG.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from bloodcell.common.contact_sheet import SHEET_LEVEL, contact_sheet
from bloodcell.common.image_files import write_png
from bloodcell.sources.demo import cells as dc

PER_ROW = 8
TILE_PX = 112
SEED = 2019


def _makers() -> list[tuple[str, Callable[[np.random.Generator, dc.Stain], dc.Cell]]]:
    rows: list[tuple[str, Callable[[np.random.Generator, dc.Stain], dc.Cell]]] = []
    for kind in dc.WBC_TYPES:
        lo, hi = dc.WBC_DIAMETER_40X[kind]
        rows.append((kind, lambda g, s, k=kind, lo=lo, hi=hi: dc.wbc(g, k, g.uniform(lo, hi), s)))
    tl, th = dc.THROMBOCYTE_40X
    cl, ch = dc.CLUMP_LENGTH_40X
    rl, rh = dc.RBC_DIAMETER_40X
    rows += [
        ("Thrombocytes", lambda g, s: dc.thrombocyte(g, g.uniform(tl, th), s)),
        ("Clumps", lambda g, s: dc.platelet_clump(g, g.uniform(cl, ch), s, (11.0, 19.0))),
        ("Infected RBC", lambda g, s: dc.infected_rbc(g, g.uniform(rl, rh), s)),
        ("healthy RBC", lambda g, s: dc.healthy_rbc(g, g.uniform(rl, rh), s)),
    ]
    return rows


def demo_tiles(seed: int = SEED, per_row: int = PER_ROW) -> list[tuple[np.ndarray, str]]:
    """(uint8 BGR image, caption) for ``per_row`` examples of each class, row by row."""
    tiles = []
    for row, (name, make) in enumerate(_makers()):
        for i in range(per_row):
            rng = np.random.default_rng(np.random.SeedSequence([seed, row, i]))
            stain = dc.Stain.sample(rng, "sheet")
            cell = make(rng, stain)
            img, _, _ = dc.cell_patch(rng, cell, stain, pad=4, blur=rng.uniform(0.3, 0.8),
                                      noise=0.6)
            tiles.append((img, name))
    return tiles


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write("usage: python -m bloodcell.sources.demo.sheet OUT.png\n")
        return 2
    write_png(argv[0], contact_sheet(demo_tiles(), PER_ROW, TILE_PX), SHEET_LEVEL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
