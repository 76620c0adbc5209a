"""The split stage: shares, determinism, stability, and no sample in two splits."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bloodcell.common.errors import UserError
from bloodcell.dataset.split import SplitConfig, assign, split_sizes
from conftest import make_iumc, make_kaggle, run_cli

CFG = SplitConfig(seed=7, train=0.8, valid=0.1, test=0.1)


@given(n=st.integers(0, 5000))
def test_split_sizes_add_up_and_keep_every_split_once_three(n):
    tr, va, te = split_sizes(n, CFG)
    assert tr + va + te == n and min(tr, va, te) >= 0
    if n >= 3:
        assert va >= 1 and te >= 1 and tr >= 1
    if n >= 100:
        assert abs(te - n * 0.1) <= 1 and abs(va - n * 0.1) <= 1


def test_assign_is_deterministic_and_independent_of_input_order():
    ids = [f"kaggle/x/{i}.png" for i in range(200)]
    a = assign(ids, CFG)
    assert a == assign(list(reversed(ids)), CFG)
    assert a != assign(ids, SplitConfig(8, 0.8, 0.1, 0.1))
    assert sorted(a.values()).count("test") == 20


def test_adding_samples_moves_few_existing_ones():
    ids = [f"s{i}" for i in range(1000)]
    before = assign(ids, CFG)
    after = assign(ids + [f"new{i}" for i in range(50)], CFG)
    moved = sum(before[i] != after[i] for i in ids)
    assert moved <= 60


def test_shares_must_add_up_to_one():
    with pytest.raises(UserError, match="add up to 1"):
        SplitConfig(1, 0.8, 0.2, 0.1).check()


def test_split_stage_puts_every_sample_in_exactly_one_split(tmp_path, capsys):
    kaggle = make_kaggle(tmp_path / "kaggle", per_class=12)
    iumc = make_iumc(tmp_path / "iumc", per_class=5)
    assert run_cli(["extract-kaggle", kaggle, tmp_path / "ek", "--scale", "0.3"], capsys)[0] == 0
    assert run_cli(["extract-iumc", iumc, tmp_path / "ei", "--scale", "1"], capsys)[0] == 0
    code, err = run_cli(["split", tmp_path / "ek", tmp_path / "ei", "--out", tmp_path / "s",
                         "--seed", "3"], capsys)
    assert code == 0, err
    with open(tmp_path / "s" / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 24 + 20
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    for source, cls in {(r["source"], r["class_name"]) for r in rows}:
        splits = [r["split"] for r in rows if (r["source"], r["class_name"]) == (source, cls)]
        assert splits.count("test") >= 1 and splits.count("valid") >= 1
    first = (tmp_path / "s" / "split.csv").read_bytes()
    run_cli(["split", tmp_path / "ei", tmp_path / "ek", "--out", tmp_path / "s2", "--seed", "3"],
            capsys)
    assert (tmp_path / "s2" / "split.csv").read_bytes() == first


def test_split_without_a_pack_exits_2(tmp_path, capsys):
    code, err = run_cli(["split", tmp_path / "nothing", "--out", tmp_path / "s", "--seed", "1"],
                        capsys)
    assert code == 2 and "run the extract stage first" in err
