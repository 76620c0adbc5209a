"""Code dependencies are derived, not kept by hand: every DVC stage lists exactly the modules its
command imports (transitively), and the package's layers import downward only."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from bloodcell.cli import build_parser
from bloodcell.common.code_deps import PACKAGE_DIR, closure, code_deps, code_files, direct_imports

PROJECT = Path(__file__).resolve().parents[1]


def command_root(command: str) -> str:
    """What a subcommand runs, for code_deps: its main's module, narrowed to MODULE:FUNCTION
    where the module holds several commands' mains (evaluate.commands)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    main = sub.choices[command].get_default("main")
    return main.__module__ if main.__name__ == "main" else f"{main.__module__}:{main.__name__}"


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages, and those that only the public preset's rendering has."""
    from bloodcell.common.dvc_yaml import render

    public = yaml.safe_load((PROJECT / "config" / "params-public.yaml").read_text())
    stages = {**yaml.safe_load(render(public, PROJECT))["stages"],
              **yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]}
    return {name: stage.get("do", stage) for name, stage in stages.items()}


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_each_stage_lists_the_modules_its_command_imports(stage: str) -> None:
    body = dvc_stages()[stage]
    command = re.search(r"bloodcell --log \S+ ([\w-]+)", body["cmd"]).group(1)
    listed = sorted(d for d in body["deps"] if d.startswith("bloodcell/"))
    assert listed == code_deps(command_root(command)), (
        f"dvc.yaml {stage}: deps differ from the modules `bloodcell {command}` imports; list "
        f"{code_deps(command_root(command))}")


def test_the_closure_follows_imports_inside_functions_and_from_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "bloodcell"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def __getattr__(n):\n    import bloodcell.heavy\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bloodcell.sub import b\nimport bloodcell\n"
                              "def run():\n    from bloodcell.sub.c import f\n")
    (pkg / "sub" / "b.py").write_text("x = 1\n")
    (pkg / "sub" / "c.py").write_text("import numpy\nfrom bloodcell.sub import b\n")
    (pkg / "heavy.py").write_text("")
    (pkg / "two.py").write_text("import bloodcell.sub.b\ndef one():\n    import bloodcell.a\n"
                                "def other():\n    import bloodcell.heavy\n")
    assert code_deps("bloodcell.a", package_dir=pkg) == [
        "bloodcell/a.py", "bloodcell/sub/b.py", "bloodcell/sub/c.py"]  # not heavy: __init__'s
    assert code_deps("bloodcell.two:one", package_dir=pkg) == [
        "bloodcell/a.py", "bloodcell/sub/b.py", "bloodcell/sub/c.py", "bloodcell/two.py"]
    assert "bloodcell/heavy.py" in code_deps("bloodcell.two", package_dir=pkg)
    with pytest.raises(KeyError):
        code_deps("bloodcell.two:three", package_dir=pkg)


LOWER = {
    "common": set(),
    "sources": {"common", "dataset"},
    "dataset": {"common", "sources"},
    "model": {"common", "dataset"},
    "train": {"common", "dataset", "model", "evaluate"},
    "detect": {"common", "dataset", "model"},
    "provenance": {"common", "dataset"},
}
"""What each stage family may import: model/ is what train, evaluate and detect use, so it
imports none of them; the data families import no model code; detect/ needs no training or
evaluation code, and provenance/ only reads the data. (evaluate/ may use everything but
train/ and provenance/: it is not listed, test_evaluate_imports_no_training_code checks it.)"""

LAZY_OPTION_IMPORTS = {"bloodcell.common.detection_options"}
"""common/ modules allowed to reach up, inside functions only: the detection commands' shared
options import the model card and slide settings when an option is parsed."""


def modules() -> list[str]:
    return sorted("bloodcell." + ".".join(p.relative_to(PACKAGE_DIR).with_suffix("").parts)
                  for p in PACKAGE_DIR.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("family", sorted(LOWER))
def test_imports_run_down_the_stage_families(family: str) -> None:
    wrong = []
    for module in modules():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] != family or module in LAZY_OPTION_IMPORTS:
            continue
        for dep in direct_imports(module):
            dep_family = dep.split(".")[1] if dep.count(".") else ""
            if dep_family and dep_family != family and dep_family not in LOWER[family]:
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_evaluate_imports_no_training_code() -> None:
    above = ("bloodcell.train", "bloodcell.provenance")
    wrong = [f"{m} imports {d}" for m in modules() if m.startswith("bloodcell.evaluate.")
             for d in direct_imports(m) if d.startswith(above)]
    assert not wrong, "\n".join(wrong)


def test_the_training_resume_key_hashes_the_training_code() -> None:
    from bloodcell.train import checkpoints

    assert list(checkpoints.CODE_FILES) == code_files("bloodcell.train.loop")
    assert "bloodcell.model.network" in closure("bloodcell.train.loop")
