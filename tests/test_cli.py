"""The command line follows one pattern, and its defaults have one home: the params schema."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bloodcell.cli import COMMAND_MODULES, build_parser
from bloodcell.common.param_defaults import param_default, schema

PROJECT = Path(__file__).resolve().parents[1]

NOT_PARAMS = {
    ("extract-wbcseg", "dataset"): "which of the two datasets to cut, a choice of the run",
    ("export", "synth"): "where the synth shards are (data/synth), a path",
    ("lineage", "data"): "the pipeline's data folder, a path",
    ("data-report", "data"): "the pipeline's data folder, a path",
    ("detect", "model"): "the trained model file, a path",
    ("evaluate-images", "model"): "the trained model file, a path",
    ("detect", "scale"): "the user's images' own scale (1: already at 40x)",
    ("evaluate-images", "scale"): "the user's images' own scale (1: already at 40x)",
    ("params", "file"): "the file to check, a path",
    ("fit-anchors", "per_class"): "how many boxes the tool draws per class, not a stage's",
    ("quantize", "tiles"): "calibration tiles of a conversion run by hand, not a stage's",
}
"""Options whose default is not a parameter of params.yaml, with the reason (every other
option default comes from the schema)."""

DERIVED = {("train-detector", "lambdas"), ("backgrounds", "rbc_count"), ("slides", "rbc_count"),
           ("slides", "extra_sizes"), ("detect", "stride"), ("evaluate-slides", "stride"),
           ("evaluate-images", "stride")}
"""Defaults built from several schema keys (test_derived_defaults_follow_the_schema)."""


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, by name (``params check`` and ``params use`` as
    ``params``'s children are reached through it)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def defaulted(parser: argparse.ArgumentParser):
    """The (dest, action) of every option with a default a user would get."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from defaulted(child)
        elif action.default not in (None, False, argparse.SUPPRESS) and action.dest != "help":
            yield action.dest, action


def test_every_command_module_registers_its_commands_with_a_main() -> None:
    for name in COMMAND_MODULES:
        assert callable(importlib.import_module(name).add_parser), name
    for command, parser in subcommands().items():
        main = parser.get_default("main")
        assert callable(main), f"{command} has no main"
        assert main.__module__ in COMMAND_MODULES, f"{command}: main in {main.__module__}"


def test_option_defaults_come_from_the_params_schema() -> None:
    """An option with a default either took it from the schema (param_option records the key)
    or is listed in NOT_PARAMS; a default typed into a parser a second time fails here."""
    stray = []
    for command, parser in subcommands().items():
        for dest, action in defaulted(parser):
            key = getattr(action, "param_key", None)
            if key is not None:
                assert action.default == param_default(key), (command, dest)
            elif (command, dest) not in NOT_PARAMS and (command, dest) not in DERIVED:
                stray.append(f"{command} --{dest.replace('_', '-')} = {action.default!r}")
    assert not stray, "option defaults not taken from the schema:\n" + "\n".join(stray)


def test_derived_defaults_follow_the_schema() -> None:
    """The few defaults built from several keys, checked against them."""
    cmds = subcommands()
    detector = {a.dest: a.default for a in cmds["train-detector"]._actions}
    assert detector["lambdas"] == [param_default(f"train_detector.lambda_{t}")
                                   for t in ("coord", "noobj", "class")]
    bg = {a.dest: a.default for a in cmds["backgrounds"]._actions}
    assert bg["rbc_count"] == [param_default("backgrounds.rbc_min"),
                               param_default("backgrounds.rbc_max")]
    for command in ("detect", "evaluate-slides", "evaluate-images"):
        opts = {a.dest: a.default for a in cmds[command]._actions}
        assert opts["stride"] == 224 - param_default("slide_detection.overlap")
        assert opts["overlap"] == param_default("slide_detection.overlap")
    slides = {a.dest: a.default for a in cmds["slides"]._actions}
    assert slides["rbc_count"] == bg["rbc_count"]
    assert slides["extra_sizes"] == [(1300, 900), (500, 700)]
    assert param_default("slides.extra_sizes") == "1300x900,500x700"


def leaves(doc: dict, prefix: str = ""):
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def test_schema_defaults_are_the_default_presets_values() -> None:
    """params.yaml is the default preset: every key the schema gives a default has that value
    there, so a command run without an option behaves as the pipeline does."""
    from bloodcell.common.param_defaults import key_schema

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    differ = []
    for key, value in leaves(params):
        node = key_schema(key)
        if "default" in node and node["default"] != value:
            differ.append(f"{key}: params.yaml {value!r}, schema default {node['default']!r}")
    assert not differ, "\n".join(differ)


def test_the_workflow_validates_against_the_packaged_schema() -> None:
    """One schema file: workflow/schemas/ links to the package's copy, which a pip-installed
    bloodcell (without the workflow folder) reads its defaults from."""
    link = PROJECT / "workflow" / "schemas" / "params.schema.yaml"
    assert link.resolve() == (PROJECT / "bloodcell" / "common" / "params.schema.yaml").resolve()
    assert yaml.safe_load(link.read_text()) == schema()


@pytest.mark.parametrize("argv", [["--help"], ["lineage", "--help"], ["params", "check", "x"],
                                  ["split", "--help"], ["extract-lisc", "--help"],
                                  ["export", "--help"], ["detect", "--help"]])
def test_commands_that_need_no_model_start_without_tensorflow(argv: list[str]) -> None:
    code = ("import sys\nfrom bloodcell.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('tensorflow' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_params_check_works_outside_the_project(tmp_path: Path, capsys) -> None:
    """The schema ships with the package: a params file anywhere is checked against it."""
    from bloodcell.cli import main

    path = tmp_path / "my params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())
    assert main(["params", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: valid"
