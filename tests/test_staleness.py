"""Snakemake and DVC agree on what a parameter change makes stale: every leaf key of the tiny
preset, changed alone to another valid value, stales the same stages in both tools.

Snakemake's side is read from ``snakemake --summary``, not from the reasons of ``snakemake -n``:
a dry run stops checking a job's own params, input set and code once an upstream job has to
run (it only says "Input files updated by another job"), so with ``seed`` changed it names
demo_sources alone while split, backgrounds, synth, slides and both trainings have changed
params too. The summary checks every job of the DAG on its own (status "params changed",
"set of input files changed", "rule implementation changed", "missing", ...), which is what
``dvc status`` does for every stage."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import PROJECT, sh

SCHEMA = "workflow/schemas/params.schema.yaml"

# Jobs that leave Snakemake's DAG when a key changes (nothing asks for their outputs any more),
# given the values changed() and moved() pick. Such a job is not stale in Snakemake (it is not
# there) and its DVC stage is not stale either (its own deps and params are unchanged), so the
# two sets still agree; the departures are checked here so that none goes unnoticed.
LEAVES_SNAKEMAKE_DAG = {
    # raw/demo -> raw/demo-changed: the extractors read the copy; demo_sources, which makes
    # raw/demo/*, is only in the DAG while sources.root is raw/demo.
    "sources.root": {"demo_sources"},
    # valid -> train: no shard of split valid is left, so no synth job asks for its backgrounds.
    "synth.shards.valid-0.split": {"backgrounds@valid"},
    # test -> train: likewise for the test split's backgrounds.
    "synth.shards.test-0.split": {"backgrounds@test"},
}


def leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every value of ``tree`` that is not a dict; a list is one leaf."""
    out = []
    for name, value in tree.items():
        assert "." not in str(name), f"{prefix}{name}: a dot in a key breaks dotted names"
        key = f"{prefix}{name}"
        out += leaves(value, key + ".") if isinstance(value, dict) else [(key, value)]
    return out


def with_leaf(tree: dict, key: str, value: object) -> dict:
    """A deep copy of ``tree`` with the leaf ``key`` set to ``value``."""
    new = copy.deepcopy(tree)
    *parents, last = key.split(".")
    node = new
    for part in parents:
        node = node[part]
    node[last] = value
    return new


def resolved(sub: dict, schema: dict) -> dict:
    """``sub`` with its local ``$ref`` (to ``#/$defs/NAME``) and ``allOf`` merged in."""
    while "$ref" in sub:
        ref = sub["$ref"]
        assert ref.startswith("#/$defs/"), f"unhandled $ref {ref}"
        rest = {k: v for k, v in sub.items() if k != "$ref"}
        sub = {**schema["$defs"][ref.removeprefix("#/$defs/")], **rest}
    for part in sub.get("allOf", []):
        sub = {**{k: v for k, v in sub.items() if k != "allOf"}, **resolved(part, schema)}
    return sub


def key_schema(key: str, schema: dict) -> dict:
    """The schema of the dotted params key ``key``, references resolved."""
    sub = schema
    for part in key.split("."):
        sub = resolved(sub, schema)
        if part in sub.get("properties", {}):
            sub = sub["properties"][part]
        elif isinstance(sub.get("additionalProperties"), dict):
            sub = sub["additionalProperties"]
        else:
            raise KeyError(f"{key}: the schema has no {part}")
    return resolved(sub, schema)


def nudged(value: int | float, step: int | float, sub: dict) -> int | float:
    """``value`` moved by ``step`` up, or else down, inside the schema's bounds."""
    def inside(v):
        return (sub.get("minimum", v) <= v <= sub.get("maximum", v)
                and sub.get("exclusiveMinimum", v - 1) < v < sub.get("exclusiveMaximum", v + 1))

    for new in (value + step, value - step):
        new = new if isinstance(new, int) else round(new, 6)
        if inside(new):
            return new
    raise ValueError(f"no room to move {value!r} by {step} within {sub}")


def changed(key: str, value: object, schema: dict) -> object:
    """Another value of params key ``key`` (now ``value``) that the schema accepts: another
    enum member, an integer +1 (or -1 at the maximum), a number moved by 0.05 inside its
    bounds, the last number of a patterned string (schedule, anchors, sizes) +1, the last
    item of an integer list +1. Any other kind of value fails loudly."""
    sub = key_schema(key, schema)
    for alt in sub.get("oneOf", []) + sub.get("anyOf", []):  # the branch the value is in
        alt = resolved(alt, schema)
        if jsonschema.Draft202012Validator({**alt, "$defs": schema["$defs"]}).is_valid(value):
            sub = alt
            break
    others = [v for v in sub.get("enum", []) if v != value]
    if others:
        return others[0]
    if isinstance(value, bool) or "const" in sub:
        raise TypeError(f"changed() cannot change {key} = {value!r} (schema: {sub})")
    if isinstance(value, int):
        return nudged(value, 1, sub)
    if isinstance(value, float):
        return nudged(value, 0.05, sub)
    if isinstance(value, str) and "pattern" in sub:
        numbers = list(re.finditer(r"[0-9]+", value))
        if numbers:
            last = numbers[-1]
            new = f"{value[:last.start()]}{int(last.group()) + 1}{value[last.end():]}"
            assert re.search(sub["pattern"], new), f"{key}: {new!r} breaks {sub['pattern']}"
            return new
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        items = resolved(sub.get("items", {}), schema)
        return value[:-1] + [nudged(value[-1], 1, items)]
    raise TypeError(f"changed() has no rule for {key} = {value!r} (schema: {sub})")


def moved(root: Path, value: str, outputs: set[Path]) -> str:
    """A copy of the file or folder ``value`` (relative to ``root``) under a new name beside it,
    outside every stage output: a file added to an output folder would change that output
    (raw/demo/mamic/crops.csv is copied to raw/demo/crops-changed.csv, not into demo_sources'
    raw/demo/mamic)."""
    src = Path(value)
    parent = src.parent
    while any(parent == o or o in parent.parents for o in outputs):
        parent = parent.parent
    dst = parent / f"{src.stem}-changed{src.suffix}"
    assert not (root / dst).exists(), dst
    if (root / src).is_dir():
        shutil.copytree(root / src, root / dst, symlinks=True)
    else:
        shutil.copy2(root / src, root / dst)
    return dst.as_posix()


def job_names(root: Path) -> dict[str, str]:
    """Output path -> job name (RULE, or RULE@VALUE for a job with one wildcard) of every job of
    a forced dry run."""
    out = sh(["snakemake", "-n", "--forceall", "--cores", "1"], root)
    names = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        values = [w.split("=", 1)[1] for w in wildcards.group(1).split(", ")] if wildcards else []
        name = f"{m.group(1)}@{values[0]}" if len(values) == 1 else m.group(1)
        for path in re.search(r"^\s+output: (.*)$", block, re.M).group(1).split(", "):
            names[path] = name
    return names


def summary_stale(text: str, names: dict[str, str]) -> tuple[set[str], set[str]]:
    """(jobs in the DAG, jobs stale on their own) from ``snakemake --summary``'s table: a job is
    stale when one of its outputs' status is not ok (params changed, set of input files
    changed, rule implementation changed, missing, updated input files)."""
    rows = [line.split("\t") for line in text.splitlines() if line.count("\t") == 5]
    assert rows and rows[0][0] == "output_file", f"no summary table in:\n{text}"
    jobs, stale = set(), set()
    for path, _date, rule, _log, status, plan in rows[1:]:
        name = names.get(path, f"{rule}[new job: {path}]")
        jobs.add(name)
        if status != "ok":
            assert plan == "update pending", f"{path}: {status} but {plan}"
            stale.add(name)
    return jobs, stale


def dvc_stale(root: Path) -> set[str]:
    """Stages that ``dvc status`` lists (a fresh Repo each time: a Repo caches the index)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        # in-process keys carry the dvc.yaml path relative to the cwd: path/dvc.yaml:NAME
        return {name.rpartition(":")[2] for name in repo.status()}


def mtimes(root: Path) -> dict[Path, tuple[int, int]]:
    """(atime, mtime) in ns of every file of the run, the tools' own folders left out."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".dvc", ".snakemake")]
        for name in files:
            st = os.stat(Path(folder, name), follow_symlinks=False)
            out[Path(folder, name)] = (st.st_atime_ns, st.st_mtime_ns)
    return out


def assert_clean(root: Path, when: str) -> None:
    dry = sh(["snakemake", "-n", "--cores", "1"], root)
    assert "Nothing to be done" in dry, f"Snakemake is not up to date {when}:\n{dry}"
    status = sh(["dvc", "status"], root)
    assert "Data and pipelines are up to date" in status, f"DVC: {when}:\n{status}"


@pytest.mark.slow
def test_snakemake_and_dvc_stale_the_same_stages_for_every_params_key(snakemake_run, tmp_path):
    root = tmp_path / "run"
    # the session's run, without the DVC state other tests may have added to it
    shutil.copytree(snakemake_run, root, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == snakemake_run
                                             and n in (".dvc", "dvc.lock", ".dvcignore")])
    shutil.copy(PROJECT / ".dvcignore", root / ".dvcignore")
    # other tests' dvc commits rewrote some outputs' mtimes in the session's run: re-stamp them
    # in DAG order (the recorded params and code are the run's own, so nothing is stale)
    sh(["snakemake", "--touch", "--forceall", "--cores", "1"], root)
    sh(["dvc", "init", "--no-scm", "-q"], root)
    # dvc commit moves each cached file output to the cache and copies it back, with a new
    # mtime: models/classifier.keras would then look newer than models/detector.keras to
    # Snakemake. The run's mtimes are put back (DVC re-hashes them and finds the same bytes).
    before = mtimes(root)
    sh(["dvc", "commit", "-f", "-q"], root)
    for path, times in before.items():
        if os.stat(path, follow_symlinks=False).st_mtime_ns != times[1]:
            os.utime(path, ns=times, follow_symlinks=False)
    assert_clean(root, "after the run and dvc commit")

    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    schema = yaml.safe_load((root / SCHEMA).read_text())
    names = job_names(root)
    outputs = {Path(p) for p in names}
    keys = leaves(params)
    disagree, dead, dag_moves = [], [], []
    for key, value in keys:
        is_path = isinstance(value, str) and (root / value).exists()
        new = moved(root, value, outputs) if is_path else changed(key, value, schema)
        tree = with_leaf(params, key, new)
        jsonschema.Draft202012Validator(schema).validate(tree)
        text = yaml.safe_dump(tree, sort_keys=False)
        assert yaml.safe_load(text) == tree, key
        params_file.write_text(text)
        try:
            summary = subprocess.Popen(["snakemake", "--summary", "--cores", "1"], cwd=root,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            dvc = dvc_stale(root)  # meanwhile
            out, err = summary.communicate()
            assert summary.returncode == 0, f"{key} = {new!r}: snakemake --summary:\n{err}"
        finally:
            params_file.write_text(original)
            if is_path:
                if (root / new).is_dir():
                    shutil.rmtree(root / new)
                else:
                    (root / new).unlink()
        jobs, smk = summary_stale(out, names)
        left, came = set(names.values()) - jobs, jobs - set(names.values())
        if (left, came) != (LEAVES_SNAKEMAKE_DAG.get(key, set()), set()):
            dag_moves.append(f"  {key}: {value!r} -> {new!r}: left {sorted(left) or '-'}, "
                             f"came {sorted(came) or '-'}")
        if smk != dvc:
            disagree.append(f"  {key}: {value!r} -> {new!r}: snakemake-only "
                            f"{sorted(smk - dvc) or '-'}, dvc-only {sorted(dvc - smk) or '-'}")
        if not smk | dvc:
            dead.append(f"  {key}: {value!r} -> {new!r}")
    assert_clean(root, "after every key was restored")

    problems = []
    if disagree:
        problems += [f"Snakemake and DVC stale different stages for {len(disagree)} of "
                     f"{len(keys)} params keys:", *disagree]
    if dead:
        problems += ["Keys that no stage uses (neither tool stales anything):", *dead]
    if dag_moves:
        problems += ["Jobs that unexpectedly left or joined Snakemake's DAG "
                     "(see LEAVES_SNAKEMAKE_DAG):", *dag_moves]
    assert not problems, "\n".join(problems)
