"""bloodcell: a reproducible pipeline for blood-cell and malaria detection in blood smears."""

__version__ = "0.1.0"
