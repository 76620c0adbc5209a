"""Detection on whole smears of any size: reading, tiling + merge + second pass,
outputs, outlines, the Python Detector API."""
