"""Real tiles: flips and quarter turns keep boxes on their cells, tile edges relabel cut white
cells, the stage writes a synth-format shard with lineage, and training mixes it in."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

from bloodcell.dataset.real_tiles import PARTIAL, dihedral, pixel_box, tile_objects


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("k", range(8))
def test_every_turn_moves_the_box_with_its_cell(k):
    img = np.zeros((90, 140, 3), np.uint8)
    img[20:35, 30:70] = 255  # a 40x15 box at (30, 20)
    out, boxes = dihedral(img, np.array([[30, 20, 40, 15]]), k)
    assert tuple(int(v) for v in boxes[0]) == tight_box(out[..., 0] > 0)
    assert out.shape[:2] == ((90, 140) if k % 2 == 0 else (140, 90))


def test_tile_edges_keep_whole_cells_and_make_cut_white_cells_partial():
    boxes = np.array([[10, 10, 30, 30],     # RBC inside
                      [210, 10, 30, 30],    # RBC 14 of 30 px inside: under half, dropped
                      [200, 100, 60, 60],   # WBC 24 of 60 px inside: partial
                      [215, 150, 60, 60],   # WBC 9 of 60 px inside (15 %): kept as partial
                      [220, 20, 60, 60]],   # WBC 4 px inside: dropped
                     float)
    labels = np.array([9, 9, 2, -1, 0])
    idx, out, clipped, visible = tile_objects(boxes, labels, 0, 0, 0.5)
    assert idx.tolist() == [0, 2, 3]
    assert out.tolist() == [9, PARTIAL, PARTIAL]
    assert clipped[1].tolist() == [200, 100, 24, 60]
    assert visible[0] == 1.0
    assert pixel_box(np.array([223.6, 10.2, 5.0, 3.0])) == (224, 10, 0, 3)


def test_an_untyped_white_cell_inside_the_tile_keeps_label_minus_one():
    idx, out, _, _ = tile_objects(np.array([[50, 50, 60, 60]], float), np.array([-1]), 0, 0, 0.5)
    assert out.tolist() == [-1]


def real_tiles_args(root, out, seed=3, voc_scale="0.5", fmt="voc", iml_map="iml", **extra):
    from test_real_sources import make_iml, make_voc

    make_voc(root / "voc")
    make_iml(root / "iml")
    (root / "iml-list.txt").write_text("PA1.JPG\nPA2.JPG\n")
    base = root / "voc" / "BCCD"
    args = ["real-tiles", "--out", out, "--seed", seed,
            "--set", "bccd", fmt, base / "JPEGImages", base / "Annotations",
            base / "ImageSets/Main/train.txt", voc_scale, "bccd",
            "--set", "iml", "iml", root / "iml/IML_Malaria", root / "iml/annotations.json",
            root / "iml-list.txt", "0.7", iml_map]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def test_real_tiles_write_a_synth_format_shard_with_lineage(tmp_path, capsys):
    from bloodcell.dataset.shards import read_records
    from conftest import run_cli

    out = tmp_path / "tiles"
    code, err = run_cli(real_tiles_args(tmp_path, out, variants=2), capsys)
    assert code == 0, err
    records = list(read_records(out / "images.tfrecord"))
    objects = pd.read_parquet(out / "objects.parquet")
    # voc: 400x300 at 0.5 -> 200x150, one padded tile per turn; iml: 400x300 at 0.7 -> 280x210
    # -> two tiles across; 2 images x 2 turns each
    assert len(records) == 2 * 2 * 1 + 2 * 2 * 2
    assert all(r.width == r.height == 224 for r in records)
    assert objects["image_id"].nunique() == len(records)
    assert set(objects["class_name"]) >= {"_", "WBC", "Thrombocytes", "Infected"}
    assert (objects.loc[objects["class_name"] == "WBC", "class_idx"] == -1).all()
    raw = objects.drop_duplicates("raw_path")
    for path, digest in zip(raw["raw_path"], raw["raw_sha256"]):
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    first = records[0]
    rows = objects[objects["image_id"] == first.image_id]
    assert np.allclose(first.boxes, rows[["x", "y", "w", "h"]].to_numpy())
    img = cv2.imdecode(np.frombuffer(first.png, np.uint8), cv2.IMREAD_COLOR)
    for x, y, w, h in rows[["x", "y", "w", "h"]].to_numpy():  # every box sits on a cell
        assert img[y + h // 2, x + w // 2].mean() < 200


def test_real_tiles_are_reproducible_and_seeded(tmp_path, capsys):
    from conftest import run_cli

    digests = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / name
        assert run_cli(real_tiles_args(tmp_path / f"src-{name}", out, seed), capsys)[0] == 0
        digests.append(hashlib.sha256((out / "images.tfrecord").read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


@pytest.mark.parametrize("change, words", [
    ({"voc_scale": "0"}, "scale"),
    ({"fmt": "yolo"}, "format"),
    ({"iml_map": "nosuchmap"}, "unknown class map"),
])
def test_real_tiles_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, change, words):
    from conftest import run_cli

    out = tmp_path / "tiles"
    code, err = run_cli(real_tiles_args(tmp_path, out, **change), capsys)

    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_mixed_epochs_hold_the_asked_share_of_real_tiles(tmp_path, capsys):
    import tensorflow as tf

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.train import input_pipeline as data
    from conftest import run_cli

    real = tmp_path / "real"
    assert run_cli(real_tiles_args(tmp_path / "r", real, variants=1), capsys)[0] == 0
    synth = tmp_path / "synth.tfrecord"
    from bloodcell.common.image_files import encode_png
    from bloodcell.dataset.shards import ImageRecord, encode_example

    with tf.io.TFRecordWriter(str(synth)) as w:
        blank = encode_png(np.zeros((224, 224, 3), np.uint8))
        for i in range(20):
            w.write(encode_example(ImageRecord(f"train-0-{i:06d}", blank, 224, 224,
                                               np.zeros((0, 4)), np.zeros(0))))
    files = [str(real / "images.tfrecord")]

    def epoch(seed):
        ds = data.mixed([str(synth)], files, 0.3, 20, 4, seed, ORIGINAL_ANCHORS, 0.7)
        return np.concatenate([img.numpy().reshape(len(img), -1).max(axis=1) for img, _ in ds])

    a, b = epoch(7), epoch(7)
    assert len(a) == 20 and (a > 0).sum() == 6  # real tiles are not blank
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, epoch(8))


def test_lineage_of_a_real_tile_leads_to_the_raw_image_and_its_box(tmp_path, capsys):
    from bloodcell.provenance.lineage import format_lineage, lineage
    from conftest import run_cli

    out = tmp_path / "data" / "real_tiles"
    assert run_cli(real_tiles_args(tmp_path, out, variants=1), capsys)[0] == 0
    rows = lineage("real-0-000000", tmp_path / "data")
    assert rows and {r["source"] for r in rows} == {"bccd"}
    raw = rows[0]["raw_path"]
    assert raw == (tmp_path / "voc/BCCD/JPEGImages/img_1.png").as_posix()  # the path as given
    assert rows[0]["raw_sha256"] == hashlib.sha256(open(raw, "rb").read()).hexdigest()
    text = format_lineage(rows)
    assert "raw box" in text and "real tile   of set bccd" in text and "WARNING" not in text
