"""A detect run over a folder: distinct output names, failed rows, per-image outputs, resume.

The runs use the stand-in detector of test_whole_smear (solid-colour rectangles), so no model is
loaded; the command-line behaviour (exit code) is tested in test_train with a trained model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest
from test_whole_smear import fake_detect, scene

from bloodcell.detect.api import Detector
from bloodcell.detect.commands import detect_images
from bloodcell.detect.folder_run import STATE, output_names
from bloodcell.detect.whole_smear import SlideConfig

SETTINGS = {"model_sha256": "0" * 64, "scale": 1.0}
CELLS = [(2, 30, 40, 60, 50), (9, 150, 120, 34, 34), (8, 260, 200, 34, 36)]
DETECTOR = Detector(Path("stand-in.keras"), fake_detect, (), SlideConfig(), 34.0)
"""The Python API's detector around test_whole_smear's stand-in (no model file is read)."""


def smear(path: Path, shift: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = scene(400, 300, [(k, x + shift, y, w, h) for k, x, y, w, h in CELLS])
    assert cv2.imwrite(str(path), img[:, :, ::-1])
    return path


def run(paths: list[Path], out: Path, settings: dict = SETTINGS, **kw) -> list[str]:
    return detect_images(paths, DETECTOR, 1.0, out, settings, **kw)


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("paths", "names"), [
    (["d/a.png", "d/b.png"], ["a", "b"]),
    (["x/a.png", "y/a.png"], ["x/a", "y/a"]),
    (["d/a.png", "d/a.tif", "d/b.jpg"], ["a-png", "a-tif", "b"]),
    (["d/s.png"], ["s"]),
    (["d/a.png", "d/e/a.png"], ["a", "e/a"]),
])
def test_output_names_are_distinct_relative_paths(tmp_path, paths, names):
    assert output_names([tmp_path / p for p in paths]) == names


def test_a_bad_file_is_one_failed_row_and_the_others_are_whole(tmp_path):
    good = [smear(tmp_path / "in" / "s0.png"), smear(tmp_path / "in" / "s2.png", 5)]
    bad = tmp_path / "in" / "s1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    failures = run([good[0], bad, good[1]], out)
    assert len(failures) == 1 and str(bad) in failures[0]
    rows = {r["image_id"]: r for r in summary(out)}
    assert rows["s1"]["status"] == "failed" and "s1.png" in rows["s1"]["reason"]
    assert rows["s1"]["n_healthy_rbc"] == ""
    for name in ("s0", "s2"):
        assert rows[name]["status"] == "ok" and rows[name]["n_neutrophil"] == "1"
        for suffix in (".png", ".geojson", ".cells.csv"):
            assert (out / f"{name}{suffix}").is_file()
    assert not (out / "s1.png").exists()
    coco = json.loads((out / "detections.json").read_text())
    assert sorted(im["bloodcell_id"] for im in coco["images"]) == ["s0", "s2"]


def test_fail_fast_stops_at_the_first_bad_file(tmp_path):
    from bloodcell.common.errors import UserError

    bad = tmp_path / "in" / "a.png"
    bad.parent.mkdir()
    bad.write_bytes(b"")
    with pytest.raises(UserError, match="a.png"):
        run([bad, smear(tmp_path / "in" / "b.png")], tmp_path / "out", fail_fast=True)
    assert not (tmp_path / "out" / "b.png").exists()


def test_cells_csv_has_one_row_per_cell_in_input_pixels(tmp_path):
    out = tmp_path / "out"
    run([smear(tmp_path / "in" / "s.png")], out)
    with open(out / "s.cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cell", "class_name", "class_idx", "score", "x", "y", "w", "h"]
    got = sorted((int(r["class_idx"]), float(r["x"]), float(r["y"]), float(r["w"]),
                  float(r["h"])) for r in rows)
    assert got == sorted((k, x, y, w, h) for k, x, y, w, h in CELLS)
    assert [r["class_name"] for r in rows if r["class_idx"] == "8"] == ["Infected RBC"]


def test_same_stems_in_two_folders_get_two_outputs(tmp_path):
    a, b = smear(tmp_path / "x" / "a.png"), smear(tmp_path / "y" / "a.png", 7)
    out = tmp_path / "out"
    run([a, b], out)
    assert (out / "x" / "a.cells.csv").read_text() != (out / "y" / "a.cells.csv").read_text()
    assert [r["image_id"] for r in summary(out)] == ["x/a", "y/a"]


def test_a_rerun_resumes_and_gives_the_same_bytes(tmp_path):
    paths = [smear(tmp_path / "in" / f"s{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    run(paths, out)
    whole = files(out)
    kept = (out / "s0.png").stat().st_mtime_ns
    for suffix in (".png", ".cells.csv"):  # s2 as a kill leaves it: some outputs, no record
        (out / f"s2{suffix}").unlink()
    (out / STATE / "s2.json").unlink()
    (out / "summary.csv").unlink()
    (out / ".s1.geojson.tmp-x1y2").write_text("half")  # a kill's temporary
    run(paths, out)
    assert files(out) == whole
    assert (out / "s0.png").stat().st_mtime_ns == kept  # finished images are not redone


def test_a_changed_input_is_detected_again(tmp_path):
    path = smear(tmp_path / "in" / "s.png")
    out = tmp_path / "out"
    run([path], out)
    smear(path, 20)
    run([path], out)
    with open(out / "s.cells.csv", newline="") as f:
        xs = sorted(float(r["x"]) for r in csv.DictReader(f))
    assert xs == sorted(x + 20 for _k, x, *_ in CELLS)


def test_other_settings_or_inputs_start_the_folder_afresh(tmp_path):
    paths = [smear(tmp_path / "in" / f"s{i}.png", i) for i in range(2)]
    out = tmp_path / "out"
    run(paths, out)
    run(paths[:1], out)
    assert not (out / "s1.png").exists() and [r["image_id"] for r in summary(out)] == ["s0"]
    run(paths[:1], out, {**SETTINGS, "scale": 2.0})
    assert json.loads((out / STATE / "run.json").read_text())["settings"]["scale"] == 2.0


def test_the_python_api_takes_paths_and_rgb_arrays_in_input_pixels(tmp_path):
    path = smear(tmp_path / "s.png")
    from_path = DETECTOR.detect(path)
    assert list(from_path.columns) == ["class_name", "class_idx", "score", "x", "y", "w", "h"]
    got = sorted(zip(from_path["class_idx"], from_path["x"], from_path["y"]))
    assert got == sorted((k, float(x), float(y)) for k, x, y, _w, _h in CELLS)
    assert set(from_path["class_name"]) == {"Neutrophil", "Healthy RBC", "Infected RBC"}
    rgb = cv2.imread(str(path))[:, :, ::-1].copy()
    pd_equal = from_path.equals(DETECTOR.detect(rgb))
    assert pd_equal
    # an image twice as large, told its red cells are 68 px: boxes in its own pixels
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    twice = DETECTOR.detect(big, rbc_diameter=68)
    assert sorted(zip(twice["class_idx"], twice["x"])) == sorted(
        (k, 2.0 * x) for k, x, *_ in CELLS)
    summary = Detector.summary(from_path)
    assert summary["n_neutrophil"] == 1 and summary["parasitemia_pct"] == 50.0
