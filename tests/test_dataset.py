"""Backgrounds, synth shards and slides on a tiny demo database, through the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bloodcell.dataset.shards import read_records
from bloodcell.sources.demo.databases import DemoConfig, make_demo_sources
from conftest import run_cli

DBS = ["lisc", "iumc", "mamic", "kaggle"]
MIX = (0.1, 0.45, 0.3, 0.15)
TRAIN_IMAGES = 300


def cli(args: list, capsys) -> None:
    code, err = run_cli(args, capsys)
    assert code == 0, err


def synth_args(root: Path, shard: str, images: int, out: Path) -> list:
    split = shard.split("-")[0]
    return ["synth", shard, "--split-table", root / "split/split.csv",
            "--extracts", *[root / "extract" / d for d in DBS],
            "--backgrounds", root / "backgrounds" / split, "--out", out, "--seed", "3",
            "--images", images, "--mix", *MIX, "--partial-share", "0.3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, capsys=None) -> Path:
    """A data root with extracts, split, backgrounds, three synth shards and slides."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "raw"
    raw.mkdir()
    make_demo_sources(raw, DemoConfig(4, 8, 1, 6, 3, 40))
    from bloodcell.cli import main

    def run(args):
        assert main([str(a) for a in args]) == 0

    run(["extract-lisc", raw / "lisc", root / "extract/lisc", "--scale", "0.7"])
    run(["extract-iumc", raw / "iumc", root / "extract/iumc", "--scale", "1.0"])
    run(["extract-mamic", raw / "mamic", raw / "mamic/crops.csv", root / "extract/mamic",
         "--scale", "0.6"])
    run(["extract-kaggle", raw / "kaggle", root / "extract/kaggle", "--scale", "0.26"])
    run(["split", *[root / "extract" / d for d in DBS], "--out", root / "split", "--seed", "3"])
    for split in ("train", "valid", "test"):
        run(["backgrounds", split, "--split-table", root / "split/split.csv", "--extracts",
             root / "extract/mamic", root / "extract/kaggle", "--out",
             root / "backgrounds" / split, "--seed", "3", "--per-kind", "2"])
    for shard, n in (("train-0", TRAIN_IMAGES), ("valid-0", 30), ("test-0", 30)):
        run(synth_args(root, shard, n, root / "synth" / shard))
    run(["slides", "--split-table", root / "split/split.csv", "--extracts",
         *[root / "extract" / d for d in DBS], "--out", root / "slides", "--seed", "3",
         "--count", "1", "--extra-sizes", "500x700"])
    return root


def objects(data: Path, shard: str) -> pd.DataFrame:
    return pq.read_table(data / "synth" / shard / "objects.parquet").to_pandas()


def split_of(data: Path) -> dict[str, str]:
    with open(data / "split/split.csv", newline="") as f:
        return {r["sample_id"]: r["split"] for r in csv.DictReader(f)}


def test_no_sample_and_no_background_crosses_splits(data):
    splits = split_of(data)
    for shard in ("train-0", "valid-0", "test-0"):
        split = shard.split("-")[0]
        o = objects(data, shard)
        assert {splits[s] for s in o.sample_id} == {split}
        assert all(b.startswith(f"{split}-") for b in o.background_id)
        recipe = pq.read_table(data / "backgrounds" / split / "backgrounds.parquet").to_pandas()
        assert {splits[s] for s in recipe.sample_id} == {split}
    slides = pd.read_parquet(data / "slides/objects.parquet")
    assert {splits[s] for s in slides.sample_id} == {"test"}


def test_every_box_is_inside_its_image_and_not_empty(data):
    for shard in ("train-0", "valid-0", "test-0"):
        o = objects(data, shard)
        assert (o.w > 0).all() and (o.h > 0).all()
        assert (o.x >= 0).all() and (o.y >= 0).all()
        assert (o.x + o.w <= 224).all() and (o.y + o.h <= 224).all()


def test_tfrecord_and_table_agree(data):
    o = objects(data, "valid-0")
    recs = list(read_records(data / "synth/valid-0/images.tfrecord"))
    assert [r.image_id for r in recs] == sorted(set(o.image_id)) or len(recs) == 30
    for rec in recs[:10]:
        rows = o[o.image_id == rec.image_id]
        assert rec.classes.tolist() == rows.class_idx.tolist()
        assert rec.boxes.astype(int).tolist() == rows[["x", "y", "w", "h"]].values.tolist()


def test_object_counts_and_classes_match_params(data):
    o = objects(data, "train-0")
    affixed = o[o.class_idx < 8].groupby("image_id").size()
    images = o.image_id.nunique()
    share = np.bincount(affixed.reindex(o.image_id.unique(), fill_value=0), minlength=4) / images
    assert np.allclose(share, MIX, atol=0.09), share
    wbc = o[o.class_idx <= 5]
    assert abs((wbc.class_idx == 5).mean() - 0.3) < 0.12
    assert set(o.class_idx) >= {0, 1, 2, 3, 4, 5, 6, 8, 9}


def test_partial_wbcs_touch_an_edge_with_the_share_asked(data):
    o = objects(data, "train-0")
    part = o[o.class_idx == 5]
    assert len(part) >= 10
    touches = (part.x == 0) | (part.y == 0) | (part.x + part.w == 224) | (part.y + part.h == 224)
    assert touches.all()
    near_half = (part.visible - 0.5).abs() < 0.15
    near_quarter = (part.visible - 0.25).abs() < 0.12
    assert (near_half | near_quarter).all(), part.visible.tolist()
    assert near_half.any() and near_quarter.any()


def test_labelled_rbcs_are_mostly_visible(data):
    o = objects(data, "train-0")
    rbc = o[o.class_idx >= 8]
    assert (rbc.visible >= 0.5).all()
    assert 5 <= rbc.groupby("image_id").size().median() <= 25


def test_same_seed_same_bytes(data, tmp_path, capsys):
    cli(synth_args(data, "valid-0", 30, tmp_path / "again"), capsys)
    for name in ("images.tfrecord", "objects.parquet"):
        a = hashlib.sha256((data / "synth/valid-0" / name).read_bytes()).hexdigest()
        b = hashlib.sha256((tmp_path / "again" / name).read_bytes()).hexdigest()
        assert a == b, name


def test_slides_have_coco_truth_and_cells_on_seams(data):
    from pycocotools.coco import COCO

    gt = COCO(str(data / "slides/ground_truth.json"))
    sizes = sorted((i["width"], i["height"]) for i in gt.dataset["images"])
    assert sizes == [(500, 700), (1000, 1000)]
    boxes = [a["bbox"] for a in gt.dataset["annotations"] if a["category_id"] <= 8]
    on_seam = [b for b in boxes if any(b[0] < s < b[0] + b[2] for s in (224, 448, 672, 896))]
    assert on_seam
    for f in gt.dataset["images"]:
        assert (data / "slides" / f["file_name"]).is_file()


def test_export_round_trips_real_shards(data, tmp_path, capsys):
    from bloodcell.provenance.export import read_coco

    cli(["export", "--format", "coco", "valid", tmp_path / "coco", "--synth", data / "synth"],
        capsys)
    back = read_coco(tmp_path / "coco")
    o = objects(data, "valid-0")
    assert back[["class_idx", "x", "y", "w", "h"]].values.tolist() == \
        o[["class_idx", "x", "y", "w", "h"]].values.tolist()


def test_lineage_reaches_the_raw_file(data, capsys):
    from bloodcell.provenance.lineage import lineage

    rows = lineage("train-0-000003", data)
    assert rows and all(len(r["raw_sha256"]) == 64 for r in rows)
    assert {r["sample_split"] for r in rows} == {"train"}


def test_synth_without_backgrounds_or_with_a_bad_shard_name_exits_2(data, tmp_path, capsys):
    args = synth_args(data, "train-0", 5, tmp_path / "o")
    args[args.index("--backgrounds") + 1] = tmp_path / "none"
    code, err = run_cli(args, capsys)
    assert code == 2 and "run the backgrounds stage first" in err
    code, err = run_cli(synth_args(data, "train-x", 5, tmp_path / "o"), capsys)
    assert code == 2 and "train-0" in err
    assert not (tmp_path / "o").exists()


def test_reverse_lineage_finds_everything_made_from_a_raw_file(data, capsys):
    from bloodcell.provenance.raw_file_uses import descendants

    o = objects(data, "train-0")
    rbc = o[(o.class_idx == 9) & o.sample_id.str.startswith("kaggle/")].sample_id.iloc[0]
    d = descendants(rbc.split("/", 1)[1], data)
    assert d.samples == [rbc] and d.backgrounds
    assert set(o.image_id[o.sample_id == rbc]) <= set(d.images)
    wbc = o[o.class_idx <= 4].sample_id.iloc[0]
    raw = data / "raw" / wbc.split("/", 1)[0] / wbc.split("/", 1)[1].split("#")[0]
    d = descendants(str(raw), data)  # by the file itself (path and SHA-256)
    assert wbc in d.samples and set(o.image_id[o.sample_id == wbc]) <= set(d.images)
    code, err = run_cli(["lineage", "--raw-file", "no/such.png", "--data", data], capsys)
    assert code == 2 and "no sample comes from this file" in err


def test_dataset_stats_counts_the_shard(data, tmp_path, capsys):
    cli(["dataset-stats", data / "synth/valid-0", "--metrics", tmp_path / "m.json",
         "--plot", tmp_path / "p.csv"], capsys)
    m = json.loads((tmp_path / "m.json").read_text())
    o = objects(data, "valid-0")
    assert m["images"] == o.image_id.nunique() and m["objects"] == len(o)
    assert sum(m["per_class"].values()) == len(o)
    assert pd.read_csv(tmp_path / "p.csv").objects.sum() == len(o)


def test_ground_truth_table_of_a_ragged_batch_keeps_image_and_box_order() -> None:
    import tensorflow as tf

    from bloodcell.model.inference import ground_truth

    batch = {"id": tf.constant([b"t-1", b"t-2", b"t-3"]),
             "boxes": tf.RaggedTensor.from_row_lengths(
                 tf.constant([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], tf.float32), [2, 0, 1]),
             "classes": tf.RaggedTensor.from_row_lengths(tf.constant([3, 9, 6], tf.int64),
                                                          [2, 0, 1])}
    gt = ground_truth(batch)
    assert gt["image_id"].tolist() == ["t-1", "t-1", "t-3"]
    assert gt["class_idx"].tolist() == [3, 9, 6]
    assert gt[["x", "y", "w", "h"]].to_numpy().tolist() == [[1, 2, 3, 4], [5, 6, 7, 8],
                                                            [9, 10, 11, 12]]
    assert gt["x"].dtype == np.float64
