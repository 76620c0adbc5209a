"""Detection on whole smears of any size: reading, tiling + merge + second pass, outputs, the
Python API."""
