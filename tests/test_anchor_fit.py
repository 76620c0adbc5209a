"""Anchors fitted to the training boxes: k-means on IoU with every class weighing the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bloodcell.cli import main
from bloodcell.common.hyperparams import parse_anchors
from bloodcell.train.anchor_fit import (
    centred_iou,
    class_balanced,
    format_anchors,
    kmeans_iou,
)
from conftest import run_cli


def test_centred_iou_of_aligned_boxes():
    iou = centred_iou(np.array([[2.0, 2.0], [1.0, 4.0]]), np.array([[2.0, 2.0], [4.0, 4.0]]))
    np.testing.assert_allclose(iou, [[1.0, 0.25], [2 / 6, 0.25]])


def boxes_of(rng, centre: float, n: int) -> np.ndarray:
    """n square-ish boxes of about ``centre`` grid units."""
    return centre * (1 + 0.05 * rng.standard_normal((n, 2)))


def test_kmeans_finds_separated_sizes_sorted_by_area():
    rng = np.random.default_rng(0)
    wh = np.concatenate([boxes_of(rng, c, 300) for c in (5.0, 0.7, 2.2)])
    anchors = kmeans_iou(wh, 3, np.random.default_rng(1))
    np.testing.assert_allclose(anchors.mean(1), [0.7, 2.2, 5.0], rtol=0.05)


def test_a_rare_small_class_gets_its_own_anchor_only_when_balanced():
    rng = np.random.default_rng(0)
    wh = np.concatenate([boxes_of(rng, 2.2, 5000), boxes_of(rng, 5.0, 1000),
                         boxes_of(rng, 0.7, 60)])
    names = np.array(["rbc"] * 5000 + ["wbc"] * 1000 + ["platelet"] * 60)
    plain = kmeans_iou(wh, 3, np.random.default_rng(1))
    balanced = kmeans_iou(class_balanced(wh, names, 500, np.random.default_rng(2)), 3,
                          np.random.default_rng(1))
    assert plain.min() > 1.5  # the 60 platelets vanish among the red cells
    assert balanced.min() == pytest.approx(0.7, rel=0.1)


def test_format_round_trips_through_the_params_parser():
    anchors = np.array([[0.69, 0.7], [2.25, 2.19]])
    assert parse_anchors(format_anchors(anchors)) == ((0.69, 0.7), (2.25, 2.19))


def write_objects(folder: Path, rows: list[tuple[float, float, str]]) -> None:
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["w", "h", "class_name"]).to_parquet(folder / "objects.parquet")


def test_command_reads_training_boxes_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    train = [(float(w), float(h), name) for name, size in (("_", 34), ("WBC", 80))
             for w, h in size * (1 + 0.05 * rng.standard_normal((200, 2)))]
    write_objects(tmp_path / "synth" / "train-0", train)
    write_objects(tmp_path / "synth" / "valid-0", [(200.0, 200.0, "_")] * 50)
    write_objects(tmp_path / "real", [(12.0, 12.0, "Thrombocytes")] * 20)
    assert main(["fit-anchors", "--shards", str(tmp_path / "synth"), "--real-tiles",
                 str(tmp_path / "real"), "--compare", "1x1,2x2,5x5", "--per-class",
                 "100"]) == 0
    out = capsys.readouterr().out
    anchors = np.array(parse_anchors(out.splitlines()[0].split(": ")[1]))
    np.testing.assert_allclose(anchors.mean(1), [0.75, 34 / 16, 5.0], rtol=0.06)
    assert "Thrombocytes" in out and "valid" not in out


def test_command_without_shards_is_one_line(tmp_path, capsys):
    code, err = run_cli(["fit-anchors", "--shards", tmp_path / "nothing"], capsys)
    assert code == 2
    assert "no train-* shard" in err and len(err.strip().splitlines()) == 1
