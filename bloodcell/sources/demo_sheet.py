"""Render a contact sheet of demo cells at the common 40x scale.

Usage: python -m bloodcell.sources.demo_sheet OUT.png
One row per class, 8 examples each, on plasma-coloured tiles (BGR PNG).
"""

from __future__ import annotations

import sys

import numpy as np

from bloodcell.sheet import contact_sheet, write_png
from bloodcell.sources import demo_cells as dc

PER_ROW = 8
TILE_PX = 112


def on_plasma(cell: dc.Cell, rng: np.random.Generator) -> np.ndarray:
    """The cell composited on a plasma background, uint8 BGR."""
    h, w = cell.alpha.shape
    canvas = dc.textured((h + 8, w + 8), dc.PLASMA_LISC, rng, 0.02)
    alpha = np.zeros((h + 8, w + 8), np.float32)
    dc.paste_cell(canvas, alpha, cell, 4, 4)
    return dc.finish(canvas, rng, 0.6, 2.0)


def demo_tiles(seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """(image, caption) per example: WBCs 70-105 px, platelets 15-27 px, RBCs about 36 px."""
    rng = np.random.default_rng(seed)
    makers = [(k, lambda k=k: dc.wbc(rng, k, rng.uniform(*dc.WBC_DIAMETER[k]) * 105))
              for k in dc.WBC_TYPES]
    makers += [("Thrombocytes", lambda: dc.platelet(rng, rng.uniform(15, 27))),
               ("Clumps", lambda: dc.clump(rng, rng.uniform(30, 72), (13, 20))),
               ("Infected", lambda: dc.rbc(rng, rng.uniform(33, 40), True)),
               ("healthy RBC", lambda: dc.rbc(rng, rng.uniform(31, 40), False))]
    return [(on_plasma(make(), rng), name) for name, make in makers for _ in range(PER_ROW)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m bloodcell.sources.demo_sheet OUT.png\n")
        return 2
    write_png(argv[0], contact_sheet(demo_tiles(), PER_ROW, TILE_PX))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
