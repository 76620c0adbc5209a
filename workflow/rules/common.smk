import os

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "../schemas/params.schema.yaml")


DEMO_ROOT = "raw/demo"
DATABASES = ["lisc", "iumc", "mamic", "kaggle"]
CONDA_ENV = "../envs/bloodcell.yaml"

# Modules whose code decides a stage's output bytes (dvc.yaml lists the same deps).
EXTRACT_CODE = [
    "bloodcell/extract.py",
    "bloodcell/imageio.py",
    "bloodcell/masks.py",
    "bloodcell/samples.py",
    "bloodcell/scale.py",
]


def source_dir(db):
    """Folder of one source database: sources.root/<db>."""
    return f"{config['sources']['root']}/{db}"


def versioned_input(path):
    """A user-supplied input file, unless it lies inside the demo databases (made by a rule)."""
    return [] if path.startswith(DEMO_ROOT + "/") else [path]


def extract_params(db):
    """The extract.<db> params of params.yaml."""
    return config["extract"][db]
