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
    return [] if path.startswith(f"{DEMO_ROOT}/") else [path]


def extract_params(db):
    """The extract.<db> params of params.yaml."""
    return config["extract"][db]


SPLITS = ["train", "valid", "test"]
SHARDS = sorted(config["synth"]["shards"])
DATASET_CODE = [
    "bloodcell/compose.py",
    "bloodcell/seeds.py",
    "bloodcell/backgrounds.py",
]


wildcard_constraints:
    split="train|valid|test",
    shard="(train|valid|test)-[0-9]+",


def shard_params(wildcards):
    """The synth.shards entry of one shard job."""
    return config["synth"]["shards"][wildcards.shard]


def shard_backgrounds(wildcards):
    """The backgrounds folder of a shard's split."""
    return f"data/backgrounds/{shard_params(wildcards)['split']}"


# Modules whose code decides the trained models' and the metrics' bytes.
TRAIN_CODE = [
    "bloodcell/model.py",
    "bloodcell/loss.py",
    "bloodcell/data.py",
    "bloodcell/train.py",
    "bloodcell/checkpoint.py",
]
EVAL_CODE = [
    "bloodcell/decode.py",
    "bloodcell/inference.py",
    "bloodcell/metrics.py",
]
