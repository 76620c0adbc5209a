"""Where every image came from and where it goes: lineage both ways, export, the data report."""
