"""Source databases: one module per on-disk layout (LISC, IUMC, MAMIC, Kaggle, and the public
stand-ins wbcseg, voc, iml), each with its ``extract-<name>`` command; the extract driver
(extract), layout checks (layout), annotation readers (annotations), class maps (class_map,
class_maps/) and the procedural demo databases (demo/)."""
