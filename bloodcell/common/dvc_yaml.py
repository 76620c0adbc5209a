"""dvc.yaml for a params file's DAG, rendered from workflow/dvc.yaml.jinja.

DVC cannot make a stage depend on a parameter's value (a preset with other databases has other
extract stages; the public preset adds real tiles and the evaluation on real smears), and it
cannot interpolate a list into a command. So dvc.yaml is rendered per preset, from the same
shape Snakemake uses (:mod:`bloodcell.common.dag_shape`), and each stage's code deps are
derived (:mod:`bloodcell.common.code_deps`). Values stay DVC interpolations (``${seed}``), so
DVC tracks them as params: only a change of shape (a database, a set) needs a new rendering.

The rendered file ends with a checksum line. A dvc.yaml whose body no longer matches its
checksum was edited by hand and is never overwritten.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bloodcell.common import dag_shape
from bloodcell.common.code_deps import code_deps
from bloodcell.common.errors import UserError

TEMPLATE = Path("workflow/dvc.yaml.jinja")
"""The template, relative to the project root."""

TARGET = Path("dvc.yaml")
"""The rendered pipeline, relative to the project root."""

ROOT = "${sources.root}"
"""How dvc.yaml names the source root: an interpolation, so DVC tracks it as a param."""

CHECKSUM = "# rendered from workflow/dvc.yaml.jinja, sha256 of the lines above: "


def yaml_items(paths: list[str], indent: int) -> str:
    """A YAML list of ``paths``, its first item unindented, the others at ``indent`` spaces."""
    return ("\n" + " " * indent).join(f"- {p}" for p in paths)


def context(params: dict, package_dir: Path) -> dict:
    """The template's variables: the DAG's shape and the helpers that write its paths."""
    dbs = dag_shape.databases(params)
    return {
        "demo_sources": dag_shape.draws_demo_sources(params),
        "databases": dbs,
        "extracts": [f"data/extract/{db}" for db in dbs],
        "rbc_extracts": [f"data/extract/{db}" for db in dag_shape.rbc_databases(params)],
        "real_tiles": dag_shape.real_tile_sets(params) if dag_shape.cuts_real_tiles(params)
        else {},
        "evaluate_real": dag_shape.evaluate_real_sets(params),
        "detector_options": dag_shape.detector_options(params),
        "items": yaml_items,
        "code": lambda module, indent: yaml_items(
            code_deps(module, package_dir=package_dir), indent),
        "set_path": lambda path: dag_shape.set_path(path, ROOT),
        "set_inputs": lambda s: dag_shape.set_inputs(s, ROOT),
        "images_list_arg": lambda s: dag_shape.images_list_arg(s, ROOT),
    }


def render(params: dict, project: Path = Path(".")) -> str:
    """dvc.yaml's text for ``params`` (validated), the project's template and package."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    template = env.from_string((project / TEMPLATE).read_text(encoding="utf-8"))
    body = template.render(**context(params, project / "bloodcell"))
    return body + CHECKSUM + hashlib.sha256(body.encode()).hexdigest() + "\n"


def edited_by_hand(text: str) -> bool:
    """Whether a dvc.yaml's text differs from what was rendered (its checksum line is missing
    or no longer matches the lines above it)."""
    body, sep, last = text.rstrip("\n").rpartition("\n")
    if not sep or not last.startswith(CHECKSUM):
        return True
    return hashlib.sha256((body + "\n").encode()).hexdigest() != last.removeprefix(CHECKSUM)


def has_template(project: Path = Path(".")) -> bool:
    """Whether the project renders its dvc.yaml (a copy of only the params has no template)."""
    return (project / TEMPLATE).is_file()


def check_replaceable(project: Path = Path(".")) -> None:
    """UserError unless dvc.yaml is absent or as rendered (never overwrite a user's edits)."""
    target = project / TARGET
    if target.exists() and edited_by_hand(target.read_text(encoding="utf-8")):
        raise UserError(f"{target}: edited by hand since it was rendered (its last line's "
                        f"checksum no longer matches); move your edits to {TEMPLATE}, or "
                        f"rename {TARGET}, then run this command again")


def out_of_step(params: dict, project: Path = Path(".")) -> bool:
    """Whether dvc.yaml is missing or describes another DAG than ``params`` would."""
    target = project / TARGET
    return not target.is_file() or target.read_text(encoding="utf-8") != render(params, project)
