"""The annotation readers and the extract-voc / extract-iml / extract-wbcseg stages.

Part 1 uses tiny hand-made databases in tmp_path; part 2 the real data in ../shared/data
(skipped where it is absent).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import read_pack
from bloodcell.sources.annotations import (
    check_labels,
    read_annotations,
    read_coco,
    read_iml,
    read_name_list,
    read_voc,
)
from conftest import run_cli, write

BG = (215, 225, 235)  # light smear background, BGR
PINK = (150, 100, 190)
PURPLE = (150, 60, 120)

# ----------------------------------------------------------------------------- fixtures

VOC_CELLS = [  # (name, centre x, centre y, radius)
    ("RBC", 100, 100, 30),
    ("RBC", 200, 100, 30),
    ("Platelets", 300, 100, 9),
    ("WBC", 150, 220, 45),
]


def voc_object(name: str, x0: int, y0: int, x1: int, y1: int) -> str:
    """A VOC <object> with 1-based inclusive corners."""
    return (f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def voc_xml(filename: str, objects: list[str], size: tuple[int, int] = (400, 300)) -> str:
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{''.join(objects)}</annotation>")


def cell_objects(cells: list[tuple[str, int, int, int]]) -> list[str]:
    """VOC objects boxing each disk exactly (pixel columns cx-r .. cx+r, 1-based)."""
    return [voc_object(n, cx - r + 1, cy - r + 1, cx + r + 1, cy + r + 1) for n, cx, cy, r in cells]


def make_voc(root: Path, stems: tuple[str, ...] = ("img_1", "img_2"),
             train: tuple[str, ...] = ("img_1", "img_2")) -> Path:
    """ROOT/BCCD/{JPEGImages,Annotations,ImageSets/Main} with disks for VOC_CELLS."""
    base = root / "BCCD"
    for stem in stems:
        img = np.full((300, 400, 3), BG, np.uint8)
        for name, cx, cy, r in VOC_CELLS:
            cv2.circle(img, (cx, cy), r, PURPLE if name == "WBC" else PINK, -1)
        write(base / "JPEGImages" / f"{stem}.png", img)
        xml = base / "Annotations" / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(voc_xml(f"{stem}.png", cell_objects(VOC_CELLS)))
    sets = base / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    return root


def add_object(root: Path, stem: str, obj: str) -> Path:
    """Append one <object> to BCCD/Annotations/<stem>.xml."""
    xml = root / "BCCD" / "Annotations" / f"{stem}.xml"
    xml.write_text(xml.read_text().replace("</annotation>", obj + "</annotation>"))
    return xml


IML_CELLS = [  # (type, centre x, centre y, radius)
    ("red blood cell", 100, 100, 30),
    ("red blood cell", 200, 100, 30),
    ("ring", 300, 100, 30),
    ("gametocyte", 100, 220, 32),
    ("difficult", 220, 220, 30),
]


def make_iml(root: Path, names: tuple[str, ...] = ("PA1.JPG", "PA2.JPG")) -> Path:
    """ROOT/IML_Malaria/*.JPG with disks and ROOT/annotations.json (string values), which
    also annotates an image that is not there (as the real file does)."""
    entries = []
    for name in names:
        img = np.full((300, 400, 3), BG, np.uint8)
        objects = []
        for kind, cx, cy, r in IML_CELLS:
            cv2.circle(img, (cx, cy), r, PINK, -1)
            objects.append({"type": kind, "bbox": {"x": str(cx - r), "y": str(cy - r),
                                                   "h": str(2 * r + 1), "w": str(2 * r + 1)}})
        write(root / "IML_Malaria" / name, img)
        entries.append({"image_name": name, "objects": objects})
    entries.append({"image_name": "ABSENT.JPG", "objects": []})
    (root / "annotations.json").write_text(json.dumps(entries))
    return root


def make_wbcseg(root: Path) -> Path:
    """ROOT/Dataset 1 (120x120, r 40) and Dataset 2 (300x300, r 80) with masks and CSVs."""
    for d, size, r, ids in ((1, 120, 40, (1, 2, 3)), (2, 300, 80, (1, 2))):
        for n in ids:
            img = np.full((size, size, 3), BG, np.uint8)
            c = size // 2
            cv2.circle(img, (c, c), r, PURPLE, -1)
            mask = np.zeros((size, size), np.uint8)
            cv2.circle(mask, (c, c), r, 128, -1)
            cv2.circle(mask, (c, c), r // 2, 255, -1)
            write(root / f"Dataset {d}" / f"{n:03d}.bmp", img)
            write(root / f"Dataset {d}" / f"{n:03d}.png", mask)
    # Dataset 2's real header says "class"; image 003 of Dataset 1 has no label
    (root / "Class Labels of Dataset 1.csv").write_text("image ID,class label\n1,1\n2,5\n")
    (root / "Class Labels of Dataset 2.csv").write_text("image ID,class\r\n1,2\r\n2,3\r\n")
    return root


def qc(outdir: Path, name: str) -> list[dict]:
    with open(outdir / name, newline="") as f:
        return list(csv.DictReader(f))


def one_line_exit_2(code: int, err: str, out: Path) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# ----------------------------------------------------------------------------- VOC reader

def test_voc_reader_converts_1_based_corners_to_top_left_boxes(tmp_path):
    root = make_voc(tmp_path / "voc")
    base = root / "BCCD"
    add_object(root, "img_1", voc_object("RBC", 11, 21, 70, 90))
    ann = read_voc(base / "JPEGImages", base / "Annotations", None)
    assert list(ann.images["image"]) == ["img_1.png", "img_2.png"]
    assert ann.images["width"].tolist() == [400, 400] and ann.images["height"].tolist() == [300,
                                                                                            300]
    last = ann.objects[ann.objects["image"] == "img_1.png"].iloc[-1]
    assert (last["x"], last["y"], last["w"], last["h"]) == (10, 20, 60, 70)
    assert last["obj"] == len(VOC_CELLS) and last["label"] == "RBC"
    first = ann.objects.iloc[0]  # disk centre 100, radius 30: columns 70..130
    assert (first["x"], first["w"]) == (70, 61)
    assert ann.skipped == []


def test_voc_reader_clips_small_overshoot_and_refuses_far_outside_boxes(tmp_path):
    root = make_voc(tmp_path / "voc")
    base = root / "BCCD"
    add_object(root, "img_1", voc_object("RBC", 371, 281, 405, 305))  # 5 px past both edges
    ann = read_voc(base / "JPEGImages", base / "Annotations", ["img_1"])
    last = ann.objects.iloc[-1]
    assert (last["x"], last["y"], last["x"] + last["w"], last["y"] + last["h"]) == (370, 280,
                                                                                    400, 300)
    xml = add_object(root, "img_2", voc_object("RBC", 371, 200, 460, 250))  # 60 px past
    with pytest.raises(UserError, match="lies outside") as exc:
        read_voc(base / "JPEGImages", base / "Annotations", None)
    assert str(xml) in str(exc.value) and "object #4" in str(exc.value)


def test_voc_reader_name_list_and_missing_listed_image(tmp_path):
    root = make_voc(tmp_path / "voc")
    base = root / "BCCD"
    names = read_name_list(base / "ImageSets" / "Main" / "train.txt")
    assert names == ["img_1", "img_2"]
    ann = read_voc(base / "JPEGImages", base / "Annotations", ["img_2.png"])
    assert list(ann.images["image"]) == ["img_2.png"]
    (base / "ImageSets" / "Main" / "train.txt").write_text("img_1\n\nimg_9\n")
    with pytest.raises(UserError, match="img_9") as exc:
        read_voc(base / "JPEGImages", base / "Annotations",
                 read_name_list(base / "ImageSets" / "Main" / "train.txt"))
    assert "train.txt" in str(exc.value)


# ----------------------------------------------------------------------------- extract-voc

def test_extract_voc_cuts_each_object_with_the_class_map(tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    out = tmp_path / "out"
    code, err = run_cli(["extract-voc", root, out, "--image-set", "train", "--scale", "0.5"],
                        capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas()
    assert Counter(t["class_name"]) == {"_": 4, "Thrombocytes": 2, "WBC": 2}
    assert set(t.loc[t["class_name"] == "WBC", "class_idx"]) == {-1}
    assert "voc/BCCD/JPEGImages/img_1.png@70,70,61,61" in set(t["sample_id"])
    rbc = t[t["class_name"] == "_"]
    assert ((rbc["width"] - 31).abs() <= 3).all()  # 61 px disk + 2x2 pad, halved
    counts = {r["class_name"]: int(r["samples"]) for r in qc(out, "qc_counts.csv")}
    assert counts == {"Thrombocytes": 2, "_": 4, "WBC": 2}
    # ROOT may also be the VOC set folder itself: same samples
    code, err = run_cli(["extract-voc", root / "BCCD", tmp_path / "out2", "--image-set",
                         "train", "--scale", "0.5"], capsys)
    assert code == 0, err
    t2 = read_pack(tmp_path / "out2" / "samples.parquet").to_pandas()
    assert list(t2["sample_id"]) == list(t["sample_id"])


def test_extract_voc_zero_size_box_and_failed_mask_become_qc_entries(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", train=("img_1",))
    add_object(root, "img_1", voc_object("RBC", 50, 250, 50, 250))  # a click, no area
    add_object(root, "img_1", voc_object("Platelets", 351, 201, 390, 240))  # empty background
    out = tmp_path / "out"
    code, err = run_cli(["extract-voc", root, out, "--image-set", "train", "--scale", "1"],
                        capsys)
    assert code == 0, err
    skipped = {r["path"]: r for r in qc(out, "qc_skipped.csv")}
    assert set(skipped) == {"BCCD/JPEGImages/img_1.png#4", "BCCD/JPEGImages/img_1.png#5"}
    assert "zero-size" in skipped["BCCD/JPEGImages/img_1.png#4"]["reason"]
    assert skipped["BCCD/JPEGImages/img_1.png#4"]["class_name"] == "_"
    assert "no cell" in skipped["BCCD/JPEGImages/img_1.png#5"]["reason"]
    counts = {r["class_name"]: int(r["skipped"]) for r in qc(out, "qc_counts.csv")}
    assert counts == {"Thrombocytes": 1, "_": 1, "WBC": 0}


@pytest.mark.parametrize("case, expect", [
    ("malformed", ["img_1.xml", "malformed XML"]),
    ("unknown_class", ["img_1.xml", "object #4", "'Neutrophil'"]),
    ("far_outside", ["img_1.xml", "object #4", "lies outside"]),
    ("missing_image", ["train.txt", "img_9"]),
    ("missing_set", ["test.txt", "train"]),
    ("missing_root", ["database folder not found"]),
])
def test_extract_voc_bad_input_exits_2_with_one_line(tmp_path, capsys, case, expect):
    root = make_voc(tmp_path / "voc")
    xml = root / "BCCD" / "Annotations" / "img_1.xml"
    image_set = "train"
    if case == "malformed":
        xml.write_text(xml.read_text()[:-20])
    elif case == "unknown_class":
        add_object(root, "img_1", voc_object("Neutrophil", 10, 10, 40, 40))
    elif case == "far_outside":
        add_object(root, "img_1", voc_object("RBC", 10, 10, 40, 400))
    elif case == "missing_image":
        (root / "BCCD" / "ImageSets" / "Main" / "train.txt").write_text("img_1\nimg_9\n")
    elif case == "missing_set":
        image_set = "test"
    elif case == "missing_root":
        root = tmp_path / "nope"
    out = tmp_path / "out"
    code, err = run_cli(["extract-voc", root, out, "--image-set", image_set, "--scale", "1"],
                        capsys)
    one_line_exit_2(code, err, out)
    for text in expect:
        assert text in err, err


# ----------------------------------------------------------------------------- IML

def test_iml_reader_takes_string_values_and_drops_difficult(tmp_path):
    root = make_iml(tmp_path / "iml")
    ann = read_iml(root / "IML_Malaria", root / "annotations.json", None)
    assert list(ann.images["image"]) == ["PA1.JPG", "PA2.JPG"]  # ABSENT.JPG is not there
    assert ann.images[["width", "height"]].values.tolist() == [[400, 300], [400, 300]]
    first = ann.objects.iloc[0]
    assert (first["label"], first["x"], first["y"], first["w"], first["h"]) == (
        "red blood cell", 70.0, 70.0, 61.0, 61.0)
    assert ann.skipped == [("PA1.JPG#4", "type 'difficult' (annotator unsure), ignored"),
                           ("PA2.JPG#4", "type 'difficult' (annotator unsure), ignored")]
    with pytest.raises(UserError, match="'difficult'"):
        check_labels(ann, {"red blood cell", "ring", "gametocyte"}, "annotations.json")
    check_labels(ann, {"red blood cell", "ring", "gametocyte", "difficult"}, "annotations.json")
    with pytest.raises(UserError, match="ABSENT.JPG"):
        read_iml(root / "IML_Malaria", root / "annotations.json", ["ABSENT"])


def test_iml_reader_non_numeric_value_names_image_and_object(tmp_path):
    root = make_iml(tmp_path / "iml")
    data = json.loads((root / "annotations.json").read_text())
    data[1]["objects"][2]["bbox"]["w"] = "wide"
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="PA2.JPG object #2.*'wide' is not a number"):
        read_iml(root / "IML_Malaria", root / "annotations.json", None)


def test_extract_iml_parasite_boxes_are_infected_cells(tmp_path, capsys):
    root = make_iml(tmp_path / "iml")
    (tmp_path / "train.txt").write_text("PA2.JPG\n")
    out = tmp_path / "out"
    code, err = run_cli(["extract-iml", root, out, "--images-list", tmp_path / "train.txt",
                         "--scale", "0.5"], capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas()
    assert Counter(t["class_name"]) == {"_": 2, "Infected": 2}
    assert set(t["raw_path"]) == {"IML_Malaria/PA2.JPG"}
    assert "iml/IML_Malaria/PA2.JPG@270,70,61,61" in set(t["sample_id"])
    assert [r["path"] for r in qc(out, "qc_skipped.csv")] == ["IML_Malaria/PA2.JPG#4"]


@pytest.mark.parametrize("case, expect", [
    ("unknown_type", ["annotations.json", "PA1.JPG object #1", "'platelet'"]),
    ("malformed", ["annotations.json", "malformed JSON"]),
    ("missing_listed", ["list.txt", "PA7.JPG"]),
    ("missing_field", ["annotations.json", "object #0", "'bbox'"]),
])
def test_extract_iml_bad_input_exits_2_with_one_line(tmp_path, capsys, case, expect):
    root = make_iml(tmp_path / "iml")
    listing = tmp_path / "list.txt"
    listing.write_text("PA1.JPG\nPA2.JPG\n")
    js = root / "annotations.json"
    data = json.loads(js.read_text())
    if case == "unknown_type":
        data[0]["objects"][1]["type"] = "platelet"
        js.write_text(json.dumps(data))
    elif case == "malformed":
        js.write_text(js.read_text()[:-3])
    elif case == "missing_listed":
        listing.write_text("PA1.JPG\nPA7.JPG\n")
    elif case == "missing_field":
        del data[1]["objects"][0]["bbox"]
        js.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, err = run_cli(["extract-iml", root, out, "--images-list", listing, "--scale", "1"],
                        capsys)
    one_line_exit_2(code, err, out)
    for text in expect:
        assert text in err, err


# ----------------------------------------------------------------------------- COCO

def test_coco_reader_basic(tmp_path):
    images = tmp_path / "images"
    write(images / "a.png", np.full((50, 60, 3), BG, np.uint8))
    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 60, "height": 50},
                       {"id": 8, "file_name": "gone.png", "width": 60, "height": 50}],
            "categories": [{"id": 1, "name": "RBC"}, {"id": 2, "name": "WBC"}],
            "annotations": [{"image_id": 7, "category_id": 2, "bbox": [1.5, 2, 10, 12]},
                            {"image_id": 7, "category_id": 1, "bbox": [55, 40, 8, 12]},
                            {"image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 4]},
                            {"image_id": 8, "category_id": 1, "bbox": [5, 5, 4, 4]}]}
    js = tmp_path / "coco.json"
    js.write_text(json.dumps(coco))
    ann = read_annotations("coco", images, js, None)
    assert ann.images[["image", "width", "height"]].values.tolist() == [["a.png", 60, 50]]
    assert ann.objects[["obj", "label", "x", "y", "w", "h"]].values.tolist() == [
        [0, "WBC", 1.5, 2.0, 10.0, 12.0], [1, "RBC", 55.0, 40.0, 5.0, 10.0]]
    assert [w for w, _ in ann.skipped] == ["a.png#2"]
    with pytest.raises(UserError, match="gone.png"):
        read_coco(images, js, ["gone"])
    with pytest.raises(UserError, match="unknown"):
        read_annotations("yolo", images, js, None)


# ----------------------------------------------------------------------------- wbcseg

def test_extract_wbcseg_both_datasets_each_at_its_scale(tmp_path, capsys):
    root = make_wbcseg(tmp_path / "wbc")
    out = tmp_path / "out"
    code, err = run_cli(["extract-wbcseg", root, out, "--scale-1", "1.0", "--scale-2", "0.5"],
                        capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas().set_index("sample_id")
    assert dict(t["class_name"]) == {
        "wbcseg/Dataset 1/001.bmp": "Neutrophil", "wbcseg/Dataset 1/002.bmp": "Basophil",
        "wbcseg/Dataset 2/001.bmp": "Lymphocytes", "wbcseg/Dataset 2/002.bmp": "Monocytes"}
    # disks 81 and 161 px across (+2x2 pad) -> 85 and 82 px at the 40x scale
    assert t["width"].tolist() == [85, 85, 82, 82]
    skipped = qc(out, "qc_skipped.csv")
    assert [r["path"] for r in skipped] == ["Dataset 1/003.bmp"]
    assert "not in Class Labels of Dataset 1.csv" in skipped[0]["reason"]


def test_extract_wbcseg_one_dataset_and_missing_scale(tmp_path, capsys):
    root = make_wbcseg(tmp_path / "wbc")
    code, err = run_cli(["extract-wbcseg", root, tmp_path / "out", "--dataset", "2",
                         "--scale-2", "0.5"], capsys)
    assert code == 0, err
    assert read_pack(tmp_path / "out" / "samples.parquet").num_rows == 2
    out = tmp_path / "out2"
    code, err = run_cli(["extract-wbcseg", root, out, "--scale-1", "1"], capsys)
    one_line_exit_2(code, err, out)
    assert "--scale-2" in err


# ----------------------------------------------------------------------------- real data

BCCD_MAP = {"RBC": "_", "Platelets": "Thrombocytes", "WBC": "WBC"}


def test_real_bccd_train_set(shared_data, tmp_path, capsys):
    root = shared_data / "bccd"
    base = root / "BCCD"
    names = read_name_list(base / "ImageSets" / "Main" / "train.txt")
    ann = read_voc(base / "JPEGImages", base / "Annotations", names)
    want = Counter(BCCD_MAP[label] for label in ann.objects["label"])
    out = tmp_path / "out"
    code, err = run_cli(["extract-voc", root, out, "--image-set", "train", "--scale", "0.37"],
                        capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas()
    got = Counter(t["class_name"])
    assert len(ann.images) == 205
    for cls, n in want.items():
        assert n * 0.98 <= got[cls] <= n, (cls, got[cls], n)
    rbc = t[t["class_name"] == "_"]
    assert 30 <= np.median(np.sqrt(rbc["width"] * rbc["height"])) <= 40


def test_real_iml_train_list(shared_data, tmp_path, capsys):
    root = shared_data / "iml-malaria"
    listing = Path(__file__).resolve().parents[1] / "config" / "lists" / "iml-train.txt"
    out = tmp_path / "out"
    code, err = run_cli(["extract-iml", root, out, "--images-list", listing, "--scale", "0.47"],
                        capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas()
    got = Counter(t["class_name"])
    assert got["Infected"] >= 60 and got["_"] >= 3000
    assert len(set(t["raw_path"])) == 28
    rbc = t[t["class_name"] == "_"]
    assert 30 <= np.median(np.sqrt(rbc["width"] * rbc["height"])) <= 40


def test_real_iml_lists_split_the_present_images(shared_data):
    lists = Path(__file__).resolve().parents[1] / "config" / "lists"
    train = read_name_list(lists / "iml-train.txt")
    held = read_name_list(lists / "iml-eval.txt")
    present = {p.name for p in (shared_data / "iml-malaria" / "IML_Malaria").glob("*.JPG")}
    assert not set(train) & set(held) and set(train) | set(held) == present
    assert len(held) == 12


def test_real_wbcseg_both_datasets(shared_data, tmp_path, capsys):
    root = shared_data / "wbc-seg-zheng2018"
    want: Counter = Counter()
    names = {1: "Neutrophil", 2: "Lymphocytes", 3: "Monocytes", 4: "Eosinophil", 5: "Basophil"}
    for d in (1, 2):
        with open(root / f"Class Labels of Dataset {d}.csv", newline="") as f:
            labels = {int(r[0]): names[int(r[1])] for r in list(csv.reader(f))[1:]}
        want.update(labels[int(p.stem)] for p in (root / f"Dataset {d}").glob("*.bmp"))
    out = tmp_path / "out"
    code, err = run_cli(["extract-wbcseg", root, out, "--scale-1", "1.0", "--scale-2", "0.49"],
                        capsys)
    assert code == 0, err
    t = read_pack(out / "samples.parquet").to_pandas()
    assert Counter(t["class_name"]) == want and sum(want.values()) == 124
    size = np.sqrt(t["width"] * t["height"])
    by_set = size.groupby(t["raw_path"].str.split("/").str[0]).median()
    for median in by_set:  # WBCs 1.5-3x a 35 px RBC, both datasets alike after scaling
        assert 55 <= median <= 105
    assert abs(by_set["Dataset 1"] - by_set["Dataset 2"]) <= 10
