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
    code, err = run_cli(["params", "dvc"], capsys)  # no workflow/ here
    assert code == 2 and "dvc.yaml.jinja: not found" in err
    assert not (project / "dvc.yaml").exists()


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A project copy that renders its dvc.yaml: params, presets, template and package."""
    for rel in ("params.yaml", "dvc.yaml", "config", "workflow", "bloodcell"):
        src, dst = PROJECT / rel, tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    return tmp_path


def stage_names(root: Path) -> set[str]:
    return set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def test_dvc_yaml_is_the_rendering_of_params_yaml():
    """The committed dvc.yaml is what `bloodcell params dvc` renders for the demo preset (and
    the tiny and paper presets have the same DAG)."""
    from bloodcell.common import dvc_yaml

    text = (PROJECT / "dvc.yaml").read_text()
    for name in ("demo", "tiny", "paper"):
        preset = yaml.safe_load((PROJECT / "config" / f"params-{name}.yaml").read_text())
        assert dvc_yaml.render(preset, PROJECT) == text, name
    assert not dvc_yaml.edited_by_hand(text)


def test_params_use_renders_the_presets_dag(pipeline, monkeypatch, capsys):
    monkeypatch.chdir(pipeline)
    demo = stage_names(pipeline)
    assert run_cli(["params", "use", "public"], capsys)[0] == 0
    public = stage_names(pipeline)
    assert {"extract_voc", "extract_iml", "extract_wbcseg", "real_tiles",
            "evaluate_real"} <= public
    assert not {"demo_sources", "extract_lisc", "extract_iumc", "extract_mamic"} & public
    assert run_cli(["params", "check"], capsys)[0] == 0
    assert run_cli(["params", "use", "demo"], capsys)[0] == 0
    assert stage_names(pipeline) == demo
    assert (pipeline / "dvc.yaml").read_text() == (PROJECT / "dvc.yaml").read_text()


def test_params_check_finds_a_dvc_yaml_of_another_dag(pipeline, monkeypatch, capsys):
    monkeypatch.chdir(pipeline)
    shutil.copy(pipeline / "config" / "params-public.yaml", pipeline / "params.yaml")
    code, err = run_cli(["params", "check"], capsys)
    assert code == 2 and "dvc.yaml: describes another DAG" in err and "params dvc" in err
    code, out = run_cli(["params", "dvc"], capsys)
    assert code == 0 and "real_tiles" in stage_names(pipeline)
    assert run_cli(["params", "check"], capsys)[0] == 0


def test_a_dvc_yaml_edited_by_hand_is_never_replaced(pipeline, monkeypatch, capsys):
    monkeypatch.chdir(pipeline)
    edited = (pipeline / "dvc.yaml").read_text().replace("--seed ${seed}", "--seed 7", 1)
    (pipeline / "dvc.yaml").write_text(edited)
    params_before = (pipeline / "params.yaml").read_text()
    for command in (["params", "use", "public"], ["params", "dvc"]):
        code, err = run_cli(command, capsys)
        assert code == 2 and "dvc.yaml: edited by hand" in err and "dvc.yaml.jinja" in err
        assert (pipeline / "dvc.yaml").read_text() == edited
        assert (pipeline / "params.yaml").read_text() == params_before
