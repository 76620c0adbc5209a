"""params.yaml validation and presets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bloodcell.common import params
from bloodcell.common.errors import UserError
from conftest import PROJECT, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for rel in ("params.yaml", "config", "workflow/schemas"):
        src = PROJECT / rel
        dst = tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)
    return tmp_path


@pytest.mark.parametrize("preset", sorted((PROJECT / "config").glob("params-*.yaml")))
def test_every_preset_is_valid(preset):
    params.check(preset)


def test_params_yaml_is_the_demo_preset():
    assert (PROJECT / "params.yaml").read_text() == (
        PROJECT / "config" / "params-demo.yaml").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["extract"]["kaggle"].update(scale=-1), "extract.kaggle.scale"),
    (lambda p: p["extract"]["lisc"].update(multi_cell="maybe"), "extract.lisc.multi_cell"),
    (lambda p: p.update(colour="red"), "Additional properties"),
    (lambda p: p["split"].update(train=0.5), "add up to 1"),
    (lambda p: p["extract"]["kaggle"].update(threshold="auto"), "extract.kaggle.threshold"),
])
def test_broken_params_name_the_key(project, capsys, edit, message):
    p = yaml.safe_load((project / "params.yaml").read_text())
    edit(p)
    (project / "params.yaml").write_text(yaml.safe_dump(p))
    code, err = run_cli(["params", "check", project / "params.yaml"], capsys)
    assert code == 2 and message in err and "params.yaml" in err


def test_yaml_syntax_error_names_the_line(project):
    (project / "params.yaml").write_text("seed: 1\nsources: [\n")
    with pytest.raises(UserError, match=r"params.yaml:\d+: not valid YAML"):
        params.check(project / "params.yaml")


def test_params_use_copies_the_preset(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    code, _ = run_cli(["params", "use", "tiny"], capsys)
    assert code == 0
    assert (project / "params.yaml").read_text() == (
        project / "config" / "params-tiny.yaml").read_text()
    code, err = run_cli(["params", "use", "nope"], capsys)
    assert code == 2 and "choose one of" in err and "tiny" in err
