import importlib.util
import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "../schemas/params.schema.yaml")


def _common_module(name):
    """bloodcell/common/NAME.py of this project, loaded by path: pure standard library, so it
    works before (and without) bloodcell being installed in Snakemake's environment."""
    path = os.path.join(workflow.basedir, "bloodcell", "common", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bloodcell_{name}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


_CODE_DEPS = _common_module("code_deps")
# The DAG's shape (which stages this preset has, the paths that wire them): dvc.yaml is
# rendered from the same module, so both tools define the same stages.
SHAPE = _common_module("dag_shape")

DEMO_ROOT = SHAPE.DEMO_ROOT
ROOT = config["sources"]["root"]
DATABASES = list(SHAPE.databases(config))
RBC_DATABASES = SHAPE.rbc_databases(config)
REAL_TILES = ["data/real_tiles"] if SHAPE.cuts_real_tiles(config) else []
REAL_SETS = list(SHAPE.evaluate_real_sets(config))
CONDA_ENV = "../envs/bloodcell.yaml"


def code_deps(command_module):
    """A stage's code dependencies: the source file of the module that runs its command
    (MODULE or MODULE:FUNCTION) and of every bloodcell module it imports, transitively; dvc.yaml
    lists the same files (tests/test_code_deps.py)."""
    package_dir = Path(workflow.basedir) / "bloodcell"
    return _CODE_DEPS.code_deps(command_module, package_dir=package_dir)


# The image of docker/Dockerfile (bloodcell, Snakemake and its plugins): with `--sdm apptainer`
# (e.g. a SLURM cluster with Apptainer) every job's command runs in it; otherwise unused.
# BLOODCELL_CONTAINER names another one (your registry's copy, the -gpu variant). The
# Kubernetes profile runs its pods in the GPU variant of the same tag (profiles/kubernetes).
CONTAINER_IMAGE = os.environ.get(
    "BLOODCELL_CONTAINER", "docker://ghcr.io/bloodcell/bloodcell:0.1.0"
)


container: CONTAINER_IMAGE


def source_dir(db):
    """Folder of one source database: sources.root/<its folder in sources.databases>."""
    return SHAPE.source_dir(config, db, ROOT)


def set_inputs(s):
    """The files an annotated set's stage reads: images, labels and a versioned list."""
    return SHAPE.set_inputs(s, ROOT)


def versioned_input(path):
    """A user-supplied input file, unless it lies inside the demo databases (made by a rule)."""
    return [] if not path or path.startswith(f"{DEMO_ROOT}/") else [path]


def param(key):
    """One leaf of params.yaml by its dotted key (None where the preset has no such key):
    rules pass leaf params only, so Snakemake re-runs a rule exactly when DVC's stage (which
    lists the same leaf keys) is stale."""
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def extract_param(db, key):
    """One extract.<db>.<key> param (None where the preset has no such database or key)."""
    return config["extract"].get(db, {}).get(key)


SHARDS = sorted(config["synth"]["shards"])


wildcard_constraints:
    split="train|valid|test",
    shard="(train|valid|test)-[0-9]+",


def shard_params(wildcards):
    """The synth.shards entry of one shard job."""
    return config["synth"]["shards"][wildcards.shard]


def shard_backgrounds(wildcards):
    """The backgrounds folder of a shard's split."""
    return f"data/backgrounds/{shard_params(wildcards)['split']}"


def real_data_args(wildcards, input):
    """train-detector's real-data options, each only where the preset sets it (public): the
    schema's defaults (ignore, no real tiles, share 0) are the command's own."""
    t, keys = config["train_detector"], SHAPE.detector_options(config)
    args = f" --untyped-wbc {t['untyped_wbc']}" if "untyped_wbc" in keys else ""
    args += f" --real-tiles {input.real}" if input.real else ""
    return args + (f" --real-share {t['real_share']}" if "real_share" in keys else "")


def real_tile_sets():
    """real-tiles' --set options, one per real_tiles.sets entry, in name order."""
    return " ".join(
        f"--set {name} {s['format']} {SHAPE.set_path(s['images'], ROOT)}"
        f" {SHAPE.set_path(s['labels'], ROOT)} {SHAPE.set_path(s['list'], ROOT)}"
        f" {s['scale']} {s['class_map']}"
        for name, s in SHAPE.real_tile_sets(config).items()
    )


def evaluate_real_set(name):
    """One evaluate_real entry with its paths resolved and its image-list option."""
    s = config["evaluate_real"][name]
    return {
        **s,
        "images": SHAPE.set_path(s["images"], ROOT),
        "labels": SHAPE.set_path(s["labels"], ROOT),
        "list_arg": SHAPE.images_list_arg(s, ROOT),
    }
