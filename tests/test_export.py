"""Export of synthetic shards to original / COCO / YOLO layouts, and the round trip back."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bloodcell.atomic import MARKER
from bloodcell.classes import CLASS_NAMES
from bloodcell.errors import UserError
from bloodcell.export import READERS, add_parser, run_export
from bloodcell.samples import PACK_NAME, PACK_SCHEMA
from bloodcell.shards import (
    OBJECT_SCHEMA,
    OBJECTS_NAME,
    TFRECORD_NAME,
    ImageRecord,
    encode_example,
    image_id,
)

SPLIT = "train"
N_SHARDS, PER_SHARD = 2, 3
N_IMAGES = N_SHARDS * PER_SHARD
ODD_SIZE = {"train-1-000002": (256, 192)}
"""One image that is not 224 x 224 (width, height), to check YOLO normalisation."""
SAMPLES = {
    # sample_id: (source, class_name, raw_path, split)
    "lisc/neut/1.bmp": ("lisc", "Neutrophil", "Main Dataset/neut/1.bmp", "train"),
    "lisc/mono/2.bmp": ("lisc", "Monocytes", "Main Dataset/mono/2.bmp", "train"),
    "mamic/images/f1.png@10,20,30,30": ("mamic", "Thrombocytes", "images/f1.png", "train"),
    "kaggle/cell_images/Parasitized/p1.png": (
        "kaggle", "Infected", "cell_images/Parasitized/p1.png", "train"),
    "kaggle/cell_images/Uninfected/u1.png": (
        "kaggle", "_", "cell_images/Uninfected/u1.png", "valid"),
}
"""The Uninfected sample sits in valid on purpose: lineage must report (and flag) it."""


def sha(raw_path: str) -> str:
    return hashlib.sha256(raw_path.encode()).hexdigest()


def objects_of(shard: int, index: int, size: tuple[int, int]) -> list[tuple]:
    """(class_idx, sample_id, x, y, w, h) of one image: WBC, edge partialWBC, platelet, RBCs."""
    w_img, h_img = size
    k = shard * PER_SHARD + index
    ids = list(SAMPLES)
    return [
        (2, ids[0], 30 + k, 40 + 2 * k, 61, 58 + k),
        (5, ids[1], 0, 100, 25 + k, 51),                      # touches the left edge
        (6, ids[2], w_img - 17, h_img - 13 - k, 17, 13 + k),  # touches the bottom-right
        (8, ids[3], 120, 10 + k, 33, 35),
        (9, ids[4], 150 - k, 150, 37, 31 + k % 2),
    ][: 5 - (k % 2)]


def write_packs(data: Path) -> None:
    """data/extract/<db>/samples.parquet (PACK_SCHEMA, empty PNG columns) and split.csv."""
    by_source: dict[str, list[str]] = {}
    for sid, (source, *_rest) in SAMPLES.items():
        by_source.setdefault(source, []).append(sid)
    for source, ids in by_source.items():
        cols: dict[str, list] = {name: [] for name in PACK_SCHEMA.names}
        for sid in sorted(ids):
            _, cls, raw, _ = SAMPLES[sid]
            vals = (sid, source, cls, CLASS_NAMES.index(cls), raw, sha(raw), 1, 2, 30, 30, 30,
                    30, b"", b"")
            for name, v in zip(PACK_SCHEMA.names, vals):
                cols[name].append(v)
        out = data / "extract" / source / PACK_NAME
        out.parent.mkdir(parents=True)
        pq.write_table(pa.table(cols, schema=PACK_SCHEMA), out)
    (data / "split").mkdir(parents=True)
    with open(data / "split" / "split.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sample_id", "source", "class_name", "split"])
        for sid, (source, cls, _, split) in sorted(SAMPLES.items()):
            w.writerow([sid, source, cls, split])


def write_shard(shard_dir: Path, shard: int) -> None:
    """One shard: PER_SHARD random-ish PNGs in images.tfrecord and their objects.parquet."""
    import tensorflow as tf

    rng = np.random.default_rng(shard)
    rows: dict[str, list] = {name: [] for name in OBJECT_SCHEMA.names}
    shard_dir.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(shard_dir / TFRECORD_NAME)) as writer:
        for i in range(PER_SHARD):
            iid = image_id(SPLIT, shard, i)
            w_img, h_img = ODD_SIZE.get(iid, (224, 224))
            img = rng.integers(0, 256, (h_img, w_img, 3), dtype=np.uint8)
            objs = objects_of(shard, i, (w_img, h_img))
            for n, (c, sid, x, y, w, h) in enumerate(objs):
                vals = (iid, SPLIT, shard, n, c, CLASS_NAMES[c], x, y, w, h, 0.5 + 0.1 * n,
                        sid, f"{SPLIT}-nn-{i:04d}", 100 + i, 200 + shard)
                for name, v in zip(OBJECT_SCHEMA.names, vals):
                    rows[name].append(v)
            boxes = np.array([o[2:] for o in objs], np.float32)
            classes = np.array([o[0] for o in objs], np.int64)
            png = cv2.imencode(".png", img)[1].tobytes()
            writer.write(encode_example(ImageRecord(iid, png, w_img, h_img, boxes, classes)))
    pq.write_table(pa.table(rows, schema=OBJECT_SCHEMA), shard_dir / OBJECTS_NAME)


def make_data_root(root: Path) -> Path:
    """A tiny data root: extract packs, split.csv and N_SHARDS shards of the train split."""
    data = root / "data"
    write_packs(data)
    for k in range(N_SHARDS):
        write_shard(data / "synth" / f"{SPLIT}-{k}", k)
    return data


def expected_objects(data: Path) -> pd.DataFrame:
    """image_id, class_idx, x, y, w, h of every object, from the parquet tables."""
    parts = [pq.read_table(p).to_pandas()
             for p in sorted((data / "synth").glob(f"{SPLIT}-*/{OBJECTS_NAME}"))]
    df = pd.concat(parts).sort_values(["shard", "image_id", "obj"])
    cols = ["image_id", "class_idx", "x", "y", "w", "h"]
    df = df[cols].reset_index(drop=True)
    df[cols[1:]] = df[cols[1:]].astype("int64")
    return df


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data_root(tmp_path)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


@pytest.mark.parametrize("fmt, counts", [
    ("original", {"images/*.bmp": N_IMAGES, "labels/*.json": N_IMAGES, "*.*": 0}),
    ("coco", {"images/*.png": N_IMAGES, "annotations.json": 1, "labels": 0}),
    ("yolo", {"images/*.png": N_IMAGES, "labels/*.txt": N_IMAGES, "data.yaml": 1}),
])
def test_each_format_writes_the_right_files(data, tmp_path, fmt, counts):
    out = tmp_path / "out" / fmt
    assert run_export(fmt, SPLIT, data / "synth", out) == N_IMAGES
    for pattern, n in counts.items():
        assert len([p for p in out.glob(pattern) if p.name != MARKER]) == n, pattern
    assert (out / MARKER).read_text() == "export\n"
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("fmt", ["original", "coco", "yolo"])
def test_export_then_read_back_gives_every_label_exactly(data, tmp_path, fmt):
    out = tmp_path / fmt
    run_export(fmt, SPLIT, data / "synth", out)
    got = READERS[fmt](out)
    want = expected_objects(data)
    assert len(want) == sum(len(objects_of(k // 3, k % 3, (224, 224))) for k in range(6))
    pd.testing.assert_frame_equal(got, want)


def test_coco_loads_in_pycocotools(data, tmp_path):
    from pycocotools.coco import COCO

    run_export("coco", SPLIT, data / "synth", tmp_path / "c")
    coco = COCO(str(tmp_path / "c" / "annotations.json"))
    assert len(coco.getAnnIds()) == len(expected_objects(data))
    assert len(coco.getImgIds()) == N_IMAGES
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    img = coco.loadImgs(1)[0]
    assert img["bloodcell_id"] == "train-0-000000"
    assert (tmp_path / "c" / img["file_name"]).is_file()
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert ann["bbox"] == [30.0, 40.0, 61.0, 58.0] and ann["category_id"] == 3
    assert ann["area"] == 61.0 * 58.0 and ann["iscrowd"] == 0
    odd = [i for i in coco.dataset["images"] if i["bloodcell_id"] in ODD_SIZE][0]
    assert (odd["width"], odd["height"]) == ODD_SIZE[odd["bloodcell_id"]]


def test_original_json_has_exactly_the_original_fields(data, tmp_path):
    run_export("original", SPLIT, data / "synth", tmp_path / "o")
    labels = json.loads((tmp_path / "o" / "labels" / "train-0-000000.json").read_text())
    assert list(labels) == ["0", "1", "2", "3", "4"]
    fields = ["className", "classIdx", "posX", "posY", "bboxW", "bboxH", "tlX", "tlY",
              "samplePath", "bgPath"]
    assert all(list(o) == fields for o in labels.values())
    assert labels["0"] == {"className": "Neutrophil", "classIdx": 2, "posX": 30 + 61 // 2,
                           "posY": 40 + 58 // 2, "bboxW": 61, "bboxH": 58, "tlX": 30,
                           "tlY": 40, "samplePath": "lisc/neut/1.bmp", "bgPath": "train-nn-0000"}
    assert labels["1"]["className"] == "partialWBC" and labels["1"]["tlX"] == 0
    assert labels["3"]["className"] == "Infected" and labels["3"]["samplePath"] is None
    assert labels["4"]["className"] == "_" and labels["4"]["samplePath"] is None


def test_bmp_images_have_the_png_pixels(data, tmp_path):
    run_export("original", SPLIT, data / "synth", tmp_path / "o")
    run_export("coco", SPLIT, data / "synth", tmp_path / "c")
    for bmp in sorted((tmp_path / "o" / "images").glob("*.bmp")):
        raw = bmp.read_bytes()
        assert raw[:2] == b"BM" and int.from_bytes(raw[28:30], "little") == 24
        png = cv2.imread(str(tmp_path / "c" / "images" / f"{bmp.stem}.png"), cv2.IMREAD_COLOR)
        assert np.array_equal(cv2.imread(str(bmp), cv2.IMREAD_UNCHANGED), png)


def test_yolo_labels_and_data_yaml(data, tmp_path):
    run_export("yolo", SPLIT, data / "synth", tmp_path / "y")
    line = (tmp_path / "y" / "labels" / "train-0-000000.txt").read_text().splitlines()[0]
    assert line == f"2 {60.5 / 224:.6f} {69 / 224:.6f} {61 / 224:.6f} {58 / 224:.6f}"
    for f in (tmp_path / "y" / "labels").glob("*.txt"):
        for row in f.read_text().splitlines():
            vals = [float(v) for v in row.split()[1:]]
            assert all(0 <= v <= 1 for v in vals) and all(len(v.split(".")[1]) == 6
                                                          for v in row.split()[1:])
    doc = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert doc == {"path": ".", "train": "images", "nc": 10, "names": list(CLASS_NAMES)}


def test_missing_shards_is_a_user_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="run the synth stage first") as err:
        run_export("coco", "valid", tmp_path / "synth", out)
    assert f"{tmp_path / 'synth'}/valid-*" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_unknown_format_and_bad_split_are_user_errors(data, tmp_path):
    with pytest.raises(UserError, match="unknown export format; use one of original, coco"):
        run_export("voc", SPLIT, data / "synth", tmp_path / "o")
    with pytest.raises(UserError, match="not a split name"):
        run_export("coco", "../train", data / "synth", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_error_midway_leaves_no_half_written_output(data, tmp_path):
    """Shard 1's table disagrees with its TFRecord: shard 0 was exported, yet nothing stays."""
    path = data / "synth" / f"{SPLIT}-1" / OBJECTS_NAME
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)
    out = tmp_path / "out" / "coco"
    with pytest.raises(UserError, match="disagree; re-run the synth stage"):
        run_export("coco", SPLIT, data / "synth", out)
    assert not out.exists() and not out.parent.exists()  # the folder it made is gone too


def test_missing_objects_table_is_named(data, tmp_path):
    (data / "synth" / f"{SPLIT}-1" / OBJECTS_NAME).unlink()
    with pytest.raises(UserError, match=f"{SPLIT}-1/{OBJECTS_NAME}: missing"):
        run_export("yolo", SPLIT, data / "synth", tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_outdir_is_replaced_but_never_an_unrelated_folder(data, tmp_path):
    out = tmp_path / "y"
    run_export("yolo", SPLIT, data / "synth", out)
    (out / "images" / "stale.png").write_bytes(b"x")
    run_export("yolo", SPLIT, data / "synth", out)
    assert not (out / "images" / "stale.png").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not made by `bloodcell export`"):
        run_export("yolo", SPLIT, data / "synth", tmp_path / "mine")
    with pytest.raises(UserError, match="holds .*an input of `bloodcell export`"):
        run_export("yolo", SPLIT, data / "synth", data)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert (data / "synth" / f"{SPLIT}-0" / OBJECTS_NAME).is_file()


def test_export_subcommand(data, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="bloodcell")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--format", "yolo", SPLIT, str(tmp_path / "y"),
                              "--synth", str(data / "synth")])
    args.func(args)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"{N_IMAGES} images" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--help"])
    assert "original,coco,yolo" in capsys.readouterr().out
