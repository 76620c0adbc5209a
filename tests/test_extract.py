"""The extract_<db> stages on tiny drawn databases: packs, QC tables and bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.dataset.samples import decode_row, read_pack
from conftest import make_iumc, make_kaggle, make_lisc, make_mamic, run_cli, write


def qc(outdir: Path, name: str) -> list[dict]:
    with open(outdir / name, newline="") as f:
        return list(csv.DictReader(f))


def test_kaggle_pack_has_every_cell_at_the_40x_scale(tmp_path, capsys):
    root = make_kaggle(tmp_path / "kaggle")
    code, err = run_cli(["extract-kaggle", root, tmp_path / "out", "--scale", "0.5"], capsys)
    assert code == 0, err
    t = read_pack(tmp_path / "out" / "samples.parquet")
    assert t.num_rows == 6
    assert sorted(set(t.column("class_name").to_pylist())) == ["Infected", "_"]
    img, mask = decode_row(t, 0)
    assert img.shape[:2] == mask.shape and img.dtype == np.uint8 and mask.dtype == bool
    # disk radius 50 -> 25 at scale 0.5: about 50 px across plus padding
    assert 49 <= mask.shape[1] <= 54 and 0.70 < mask.mean() < 0.85
    assert all(len(h) == 64 for h in t.column("raw_sha256").to_pylist())
    skipped = qc(tmp_path / "out", "qc_skipped.csv")
    assert {r["path"] for r in skipped} == {"cell_images/Parasitized/Thumbs.db",
                                            "cell_images/Uninfected/Thumbs.db"}
    counts = {r["class_name"]: int(r["samples"]) for r in qc(tmp_path / "out", "qc_counts.csv")}
    assert counts == {"Infected": 3, "_": 3}


def test_kaggle_nested_duplicate_is_ignored_and_reported(tmp_path, capsys):
    root = make_kaggle(tmp_path / "kaggle")
    make_kaggle(root / "cell_images")  # cell_images/cell_images/... as in the Kaggle zip
    code, err = run_cli(["extract-kaggle", root, tmp_path / "out", "--scale", "0.3"], capsys)
    assert code == 0, err
    assert read_pack(tmp_path / "out" / "samples.parquet").num_rows == 6
    reasons = [r["reason"] for r in qc(tmp_path / "out", "qc_skipped.csv")]
    assert any("nested duplicate" in r for r in reasons)


@pytest.mark.parametrize("bad, reason", [
    (np.zeros((60, 60), np.uint8) + 100, "grayscale"),
    (np.zeros((60, 60, 4), np.uint8) + 100, "RGBA"),
    (np.zeros((60, 60, 3), np.uint16) + 30000, "16-bit"),
    (None, "truncated"),
    (np.zeros((4, 4, 3), np.uint8) + 100, "too small"),
])
def test_kaggle_bad_image_becomes_a_qc_entry(tmp_path, capsys, bad, reason):
    root = make_kaggle(tmp_path / "kaggle")
    target = root / "cell_images" / "Uninfected" / "bad.png"
    if bad is None:
        good = (root / "cell_images" / "Uninfected" / "C1P1ThinF_IMG_1_cell_0.png").read_bytes()
        target.write_bytes(good[: len(good) // 3])
    else:
        write(target, bad)
    code, err = run_cli(["extract-kaggle", root, tmp_path / "out", "--scale", "0.3"], capsys)
    assert code == 0, err
    rows = [r for r in qc(tmp_path / "out", "qc_skipped.csv") if r["path"].endswith("bad.png")]
    assert len(rows) == 1 and reason in rows[0]["reason"]


def test_kaggle_unpacked_one_level_too_deep_names_the_fix(tmp_path, capsys):
    make_kaggle(tmp_path / "kaggle" / "cell-images-for-detecting-malaria")
    out = tmp_path / "out"
    code, err = run_cli(["extract-kaggle", tmp_path / "kaggle", out, "--scale", "0.3"], capsys)
    assert code == 2
    assert "one level too deep" in err and "cell-images-for-detecting-malaria" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_missing_database_and_empty_class_folder_exit_2(tmp_path, capsys):
    code, err = run_cli(["extract-kaggle", tmp_path / "nope", tmp_path / "o", "--scale", "1"],
                        capsys)
    assert code == 2 and "database folder not found" in err
    root = make_kaggle(tmp_path / "kaggle")
    for p in (root / "cell_images" / "Uninfected").glob("*.png"):
        p.unlink()
    code, err = run_cli(["extract-kaggle", root, tmp_path / "o", "--scale", "1"], capsys)
    assert code == 2 and "empty class folder" in err and "Uninfected" in err
    assert not (tmp_path / "o").exists()


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path, capsys):
    root = make_kaggle(tmp_path / "kaggle")
    out = tmp_path / "out"
    assert run_cli(["extract-kaggle", root, out, "--scale", "0.3"], capsys)[0] == 0
    before = (out / "samples.parquet").read_bytes()
    code, _ = run_cli(["extract-kaggle", tmp_path / "gone", out, "--scale", "0.3"], capsys)
    assert code == 2 and (out / "samples.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_lisc_cuts_class_folders_and_skips_mixt_border_and_bad_masks(tmp_path, capsys):
    root = make_lisc(tmp_path / "lisc")
    truth = root / "LISC Database" / "Ground Truth Segmentation"
    # neut/2: mask of another size; lymp/2: cell cut by the border; mono/2: two cells
    write(truth / "neut" / "areaforexpert1" / "2_expert.bmp", np.zeros((500, 600), np.uint8))
    border = np.zeros((576, 720), np.uint8)
    cv2.circle(border, (10, 288), 70, 255, -1)
    write(truth / "lymp" / "areaforexpert1" / "2_expert.bmp", border)
    two = np.zeros((576, 720), np.uint8)
    cv2.circle(two, (200, 288), 60, 255, -1)
    cv2.circle(two, (500, 288), 60, 255, -1)
    write(truth / "mono" / "areaforexpert1" / "2_expert.bmp", two)
    code, err = run_cli(["extract-lisc", root, tmp_path / "out", "--scale", "0.7"], capsys)
    assert code == 0, err
    t = read_pack(tmp_path / "out" / "samples.parquet")
    assert t.num_rows == 7  # 10 class-folder images - 3 bad ones
    reasons = {r["path"]: r["reason"] for r in qc(tmp_path / "out", "qc_skipped.csv")}
    assert "mixt" in reasons["LISC Database/Main Dataset/mixt/1.bmp"]
    assert "720x576" in reasons["LISC Database/Main Dataset/neut/2.bmp"]
    assert "border" in reasons["LISC Database/Main Dataset/lymp/2.bmp"]
    assert "2 cells" in reasons["LISC Database/Main Dataset/mono/2.bmp"]
    img, mask = decode_row(t, 0)
    assert abs(mask.shape[0] - round(145 * 0.7)) <= 2  # 141 px disk + 2*2 pad, then x0.7
    code, _ = run_cli(["extract-lisc", root, tmp_path / "out2", "--scale", "0.7",
                       "--multi-cell", "split"], capsys)
    ids = read_pack(tmp_path / "out2" / "samples.parquet").column("sample_id").to_pylist()
    assert code == 0 and sum("mono/2.bmp#" in i for i in ids) == 2


def test_lisc_masks_8px_smaller_are_centred(tmp_path, capsys):
    root = make_lisc(tmp_path / "lisc", per_class=1)
    mask = np.zeros((568, 712), np.uint8)
    cv2.circle(mask, (356, 284), 70, 255, -1)
    write(root / "LISC Database/Ground Truth Segmentation/eosi/areaforexpert1/1_expert.bmp", mask)
    code, err = run_cli(["extract-lisc", root, tmp_path / "out", "--scale", "1"], capsys)
    t = read_pack(tmp_path / "out" / "samples.parquet").to_pydict()
    i = t["sample_id"].index("lisc/LISC Database/Main Dataset/eosi/1.bmp")
    assert code == 0 and (t["src_x"][i], t["src_y"][i]) == (360 - 70 - 2, 288 - 70 - 2)


def test_iumc_reads_the_documented_layout(tmp_path, capsys):
    root = make_iumc(tmp_path / "iumc")
    code, err = run_cli(["extract-iumc", root, tmp_path / "out", "--scale", "1"], capsys)
    assert code == 0, err
    counts = {r["class_name"]: int(r["samples"]) for r in qc(tmp_path / "out", "qc_counts.csv")}
    assert counts == {"Eosinophil": 2, "Basophil": 0, "Neutrophil": 2, "Lymphocytes": 2,
                      "Monocytes": 2}
    (root / "Eos").mkdir()
    code, err = run_cli(["extract-iumc", root, tmp_path / "out", "--scale", "1"], capsys)
    assert code == 2 and "unknown IUMC class folder" in err


def test_mamic_cuts_each_listed_cell(tmp_path, capsys):
    root, crops = make_mamic(tmp_path / "mamic")
    code, err = run_cli(["extract-mamic", root, crops, tmp_path / "out", "--scale", "1"], capsys)
    assert code == 0, err
    t = read_pack(tmp_path / "out" / "samples.parquet").to_pydict()
    by_class = dict(zip(t["class_name"], zip(t["width"], t["height"])))
    assert set(by_class) == {"_", "Infected", "Thrombocytes", "Clumps"}
    w, h = by_class["_"]  # disk of radius 30 (61 px) plus 2 px pad per side, +-1 px edge
    assert 63 <= w <= 65 and 63 <= h <= 65
    assert by_class["Clumps"][0] > by_class["Clumps"][1] + 20  # both platelets kept


@pytest.mark.parametrize("row, message", [
    ("field_001.png,_,1270,10,40,40", "lies outside"),
    ("field_001.png,Platelet,10,10,40,40", "is not one of"),
    ("field_001.png,_,10,10,forty,40", "whole numbers"),
    ("missing.png,_,10,10,40,40", "not found"),
])
def test_mamic_bad_crop_row_names_file_and_line(tmp_path, capsys, row, message):
    root, crops = make_mamic(tmp_path / "mamic")
    crops.write_text(crops.read_text() + row + "\n")
    out = tmp_path / "out"
    code, err = run_cli(["extract-mamic", root, crops, out, "--scale", "1"], capsys)
    assert code == 2 and message in err and f"{crops}:6" in err
    assert not out.exists()


def test_cli_user_error_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bloodcell", "extract-lisc",
                           str(tmp_path / "none"), str(tmp_path / "o"), "--scale", "0.7"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(tmp_path / "none") in proc.stderr
