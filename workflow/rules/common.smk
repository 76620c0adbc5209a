import importlib.util
import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, "../schemas/params.schema.yaml")


DEMO_ROOT = "raw/demo"
DATABASE_DIRS = config["sources"].get(
    "databases", {"lisc": "lisc", "iumc": "iumc", "mamic": "mamic", "kaggle": "kaggle"}
)
DATABASES = list(DATABASE_DIRS)
RBC_DATABASES = [db for db in DATABASES if db in ("mamic", "kaggle", "voc", "iml")]
REAL_TILES = ["data/real_tiles"] if "real_tiles" in config else []
REAL_SETS = sorted(config.get("evaluate_real", {}))
CONDA_ENV = "../envs/bloodcell.yaml"


def _code_deps_module():
    """bloodcell/common/code_deps.py of this project, loaded by path: pure standard library,
    so it works before (and without) bloodcell being installed in Snakemake's environment.
    """
    path = os.path.join(workflow.basedir, "bloodcell", "common", "code_deps.py")
    spec = importlib.util.spec_from_file_location("bloodcell_code_deps", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


_CODE_DEPS = _code_deps_module()


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
    return f"{config['sources']['root']}/{DATABASE_DIRS.get(db, db)}"


def set_path(path):
    """A path of an annotated set: under sources.root, unless it is config/... or all."""
    if path == "all" or path.startswith("config/"):
        return path
    return f"{config['sources']['root']}/{path}"


def set_inputs(s):
    """The files an annotated set's stage reads: images, labels and a versioned list."""
    files = [set_path(s["images"]), set_path(s["labels"])]
    return files + ([] if s["list"] == "all" else [set_path(s["list"])])


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
    """train-detector's real-data options: empty unless the preset sets them (public); the
    schema's defaults (ignore, no real tiles) are the command's own."""
    t = config["train_detector"]
    untyped = t.get("untyped_wbc", "ignore")
    args = f" --untyped-wbc {untyped}" if untyped != "ignore" else ""
    if input.real:
        args += f" --real-tiles {input.real} --real-share {t.get('real_share', 0.0)}"
    return args


def real_tile_sets():
    """real-tiles' --set options, one per real_tiles.sets entry, in name order."""
    sets = config.get("real_tiles", {}).get("sets", {})
    return " ".join(
        f"--set {name} {s['format']} {set_path(s['images'])} {set_path(s['labels'])}"
        f" {set_path(s['list'])} {s['scale']} {s['class_map']}"
        for name, s in sorted(sets.items())
    )


def evaluate_real_set(name):
    """One evaluate_real entry with its paths resolved and its image-list option."""
    s = config["evaluate_real"][name]
    listed = "" if s["list"] == "all" else f"--images-list {set_path(s['list'])}"
    return {
        **s,
        "images": set_path(s["images"]),
        "labels": set_path(s["labels"]),
        "list_arg": listed,
    }
