"""`bloodcell evaluate-images`: class maps, scoring on hand-made boxes, the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from bloodcell.common.classes import CLASS_INDEX, CLASS_NAMES
from bloodcell.common.errors import UserError
from bloodcell.evaluate import on_annotated_images as ei
from bloodcell.sources import class_map as cm
from conftest import run_cli

RBC_MODEL = ["Infected", "_"]


def good_doc() -> dict:
    """A valid class map document (the bundled BCCD map)."""
    return yaml.safe_load((Path(cm.__file__).parent / "class_maps" / "bccd.yaml").read_text())


# --------------------------------------------------------------------------- class maps


def test_bundled_maps_load_and_map_every_model_class() -> None:
    assert cm.bundled_names() == ["bccd", "iml"]
    bccd, iml = cm.load_class_map("bccd"), cm.load_class_map("iml")
    assert bccd.classes == ("WBC", "Platelets", "RBC")
    assert set(bccd.model) == set(CLASS_NAMES) == set(iml.model)
    assert [bccd.model[c] for c in CLASS_NAMES] == ["WBC"] * 6 + ["Platelets"] * 2 + ["RBC"] * 2
    assert bccd.dataset == {"RBC": "RBC", "WBC": "WBC", "Platelets": "Platelets"}
    assert iml.classes == ("infected", "healthy")
    assert {c: v for c, v in iml.model.items() if v} == {"Infected": "infected", "_": "healthy"}
    assert iml.dataset["red blood cell"] == "healthy" and iml.dataset["difficult"] is None
    assert {iml.dataset[s] for s in ("ring", "trophozoite", "schizont", "gametocyte")} == {
        "infected"}


def test_class_map_from_a_yaml_path(tmp_path: Path) -> None:
    doc = good_doc()
    doc["dataset"]["rbc"] = "RBC"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(doc))
    cmap = cm.load_class_map(str(path))
    assert cmap.name == "mine" and cmap.dataset["rbc"] == "RBC"


def _broken(change) -> dict:
    doc = good_doc()
    change(doc)
    return doc


@pytest.mark.parametrize("doc, words", [
    (_broken(lambda d: d["model"].pop("Clumps")), "'Clumps'"),
    (_broken(lambda d: d["model"].update(Platelet="RBC")), "'Platelet'"),
    (_broken(lambda d: d["model"].update(Clumps="Clump")), "'Clump'"),
    (_broken(lambda d: d["dataset"].update(RBC="red")), "'red'"),
    (_broken(lambda d: d.update(classes=["WBC", "WBC", "RBC"])), "twice"),
    (_broken(lambda d: d.update(classes=[])), "classes"),
    (_broken(lambda d: d.pop("dataset")), "dataset"),
    (_broken(lambda d: d.update(classes=["WBC", "Platelets", "RBC", "Other"])), "'Other'"),
    (_broken(lambda d: d.update(extra=1)), "'extra'"),
    (["a", "list"], "mapping"),
])
def test_bad_class_maps_are_one_line_user_errors(doc, words: str) -> None:
    with pytest.raises(UserError) as err:
        cm.parse_class_map(doc, "bad", "bad.yaml")
    assert words in str(err.value) and "bad.yaml" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_name_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="bccd, iml"):
        cm.load_class_map("nope")
    with pytest.raises(UserError, match="no such file"):
        cm.load_class_map(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [a\nmodel: {")
    with pytest.raises(UserError, match="not valid YAML"):
        cm.load_class_map(str(bad))


def test_map_detections_and_objects() -> None:
    iml = cm.load_class_map("iml")
    det = pd.DataFrame({"class_idx": [0, 8, 9, 6], "score": [0.9, 0.8, 0.7, 0.6],
                        "x": [0.0, 10, 20, 30], "y": 0.0, "w": 5.0, "h": 5.0})
    mapped = cm.map_detections(det, iml)
    assert mapped["class_idx"].tolist() == [0, 1]  # infected, healthy; WBC and platelet gone
    assert mapped["x"].tolist() == [10, 20]
    bccd = cm.map_detections(det, cm.load_class_map("bccd"))
    assert bccd["class_idx"].tolist() == [0, 2, 2, 1]
    objects = pd.DataFrame({"image": ["a", "a", "b"], "obj": [0, 1, 0],
                            "label": ["ring", "difficult", "red blood cell"],
                            "x": [1.0, 2, 3], "y": 1.0, "w": 4.0, "h": 5.0})
    scored, ignored = cm.map_objects(objects, iml)
    assert scored[["image_id", "class_idx"]].values.tolist() == [["a", 0], ["b", 1]]
    assert ignored[["image_id", "x"]].values.tolist() == [["a", 2.0]]


# --------------------------------------------------------------------------- scoring


def boxes(rows: list[tuple], score: bool = True) -> pd.DataFrame:
    cols = ["image_id", "class_idx", *(["score"] if score else []), "x", "y", "w", "h"]
    return pd.DataFrame(rows, columns=cols)


def test_class_wise_nms_after_mapping_keeps_one_box_per_cell() -> None:
    bccd = cm.load_class_map("bccd")
    raw = pd.DataFrame({"class_idx": [CLASS_INDEX["Thrombocytes"], CLASS_INDEX["Clumps"],
                                      CLASS_INDEX["_"]],
                        "score": [0.6, 0.9, 0.8], "x": [10.0, 11, 10], "y": 10.0, "w": 20.0,
                        "h": 20.0})
    out = ei.prepare_detections(raw, bccd, boxes([], score=False), merge_iou=0.3)
    assert sorted(zip(out["class_idx"], out["score"])) == [(1, 0.9), (2, 0.8)]


def test_detections_on_ignored_objects_are_not_scored() -> None:
    iml = cm.load_class_map("iml")
    raw = pd.DataFrame({"class_idx": [8, 9], "score": [0.9, 0.8], "x": [0.0, 100],
                        "y": 0.0, "w": 30.0, "h": 30.0})
    ignored = boxes([("a", -1, 2.0, 1.0, 30.0, 30.0)], score=False)
    out = ei.prepare_detections(raw, iml, ignored, merge_iou=0.3)
    assert out["x"].tolist() == [100.0]


def malaria_case() -> tuple[pd.DataFrame, list[str], dict]:
    """Two images: a has 2 infected + 2 healthy cells, b has 4 healthy cells (class 0 =
    infected, 1 = healthy, as in the iml map)."""
    gt = boxes([("a", 0, 0, 0, 30, 30), ("a", 0, 50, 0, 30, 30), ("a", 1, 100, 0, 30, 30),
                ("a", 1, 150, 0, 30, 30)]
               + [("b", 1, 50 * k, 60, 30, 30) for k in range(4)], score=False)
    return gt, ["a", "b"], {"a": (300, 200), "b": (300, 200)}


def perfect(gt: pd.DataFrame) -> pd.DataFrame:
    return gt.assign(score=0.9)[["image_id", "class_idx", "score", "x", "y", "w", "h"]]


def test_a_perfect_detector_scores_one() -> None:
    iml = cm.load_class_map("iml")
    gt, ids, sizes = malaria_case()
    result = ei.score(gt, perfect(gt), ids, sizes, iml, ei.ScoreConfig())
    assert result["coco"]["map50"] == pytest.approx(1.0)
    assert result["coco"]["map50_95"] == pytest.approx(1.0)
    assert result["coco"]["per_class_ap50"] == pytest.approx({"infected": 1.0, "healthy": 1.0})
    ivh = result["infected_vs_healthy"]
    assert ivh["cell"]["f1"] == 1.0 and ivh["cell"]["tp"] == 2 and ivh["cell"]["tn"] == 6
    assert ivh["parasitemia"] == {"mean_abs_error_pp": 0.0, "pooled_abs_error_pp": 0.0,
                                  "images": 2}
    for c in result["counts"].values():
        assert c["mae_per_image"] == 0.0 and c["mean_signed_error_per_image"] == 0.0
    assert result["detections"] == 8


def test_calling_every_infected_cell_healthy_gives_f1_zero() -> None:
    iml = cm.load_class_map("iml")
    gt, ids, sizes = malaria_case()
    result = ei.score(gt, perfect(gt).assign(class_idx=1), ids, sizes, iml, ei.ScoreConfig())
    ivh = result["infected_vs_healthy"]
    assert ivh["cell"]["f1"] == 0.0 and ivh["cell"]["fn"] == 2
    assert result["coco"]["per_class_ap50"]["infected"] == 0.0
    # image a: true 50 %, predicted 0 %; image b: 0 and 0; pooled: true 25 %, predicted 0 %
    assert ivh["parasitemia"]["mean_abs_error_pp"] == pytest.approx(25.0)
    assert ivh["parasitemia"]["pooled_abs_error_pp"] == pytest.approx(25.0)
    counts = result["counts"]
    assert counts["infected"]["mae_per_image"] == 1.0
    assert counts["infected"]["mean_signed_error_per_image"] == -1.0
    assert counts["healthy"]["mean_signed_error_per_image"] == 1.0


def test_operating_point_and_map_thresholds() -> None:
    bccd = cm.load_class_map("bccd")
    gt = boxes([("a", 2, 0, 0, 30, 30)], score=False)
    det = boxes([("a", 2, 0.1, 0, 0, 30, 30)])
    result = ei.score(gt, det, ["a"], {"a": (100, 100)}, bccd, ei.ScoreConfig(0.2, 0.01))
    ap = result["coco"]["per_class_ap50"]
    assert ap["WBC"] is None and ap["Platelets"] is None and ap["RBC"] == pytest.approx(1.0)
    assert result["detections"] == 0 and result["detections_for_map"] == 1
    assert result["counts"]["RBC"]["pred_total"] == 0
    assert result["infected_vs_healthy"] is None


# --------------------------------------------------------------------------- end to end


def smear(seed: int, size: tuple[int, int] = (300, 260)) -> tuple[np.ndarray, list[tuple]]:
    """A BGR smear with red-cell discs (~34 px) and one white cell; its boxes (label, x, y,
    w, h px, top-left)."""
    rng = np.random.default_rng(seed)
    img = np.full((size[1], size[0], 3), (215, 220, 235), np.uint8)
    objects = []
    for k in range(4):
        cx, cy = 30 + 60 * k + int(rng.integers(0, 10)), 40
        cv2.circle(img, (cx, cy), 17, (150, 120, 200), -1)
        objects.append(("RBC", cx - 17, cy - 17, 35, 35))
    cv2.circle(img, (150, 170), 30, (140, 60, 110), -1)
    objects.append(("WBC", 120, 140, 61, 61))
    return img, objects


def write_voc(root: Path, n: int = 2, extra_label: str | None = None) -> tuple[Path, Path]:
    images, labels = root / "JPEGImages", root / "Annotations"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(n):
        img, objects = smear(i)
        if extra_label and i == n - 1:
            objects.append((extra_label, 200, 200, 20, 20))
        name = f"img_{i}"
        assert cv2.imwrite(str(images / f"{name}.png"), img)
        objs = "".join(
            f"<object><name>{lab}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin>"
            f"<ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
            for lab, x, y, w, h in objects)
        (labels / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>{img.shape[1]}</width>"
            f"<height>{img.shape[0]}</height><depth>3</depth></size>{objs}</annotation>")
    return images, labels


def write_iml(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True)
    entries = []
    for i in range(2):
        img, objects = smear(10 + i)
        assert cv2.imwrite(str(images / f"P{i}.jpg"), img)
        kinds = ["ring", "red blood cell", "red blood cell", "difficult"]
        entries.append({"image_name": f"P{i}.jpg", "objects": [
            {"type": kinds[k], "bbox": {"x": str(x), "y": str(y), "w": str(w), "h": str(h)}}
            for k, (_, x, y, w, h) in enumerate(objects[:4])]})
    labels = root / "annotations.json"
    labels.write_text(json.dumps(entries))
    return images, labels


def cli(args: list) -> tuple[int, str]:
    """Run the bloodcell CLI in a fresh process (TensorFlow's thread settings can only be made
    before TensorFlow starts, so a command that detects cannot run inside pytest's process);
    return (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "bloodcell", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """A randomly initialised detector saved as .keras (its detections are arbitrary)."""
    from bloodcell.model import network as model
    path = tmp_path_factory.mktemp("model") / "detector.keras"
    model.detector().save(path)
    return path


def test_cli_end_to_end_voc_with_figures(tmp_path: Path, untrained_model: Path) -> None:
    images, labels = write_voc(tmp_path / "voc", n=3)
    listed = tmp_path / "val.txt"
    listed.write_text("img_0\nimg_2\n")
    out, figs = tmp_path / "out" / "metrics.json", tmp_path / "out" / "figures"
    args = ["evaluate-images", images, "--labels", labels, "--format", "voc",
            "--class-map", "bccd", "--images-list", listed, "--model", untrained_model,
            "--rbc-diameter", "34", "--metrics", out, "--figures", figs]
    code, err = cli(args)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert {"format", "class_map", "classes", "images", "objects", "ignored_objects",
            "detections", "detections_for_map", "score_threshold", "map_score_threshold",
            "max_dets", "coco", "counts", "infected_vs_healthy", "per_image",
            "skipped_images", "skipped_objects"} <= set(result)
    assert result["images"] == 2 and result["objects"] == 10
    assert result["classes"] == ["WBC", "Platelets", "RBC"]
    assert set(result["coco"]["per_class_ap50"]) == {"WBC", "Platelets", "RBC"}
    assert set(result["per_image"]) == {"img_0.png", "img_2.png"}
    assert result["per_image"]["img_0.png"]["scale"] == pytest.approx(1.0)
    assert result["per_image"]["img_0.png"]["rbc_diameter_px"] == pytest.approx(34.0)
    assert sorted(p.name for p in figs.iterdir()) == [".bloodcell-output", "img_0.png",
                                                      "img_2.png", "metrics.html"]
    # a later run may replace this figures folder; a foreign one is refused and kept
    ei.check_figures_dir(figs)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not made by `bloodcell evaluate-images`"):
        ei.check_figures_dir(foreign)
    assert (foreign / "keep.txt").is_file()


def test_cli_end_to_end_iml_ignores_difficult(tmp_path: Path, untrained_model: Path) -> None:
    images, labels = write_iml(tmp_path / "iml")
    out = tmp_path / "metrics.json"
    code, err = cli(["evaluate-images", images, "--labels", labels, "--format", "iml",
                         "--class-map", "iml", "--model", untrained_model, "--scale", "1",
                         "--metrics", out])
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["objects"] == 6  # 2 images x (1 ring + 2 healthy); difficult dropped
    assert len(result["skipped_objects"]) == 2
    ivh = result["infected_vs_healthy"]
    assert {"cell", "image", "cells", "spurious", "parasitemia"} <= set(ivh)
    assert result["per_image"]["P0.jpg"]["parasitemia_true_pct"] == pytest.approx(100 / 3)
    assert result["per_image"]["P0.jpg"]["rbc_diameter_px"] is None


def test_cli_bad_class_map_and_unknown_label_exit_2(tmp_path: Path, capsys) -> None:
    images, labels = write_voc(tmp_path / "voc", n=2, extra_label="Sickle")
    base = ["evaluate-images", images, "--labels", labels, "--format", "voc",
            "--model", tmp_path / "absent.keras", "--metrics", tmp_path / "m.json"]
    bad = tmp_path / "bad.yaml"
    doc = good_doc()
    doc["model"].pop("Clumps")
    bad.write_text(yaml.safe_dump(doc))
    code, err = run_cli(base + ["--class-map", bad], capsys)
    assert code == 2 and err.count("\n") == 1 and "'Clumps'" in err and str(bad) in err
    code, err = run_cli(base + ["--class-map", "bccd"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "'Sickle'" in err and "img_1" in err and str(labels) in err
    code, err = run_cli(base + ["--class-map", "nonexistent"], capsys)
    assert code == 2 and "bccd, iml" in err
    assert not (tmp_path / "m.json").exists()


def test_real_annotations_fit_the_bundled_maps(shared_data: Path) -> None:
    """Every label of the real BCCD and IML annotations is known to its bundled map."""
    from bloodcell.sources.annotations import read_annotations, read_name_list

    bccd = shared_data / "bccd" / "BCCD"
    ann = read_annotations("voc", bccd / "JPEGImages", bccd / "Annotations",
                           read_name_list(bccd / "ImageSets" / "Main" / "val.txt"))
    cm.check_dataset_labels(cm.load_class_map("bccd"), ann, "BCCD")
    assert len(ann.images) == 87
    iml = shared_data / "iml-malaria"
    ann = read_annotations("iml", iml / "IML_Malaria", iml / "annotations.json", None)
    cmap = cm.load_class_map("iml")
    cm.check_dataset_labels(cmap, ann, "IML")
    scored, _ = cm.map_objects(ann.objects, cmap)
    assert set(scored["class_idx"]) == {0, 1}
