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

from bloodcell.common.atomic import MARKER
from bloodcell.common.classes import CLASS_NAMES, DISPLAY_NAMES
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import PACK_NAME, PACK_SCHEMA
from bloodcell.dataset.shards import (
    OBJECT_SCHEMA,
    OBJECTS_NAME,
    TFRECORD_NAME,
    ImageRecord,
    encode_example,
    image_id,
)
from bloodcell.provenance.export import READERS, add_parser, run_export

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


def write_shard(shard_dir: Path, shard: int, split: str = SPLIT) -> None:
    """One shard of ``split``: PER_SHARD random-ish PNGs in images.tfrecord and their
    objects.parquet."""
    import tensorflow as tf

    rng = np.random.default_rng(shard)
    rows: dict[str, list] = {name: [] for name in OBJECT_SCHEMA.names}
    shard_dir.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(shard_dir / TFRECORD_NAME)) as writer:
        for i in range(PER_SHARD):
            iid = image_id(split, shard, i)
            w_img, h_img = ODD_SIZE.get(iid, (224, 224))
            img = rng.integers(0, 256, (h_img, w_img, 3), dtype=np.uint8)
            objs = objects_of(shard, i, (w_img, h_img))
            for n, (c, sid, x, y, w, h) in enumerate(objs):
                vals = (iid, split, shard, n, c, CLASS_NAMES[c], x, y, w, h, 0.5 + 0.1 * n,
                        sid, f"{split}-nn-{i:04d}", 100 + i, 200 + shard)
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


def add_other_splits(data: Path) -> int:
    """One shard each of valid and test beside the train shards; returns the images added."""
    for split in ("valid", "test"):
        write_shard(data / "synth" / f"{split}-0", 0, split)
    return 2 * PER_SHARD


def expected_objects(data: Path, splits: tuple[str, ...] = (SPLIT,)) -> pd.DataFrame:
    """image_id, class_idx, x, y, w, h of every object of ``splits``, from the parquet tables,
    in the readers' order (images by split name, shard, index; objects in ``obj`` order)."""
    parts = [pq.read_table(p).to_pandas() for split in splits
             for p in sorted((data / "synth").glob(f"{split}-*/{OBJECTS_NAME}"))]
    df = pd.concat(parts).sort_values(["split", "shard", "image_id", "obj"])
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
    ("yolo", {"images/train/*.png": N_IMAGES, "labels/train/*.txt": N_IMAGES, "data.yaml": 1,
              "images/*.png": 0, "*/val": 0}),
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
    line = (tmp_path / "y" / "labels" / "train" / "train-0-000000.txt").read_text()
    assert line.splitlines()[0] == (
        f"2 {60.5 / 224:.6f} {69 / 224:.6f} {61 / 224:.6f} {58 / 224:.6f}")
    for f in (tmp_path / "y" / "labels" / "train").glob("*.txt"):
        for row in f.read_text().splitlines():
            vals = [float(v) for v in row.split()[1:]]
            assert all(0 <= v <= 1 for v in vals) and all(len(v.split(".")[1]) == 6
                                                          for v in row.split()[1:])
    doc = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert doc == {"train": "images/train", "nc": 10, "names": dict(enumerate(DISPLAY_NAMES))}


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
    (out / "images" / "train" / "stale.png").write_bytes(b"x")
    run_export("yolo", SPLIT, data / "synth", out)
    assert not (out / "images" / "train" / "stale.png").exists()
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
    args.main(args)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"{N_IMAGES} images" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--help"])
    assert "original,coco,yolo" in capsys.readouterr().out


# ------------------------------------------------ the consuming tools' documented schemas

IMG_FORMATS = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"}
"""Ultralytics' image suffixes (ultralytics/data/utils.py, IMG_FORMATS)."""


def ultralytics_label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    head, sep, tail = str(image).rpartition("/images/")
    assert sep, f"{image}: no /images/ folder in its path"
    return Path(f"{head}/labels/{tail}").with_suffix(".txt")


def check_ultralytics_yaml(yaml_path: Path) -> dict:
    """Ultralytics' check_det_dataset rules for a local data YAML (as documented at
    docs.ultralytics.com/datasets/detect and coded in ultralytics/data/utils.py): train and val
    keys, names and/or nc with len(names) == nc, names by index 0..nc-1, each split path
    relative to ``path`` or, without one, to the YAML's own folder. Returns {key: folder}."""
    data = yaml.safe_load(yaml_path.read_text())
    assert "train" in data and "val" in data, "'train' and 'val' are required"
    names = data["names"] if isinstance(data["names"], dict) else dict(enumerate(data["names"]))
    assert len(names) == data["nc"], "'names' length and 'nc' must match"
    assert sorted(names) == list(range(data["nc"])), "names must be indexed 0..nc-1"
    assert all(isinstance(n, str) and n for n in names.values()), names
    root = Path(data.get("path") or yaml_path.parent)
    folders = {k: root / data[k] for k in ("train", "val", "test") if data.get(k)}
    assert all(f.is_dir() for f in folders.values()), folders
    return folders


def check_ultralytics_split(folder: Path, nc: int) -> int:
    """Ultralytics' verify_image_label on every image under ``folder``: a PNG at least 10 px a
    side, its label file by the /images/ -> /labels/ rule, each line ``cls cx cy w h`` with cls
    an integer below nc and the box (centre, size) normalised in [0, 1]. Returns the images."""
    from PIL import Image

    images = sorted(p for p in folder.rglob("*.*") if p.suffix[1:].lower() in IMG_FORMATS)
    assert images, f"{folder}: no images"
    for image in images:
        with Image.open(image) as im:
            im.verify()
            assert im.format.lower() in IMG_FORMATS and min(im.size) > 9
        label = ultralytics_label_path(image)
        assert label.is_file(), f"{label}: missing"
        for line in label.read_text().splitlines():
            cls, *box = line.split()
            assert len(box) == 4 and cls.isdigit() and int(cls) < nc, line
            assert all(0 <= float(v) <= 1 for v in box), line
    return len(images)


@pytest.fixture
def yolo_all(data, tmp_path) -> Path:
    """A yolo export of every split (train: 2 shards; valid, test: 1 shard each)."""
    added = add_other_splits(data)
    assert run_export("yolo", "all", data / "synth", tmp_path / "y") == N_IMAGES + added
    return tmp_path / "y"


def test_yolo_all_is_one_dataset_ultralytics_accepts(data, yolo_all, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # split paths resolve against the YAML, not the working folder
    doc = yaml.safe_load((yolo_all / "data.yaml").read_text())
    assert doc == {"train": "images/train", "val": "images/val", "test": "images/test",
                   "nc": 10, "names": dict(enumerate(DISPLAY_NAMES))}
    folders = check_ultralytics_yaml(yolo_all / "data.yaml")
    counts = {k: check_ultralytics_split(f, doc["nc"]) for k, f in folders.items()}
    assert counts == {"train": N_IMAGES, "val": PER_SHARD, "test": PER_SHARD}
    for key, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        assert all(p.name.startswith(f"{split}-") for p in folders[key].iterdir())
    assert sorted(p.name for p in yolo_all.iterdir()) == [MARKER, "data.yaml", "images",
                                                          "labels"]
    want = expected_objects(data, ("train", "valid", "test"))
    pd.testing.assert_frame_equal(READERS["yolo"](yolo_all), want)


def test_yolo_all_passes_ultralytics_check_det_dataset(yolo_all, tmp_path, monkeypatch):
    utils = pytest.importorskip(
        "ultralytics.data.utils",
        reason="ultralytics is not installed (it pulls torch); the re-implemented checks ran")
    monkeypatch.chdir(tmp_path)
    got = utils.check_det_dataset(str(yolo_all / "data.yaml"), autodownload=False)
    for key in ("train", "val", "test"):
        assert Path(got[key]) == (yolo_all / "images" / key).resolve()
    assert got["nc"] == 10 and list(got["names"].values()) == list(DISPLAY_NAMES)


def test_the_ultralytics_checks_catch_a_broken_export(yolo_all, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    label = next((yolo_all / "labels" / "val").glob("*.txt"))
    label.write_text("10 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AssertionError, match="10 0.5"):
        check_ultralytics_split(yolo_all / "images" / "val", 10)
    label.unlink()
    with pytest.raises(AssertionError, match="missing"):
        check_ultralytics_split(yolo_all / "images" / "val", 10)
    yaml_path = yolo_all / "data.yaml"
    yaml_path.write_text("path: .\n" + yaml_path.read_text())  # . is the working folder
    with pytest.raises(AssertionError):
        check_ultralytics_yaml(yaml_path)


def test_all_is_yolo_only_and_needs_every_split(data, tmp_path):
    with pytest.raises(UserError, match="only --format yolo writes every split") as err:
        run_export("coco", "all", data / "synth", tmp_path / "c")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no shards of split 'valid'") as err:
        run_export("yolo", "all", data / "synth", tmp_path / "y")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c").exists() and not (tmp_path / "y").exists()


COCO_SCHEMA = {
    "type": "object",
    "required": ["info", "licenses", "images", "annotations", "categories"],
    "properties": {
        "info": {"type": "object", "required": ["description", "version", "contributor", "url"],
                 "properties": {"year": {"type": "integer"}, "version": {"type": "string"},
                                "description": {"type": "string"},
                                "contributor": {"type": "string"}, "url": {"type": "string"},
                                "date_created": {"type": "string"}}},
        "licenses": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "name", "url"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                           "url": {"type": "string"}}}},
        "images": {"type": "array", "items": {
            "type": "object", "required": ["id", "width", "height", "file_name", "license"],
            "properties": {"id": {"type": "integer"}, "width": {"type": "integer"},
                           "height": {"type": "integer"}, "file_name": {"type": "string"},
                           "license": {"type": "integer"}}}},
        "annotations": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "image_id", "category_id", "bbox", "area", "iscrowd"],
            "properties": {"id": {"type": "integer"}, "image_id": {"type": "integer"},
                           "category_id": {"type": "integer"},
                           "bbox": {"type": "array", "items": {"type": "number"},
                                    "minItems": 4, "maxItems": 4},
                           "area": {"type": "number"}, "iscrowd": {"enum": [0, 1]}}}},
        "categories": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "supercategory"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                           "supercategory": {"type": "string"}}}},
    },
}
"""COCO's object-detection data format as documented at cocodataset.org/#format-data (info,
license, image, annotation, category); bbox [x, y, width, height] from the top-left. The
optional fields we do not write (info year and date_created, image flickr_url, coco_url and
date_captured, annotation segmentation) are allowed, not required."""


def test_coco_matches_the_documented_format_and_evaluates(data, tmp_path, capsys):
    import jsonschema
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    run_export("coco", SPLIT, data / "synth", tmp_path / "c")
    path = tmp_path / "c" / "annotations.json"
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, COCO_SCHEMA)
    assert doc["info"]["description"] == "bloodcell synthetic train split"
    assert doc["info"]["version"] == __import__("bloodcell").__version__
    licences = {lic["id"] for lic in doc["licenses"]}
    assert all(im["license"] in licences for im in doc["images"])
    coco = COCO(str(path))
    coco.info()  # prints info's keys; fails where the block is missing
    assert "version: " in capsys.readouterr().out
    for a in coco.loadAnns(coco.getAnnIds()):
        img = coco.imgs[a["image_id"]]  # KeyError if the image is absent
        assert a["category_id"] in coco.cats
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and a["area"] == w * h
        assert x + w <= img["width"] and y + h <= img["height"]
    dets = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0}
            for a in coco.loadAnns(coco.getAnnIds())]
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # the boxes read back as they were written
    run_export("coco", SPLIT, data / "synth", tmp_path / "c2")
    assert (tmp_path / "c2" / "annotations.json").read_bytes() == path.read_bytes()
