"""The ``params`` command: validate a params file against the schema, switch to a preset, and
render dvc.yaml for params.yaml's DAG.

Library code never reads params.yaml: stages get their values on the command line. This module
serves `bloodcell params check`, `bloodcell params use NAME` and `bloodcell params dvc` only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from bloodcell.common import dag_shape, dvc_yaml
from bloodcell.common.atomic import atomic_file
from bloodcell.common.errors import UserError
from bloodcell.common.param_defaults import schema

SCHEMA = "bloodcell/common/params.schema.yaml (workflow/schemas/params.schema.yaml)"
PRESETS = Path("config")


def load_yaml(path: Path) -> object:
    """Parse a YAML file; UserError naming the file and line when it is not valid YAML."""
    if not path.is_file():
        raise UserError(f"{path}: not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = str(getattr(err, "problem", None) or err).strip().splitlines()[0]
        raise UserError(f"{where}: not valid YAML ({problem}); fix the syntax") from None


def validate(params: object, where: Path) -> dict:
    """Check params against the schema and the rules a schema cannot state; return them."""
    import jsonschema  # only when a file is checked: the parser of every command stays light

    validator = jsonschema.Draft202012Validator(schema())
    # YAML keys need not be strings (false:, 7:): sort the error paths as text
    errors = sorted(validator.iter_errors(params),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise UserError(f"{where}: {key}: {err.message}; see {SCHEMA} for the allowed values")
    shares = params["split"]
    if abs(shares["train"] + shares["valid"] + shares["test"] - 1) > 1e-6:
        raise UserError(f"{where}: split.train + split.valid + split.test must add up to 1")
    for key, shard in params["synth"]["shards"].items():
        if not isinstance(key, str):
            raise UserError(f"{where}: synth.shards: key {key!r} is not a shard name; name "
                            "shards like train-0")
        if not key.startswith(shard["split"] + "-"):
            raise UserError(f"{where}: synth.shards.{key}: split is {shard['split']}; name the "
                            f"shard {shard['split']}-N")
    splits = {s["split"] for s in params["synth"]["shards"].values()}
    if splits != {"train", "valid", "test"}:
        raise UserError(f"{where}: synth.shards needs at least one shard of each split")
    bg = params["backgrounds"]
    if bg["rbc_min"] > bg["rbc_max"]:
        raise UserError(f"{where}: backgrounds.rbc_min exceeds backgrounds.rbc_max")
    check_sources(params, where)
    return params


def check_sources(params: dict, where: Path) -> None:
    """Every database has its extract params; real tiles are mixed in only when they exist."""
    databases = dag_shape.databases(params)
    for db in databases:
        if db not in params["extract"]:
            raise UserError(f"{where}: sources.databases names {db} but extract.{db} is "
                            "missing; add its params (see config/params-public.yaml)")
    if "mamic" in databases and "mamic_crops" not in params["sources"]:
        raise UserError(f"{where}: sources.mamic_crops is needed for the mamic database")
    share = params["train_detector"].get("real_share", 0.0)
    if share > 0.9 or (share > 0 and "real_tiles" not in params):
        raise UserError(f"{where}: train_detector.real_share {share} needs a real_tiles "
                        "section and must be at most 0.9")


def check(path: Path) -> dict:
    """Load and validate a params file against the schema shipped with the package."""
    return validate(load_yaml(path), path)


def check_project(path: Path, project: Path = Path(".")) -> dict:
    """:func:`check`, and for the project's own params.yaml also that dvc.yaml describes its
    DAG (the same stages Snakemake defines for it)."""
    params = check(path)
    own = path.resolve() == (project / "params.yaml").resolve()
    if own and dvc_yaml.has_template(project) and dvc_yaml.out_of_step(params, project):
        raise UserError(f"{project / dvc_yaml.TARGET}: describes another DAG than {path} (a "
                        "database, set or stage was added or removed); run `bloodcell params "
                        "dvc` to render it again")
    return params


def write_dvc_yaml(params: dict, project: Path) -> bool:
    """Render dvc.yaml for ``params``; False where the project has no template or dvc.yaml is
    already as rendered. Refuses (UserError) to replace a dvc.yaml edited by hand."""
    if not dvc_yaml.has_template(project):
        return False
    text = dvc_yaml.render(params, project)
    target = project / dvc_yaml.TARGET
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    dvc_yaml.check_replaceable(project)
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def use(name: str, project: Path = Path(".")) -> Path:
    """Validate config/params-NAME.yaml, make it the project's params.yaml and render dvc.yaml
    for its DAG. Nothing is written when the preset is invalid or dvc.yaml was edited by hand.
    """
    preset = project / PRESETS / f"params-{name}.yaml"
    if not preset.is_file():
        names = sorted(p.stem.removeprefix("params-") for p in (project / PRESETS).glob(
            "params-*.yaml"))
        raise UserError(f"{preset}: no such preset; choose one of {', '.join(names)}")
    params = validate(load_yaml(preset), preset)
    if dvc_yaml.has_template(project):
        dvc_yaml.check_replaceable(project)
    target = project / "params.yaml"
    with atomic_file(target) as tmp:
        shutil.copyfile(preset, tmp)
    write_dvc_yaml(params, project)
    return target


def add_parser(sub) -> None:
    """``bloodcell params check [FILE]``, ``params use NAME`` and ``params dvc``."""
    p = sub.add_parser("params", help="check params.yaml, switch to a preset, render dvc.yaml")
    psub = p.add_subparsers(dest="params_command", required=True, parser_class=type(p))
    q = psub.add_parser("check", help="validate a params file against the schema (and, for "
                        "params.yaml, that dvc.yaml describes its DAG)")
    q.add_argument("file", type=Path, nargs="?", default=Path("params.yaml"))
    q = psub.add_parser("use", help="make config/params-NAME.yaml the params.yaml and render "
                        "dvc.yaml for its DAG")
    q.add_argument("name")
    psub.add_parser("dvc", help="render dvc.yaml for params.yaml's DAG from "
                    f"{dvc_yaml.TEMPLATE} (after adding or removing a database or set)")
    p.set_defaults(main=main)


def main(a) -> None:
    if a.params_command == "check":
        check_project(a.file)
        print(f"{a.file}: valid")
    elif a.params_command == "use":
        target = use(a.name)
        print(f"config/params-{a.name}.yaml -> {target}; {dvc_yaml.TARGET} rendered for its "
              "DAG")
    else:
        if not dvc_yaml.has_template():
            raise UserError(f"{dvc_yaml.TEMPLATE}: not found; run `bloodcell params dvc` in "
                            "the project folder (the one holding params.yaml and workflow/)")
        changed = write_dvc_yaml(check(Path("params.yaml")), Path("."))
        print(f"{dvc_yaml.TARGET}: " + ("rendered for params.yaml" if changed
                                       else "already describes params.yaml's DAG"))
