"""Pieces every stage shares: classes, tile size, box geometry, errors, atomic outputs,
seeds, image files, params defaults, shared command-line options."""
