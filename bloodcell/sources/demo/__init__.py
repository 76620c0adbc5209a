"""The procedural demo databases: stand-ins for LISC, IUMC, MAMIC and Kaggle in
their real on-disk layouts."""
