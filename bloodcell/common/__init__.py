"""Pieces every stage shares: classes, box geometry, tile size, errors, atomic outputs, seeds,
writers."""
