"""Which stages a params file's pipeline has and the paths that wire them: one home for the
DAG's shape, shared by Snakemake (workflow/rules/common.smk loads this file by path) and by
the rendering of dvc.yaml (:mod:`bloodcell.common.dvc_yaml`).

A preset decides the shape: the demo presets extract the four demo databases that
``demo_sources`` draws; the public preset extracts four public datasets, cuts real tiles and
scores the detector on real smears. Every value of a stage (a scale, a seed) is not shape:
Snakemake reads it from params.yaml, dvc.yaml interpolates it (``${extract.voc.scale}``).

Paths are relative to the project root. ``root`` is the folder that holds the source
databases: Snakemake passes ``sources.root``'s value, dvc.yaml its interpolation
``${sources.root}``, so that DVC tracks it as a param. Pure standard library.
"""

from __future__ import annotations

DEMO_ROOT = "raw/demo"
"""Where ``demo_sources`` draws the demo databases."""

DEMO_DATABASES = {"lisc": "lisc", "iumc": "iumc", "mamic": "mamic", "kaggle": "kaggle"}
"""extract stage name -> folder under ``sources.root``, where params has no
``sources.databases``: the original's four databases."""

RBC_SOURCES = ("mamic", "kaggle", "voc", "iml")
"""Databases with red blood cells: the backgrounds are drawn from their cells."""


def databases(params: dict) -> dict[str, str]:
    """Extract stage name (``lisc``, ``voc``, ...) -> its folder under ``sources.root``, in
    the params file's order."""
    return dict(params["sources"].get("databases", DEMO_DATABASES))


def rbc_databases(params: dict) -> list[str]:
    """The databases whose red cells make the backgrounds, in the params file's order."""
    return [db for db in databases(params) if db in RBC_SOURCES]


def draws_demo_sources(params: dict) -> bool:
    """Whether the pipeline draws the demo databases (``demo_sources``): only when the
    sources are read from where it draws them."""
    return params["sources"]["root"] == DEMO_ROOT


def source_dir(params: dict, db: str, root: str) -> str:
    """Folder of one source database: ROOT/<its folder in sources.databases>."""
    return f"{root}/{databases(params).get(db, db)}"


def set_path(path: str, root: str) -> str:
    """A path of an annotated set (real_tiles.sets, evaluate_real): under ROOT, unless it is
    one of the project's lists (config/...) or ``all``."""
    if path == "all" or path.startswith("config/"):
        return path
    return f"{root}/{path}"


def set_inputs(s: dict, root: str) -> list[str]:
    """The files an annotated set's stage reads: images, labels and the image list."""
    files = [set_path(s["images"], root), set_path(s["labels"], root)]
    return files + ([] if s["list"] == "all" else [set_path(s["list"], root)])


def real_tile_sets(params: dict) -> dict[str, dict]:
    """real_tiles.sets, by name in sorted order ({} where the preset cuts no real tiles)."""
    sets = params.get("real_tiles", {}).get("sets", {})
    return {name: sets[name] for name in sorted(sets)}


def cuts_real_tiles(params: dict) -> bool:
    """Whether the pipeline has the ``real_tiles`` stage."""
    return "real_tiles" in params


DETECTOR_DEFAULTS = {"untyped_wbc": "ignore", "real_share": 0.0}
"""train_detector's real-data keys and their defaults (the schema's, train-detector's own)."""


def detector_options(params: dict) -> list[str]:
    """The real-data keys of train_detector set to other than their defaults (only the public
    preset sets them): train-detector gets ``--untyped-wbc`` / ``--real-share`` for these
    only. By value, not by presence: Snakemake fills in the schema's defaults."""
    t = params["train_detector"]
    return [k for k, default in DETECTOR_DEFAULTS.items() if t.get(k, default) != default]


def evaluate_real_sets(params: dict) -> dict[str, dict]:
    """evaluate_real's annotated sets by name in sorted order ({} where there are none)."""
    sets = params.get("evaluate_real", {})
    return {name: sets[name] for name in sorted(sets)}


def images_list_arg(s: dict, root: str) -> str:
    """evaluate-images' ``--images-list`` option of a set ('' for the list ``all``)."""
    return "" if s["list"] == "all" else f"--images-list {set_path(s['list'], root)}"
