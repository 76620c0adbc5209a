"""The one tile size of bloodcell, in pixels at the common 40x scale (a red cell about 34 px).

It is the side of ModifiedYolo's square input, of every synthetic image and real tile, and of
the tiles whole smears are cut into. Pure Python: importing it loads nothing else.
"""

TILE_PX = 224
"""Side of the model's input, of synthetic images and of slide tiles, px."""
