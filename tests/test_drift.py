"""Snakemake and DVC describe the same DAG: same stage names, commands, deps and outs, for the
tiny preset and for the public preset (whose dvc.yaml `bloodcell params use` renders)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT, project_copy

SHARED_DATA = PROJECT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("drift"))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> Path:
    """A project copy switched to the public preset by `bloodcell params use public`, its
    sources.root pointed at ../shared/data by absolute path (Snakemake's dry run needs the
    datasets' files to exist)."""
    if not (SHARED_DATA / "bccd").is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the public preset's datasets are not here")
    root = project_copy(tmp_path_factory.mktemp("drift-public"))
    preset = root / "config" / "params-public.yaml"
    text = preset.read_text()
    assert text.count("root: ../shared/data\n") == 1
    preset.write_text(text.replace("root: ../shared/data\n", f"root: {SHARED_DATA}\n"))
    subprocess.run(["bloodcell", "params", "use", "public"], cwd=root, check=True,
                   capture_output=True)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def norm(cmd: str) -> str:
    return " ".join(cmd.split())


def snakemake_jobs(root: Path) -> list[dict]:
    """rule, shell command, inputs and outputs of every job of a forced dry run."""
    proc = subprocess.run(["snakemake", "-n", "-p", "--forceall", "--cores", "1"], cwd=root,
                          capture_output=True, text=True, check=True)
    out = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        field = {k: re.search(rf"^\s+{k}: (.*)$", block, re.M) for k in ("input", "output")}
        cmd = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        jobs.append({"rule": m.group(1), "cmd": norm(cmd),
                     **{k: set(v.group(1).split(", ")) if v else set() for k, v in field.items()}})
    return jobs


def dvc_stages(root: Path) -> list[dict]:
    from dvc.repo import Repo

    repo = Repo(str(root))
    stages = []
    for s in repo.index.stages:
        deps = {Path(d.def_path).as_posix() for d in s.deps} - {"params.yaml"}  # params: below
        inside = {d for d in deps if any(d.startswith(o + "/") for o in deps if o != d)}
        stages.append({"rule": s.name.split("@")[0], "cmd": norm(s.cmd), "input": deps - inside,
                       "output": {Path(o.def_path).as_posix() for o in s.outs}})
    return stages


@pytest.mark.parametrize("preset", ["tiny", "public"])
def test_rules_and_stages_have_the_same_names_commands_deps_and_outs(preset, request):
    root = request.getfixturevalue(preset)
    smk = sorted(snakemake_jobs(root), key=lambda j: j["cmd"])
    dvc = sorted(dvc_stages(root), key=lambda j: j["cmd"])
    assert [j["rule"] for j in smk] == [s["rule"] for s in dvc]
    real = {"extract_voc", "extract_iml", "extract_wbcseg", "real_tiles", "evaluate_real"}
    assert (real <= {j["rule"] for j in smk}) == (preset == "public")
    assert ("demo_sources" in {j["rule"] for j in smk}) == (preset == "tiny")
    assert [j["cmd"] for j in smk] == [s["cmd"] for s in dvc]
    made = set().union(*(j["output"] for j in smk))
    for j, s in zip(smk, dvc):
        assert folded(j["input"], s["input"], made) == s["input"], j["rule"]
        assert j["output"] == s["output"], j["rule"]


def folded(inputs: set[str], dvc_deps: set[str], made: set[str]) -> set[str]:
    """Snakemake inputs with the outputs inside a DVC dep folder (e.g. every data/synth/<shard>
    for the dep data/synth) replaced by that folder, provided they are all of its outputs."""
    out = set(inputs)
    for folder in dvc_deps:
        under = {i for i in inputs if i.startswith(folder + "/")}
        if under and under == {m for m in made if m.startswith(folder + "/")}:
            out = (out - under) | {folder}
    return out


@pytest.mark.parametrize("preset", ["tiny", "public"])
def test_every_dvc_params_key_is_a_leaf_of_params_yaml(preset, request):
    import yaml
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    root = request.getfixturevalue(preset)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for s in Repo(str(root)).index.stages:
        keys = [k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params]
        for key in keys:
            value = params
            for part in key.split("."):
                value = value[part]
            is_shard = key.startswith("synth.shards.")
            assert not isinstance(value, dict) or is_shard, f"{s.name}: {key} is a group"
