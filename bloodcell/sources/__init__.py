"""Source databases: layout checks and extractors for LISC, IUMC, MAMIC and Kaggle, and the
procedural demo stand-ins (demo, demo_cells, demo_sheet)."""
