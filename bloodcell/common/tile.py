"""The one tile size of bloodcell, in pixels at the common 40x scale (a red cell about 34 px).

It is the side of ModifiedYolo's square input, of every synthetic image and real tile, and of
the tiles whole smears are cut into; the detector's output grid divides it into GRID x GRID
cells of CELL_PX. Pure Python: importing it loads nothing else.
"""

TILE_PX = 224
"""Side of the model's input, of synthetic images and of slide tiles, px."""

MODEL_RBC_PX = 34.0
"""Typical red-cell diameter at the common 40x scale, px: the images the detector is trained on."""

CELL_PX = 16
"""Side of one cell of the detector's output grid, px (the trunk's total stride)."""

GRID = TILE_PX // CELL_PX
"""Cells per side of the detector's output grid over one tile (14)."""
