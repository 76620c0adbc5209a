"""Data safety: output ownership (the .bloodcell-output marker), training-state locks, resume
keys and non-finite losses, and safe loading (no pickle, XML only through defusedxml, .keras
models with Keras's safe mode).

Every refusal is exit code 2 with one line on stderr, and leaves every user file as it was.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.common import atomic
from bloodcell.common.atomic import MARKER, atomic_dir, check_output, clean_stale, made_by
from bloodcell.common.errors import UserError
from bloodcell.train import checkpoints as checkpoint
from conftest import make_kaggle, run_cli

PACKAGE = Path(__file__).resolve().parents[1] / "bloodcell"


def tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden ones included), and every folder."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def tmp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def refused(args: list, capsys, needle: str, *keep: Path) -> str:
    """Run the CLI in-process (-q): exit 2, exactly one stderr line holding ``needle``, and
    every folder in ``keep`` byte for byte as before."""
    before = [tree(k) if k.is_dir() else k.read_bytes() for k in keep]
    code, err = run_cli(["-q", *args], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("bloodcell: error: "), err
    assert needle in lines[0], lines[0]
    for k, b in zip(keep, before):
        assert (tree(k) if k.is_dir() else k.read_bytes()) == b, k
    return lines[0]


def user_folder(path: Path) -> Path:
    """A folder of a user's own files."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine, keep me\n")
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return path


# ------------------------------------------------------------------ the rule itself


def test_marker_is_one_line_naming_the_command(tmp_path):
    with atomic_dir(tmp_path / "out", "split") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "out" / MARKER).read_bytes() == b"split\n"
    assert made_by(tmp_path / "out") == "split"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "a.txt"]
    assert tmp_leftovers(tmp_path) == []


def test_rule_refuses_before_anything_is_written(tmp_path, monkeypatch):
    work = user_folder(tmp_path / "work")
    monkeypatch.chdir(work)
    src = user_folder(tmp_path / "src")
    cases = {
        ".": "is the current folder",
        "..": "is the current folder or holds it",
        str(src): "is also an input",
        str(tmp_path): "holds",
        str(src / "notes.txt"): "is a file",
        str(work / "sub"): "was not made by `bloodcell split`",
    }
    for out, needle in cases.items():
        with pytest.raises(UserError, match=re.escape(needle)):
            with atomic_dir(out, "split", [src]):
                raise AssertionError("must not run")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output(tmp_path / "f.txt", "split")
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(UserError, match="symbolic link"):
        check_output(tmp_path / "link", "split")
    with pytest.raises(UserError, match="is also an output"):
        check_output(tmp_path / "a", "evaluate", outputs=[tmp_path / "a"])
    assert tree(work)["notes.txt"] and (src / "notes.txt").read_text() == "mine, keep me\n"
    assert tmp_leftovers(tmp_path) == [] and tmp_leftovers(work) == []


def test_an_empty_folder_and_an_own_output_are_replaced_another_commands_is_not(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "split")
    with atomic_dir(tmp_path / "out", "synth") as tmp:
        (tmp / "x").write_text("1")
    check_output(tmp_path / "out", "synth")
    with pytest.raises(UserError, match="was made by `bloodcell synth`, not `bloodcell split`"):
        check_output(tmp_path / "out", "split")


def test_a_failed_block_leaves_the_old_output_and_no_temporary_folder(tmp_path):
    with atomic_dir(tmp_path / "out", "split") as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out", "split") as tmp:
            (tmp / "x").write_text("new")
            raise RuntimeError("boom")
    assert (tmp_path / "out" / "x").read_text() == "old"
    assert tmp_leftovers(tmp_path) == []


def test_stale_temporary_folders_go_but_not_one_in_use(tmp_path):
    dead = tmp_path / ".out.tmp-dead"
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"half")
    old = tmp_path / ".out.tmp-old-x"
    (old / "old").mkdir(parents=True)
    busy = tmp_path / ".out.tmp-busy"
    busy.mkdir()
    other = tmp_path / ".other.tmp-dead"
    other.mkdir()
    fd = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with atomic_dir(tmp_path / "out", "split") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.close(fd)
    assert not dead.exists() and not old.exists()
    assert busy.is_dir() and other.is_dir()  # held by a running job / another output's
    assert clean_stale(tmp_path / "out") == [busy]


# ------------------------------------------------------------------ the command families


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """kaggle/ (3 cells a class) -> ex/kaggle -> split/ -> bg/train -> synth/train-0."""
    from bloodcell.cli import main

    root = tmp_path_factory.mktemp("tiny")
    make_kaggle(root / "kaggle")
    for cmd, args, _, _ in FAMILIES.values():
        if cmd != "demo-sources":
            assert main(["-q", *map(str, args(root, root / OUTS[cmd]))]) == 0, cmd
    return root


DEMO = ["--seed", "1", "--lisc-per-class", "1", "--lisc-mixt", "0", "--iumc-per-class", "1",
        "--mamic-fields", "1", "--kaggle-per-class", "1"]
FAMILIES = {
    # command: (name, args(root, out), an input folder, a folder holding an input)
    "demo-sources": ("demo-sources", lambda r, o: ["demo-sources", o, *DEMO], None, None),
    "extract-kaggle": ("extract-kaggle",
                       lambda r, o: ["extract-kaggle", r / "kaggle", o, "--scale", "0.3"],
                       "kaggle", "."),
    "split": ("split", lambda r, o: ["split", r / "ex/kaggle", "--out", o, "--seed", "1",
                                     "--train", "1", "--valid", "0", "--test", "0"],
              "ex/kaggle", "ex"),
    "backgrounds": ("backgrounds", lambda r, o: [
        "backgrounds", "train", "--split-table", r / "split/split.csv", "--extracts",
        r / "ex/kaggle", "--out", o, "--seed", "1", "--per-kind", "1", "--size", "300",
        "--rbc-count", "5", "10"], "ex/kaggle", "split"),
    "synth": ("synth", lambda r, o: [
        "synth", "train-0", "--split-table", r / "split/split.csv", "--extracts",
        r / "ex/kaggle", "--backgrounds", r / "bg/train", "--out", o, "--seed", "1",
        "--images", "2", "--mix", "1", "0", "0", "0", "--bg-size", "300"], "bg/train", "bg"),
}
OUTS = {"demo-sources": "demo", "extract-kaggle": "ex/kaggle", "split": "split",
        "backgrounds": "bg/train", "synth": "synth/train-0"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_command_refuses_outputs_it_does_not_own(family, tiny, tmp_path, capsys,
                                                      monkeypatch):
    cmd, args, input_dir, parent = FAMILIES[family]
    work = user_folder(tmp_path / "work")
    mine = user_folder(tmp_path / "mine")
    (tmp_path / "file.txt").write_text("a user's file")
    theirs = tmp_path / "theirs"
    with atomic_dir(theirs, "lineage" if cmd != "lineage" else "split") as tmp:
        (tmp / "table.csv").write_text("a,b\n")
    monkeypatch.chdir(work)
    refused(args(tiny, Path(".")), capsys, "is the current folder", work, tiny)
    refused(args(tiny, mine), capsys, f"was not made by `bloodcell {cmd}`", mine, tiny)
    refused(args(tiny, tmp_path / "file.txt"), capsys, "is a file", tmp_path / "file.txt")
    refused(args(tiny, theirs), capsys, "was made by `bloodcell lineage`", theirs, tiny)
    if input_dir is not None:
        refused(args(tiny, tiny / input_dir), capsys, "is also an input", tiny)
        refused(args(tiny, tiny / parent), capsys, "an input of", tiny)
    assert tmp_leftovers(tmp_path) == [] and tmp_leftovers(tiny) == []


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_command_reruns_over_its_own_output_and_cleans_stale_temporaries(family, tiny,
                                                                              tmp_path, capsys):
    cmd, args, _, _ = FAMILIES[family]
    out = tmp_path / "out"
    notes = user_folder(tmp_path / "notes")
    code, err = run_cli(["-q", *args(tiny, out)], capsys)
    assert code == 0, err
    assert made_by(out) == cmd
    first = tree(out)
    stale = tmp_path / ".out.tmp-killed"
    stale.mkdir()
    (stale / "half.tfrecord").write_bytes(b"half")
    code, err = run_cli(["-q", *args(tiny, out)], capsys)
    assert code == 0, err
    assert tree(out) == first  # same bytes again, marker included
    assert not stale.exists() and tmp_leftovers(tmp_path) == []
    assert (notes / "notes.txt").read_text() == "mine, keep me\n"


def test_an_extract_never_replaces_the_database_it_reads(tmp_path, capsys):
    db = make_kaggle(tmp_path / "kaggle")
    refused(["extract-kaggle", db, db, "--scale", "0.3"], capsys, "is also an input", db)
    refused(["extract-kaggle", db, tmp_path, "--scale", "0.3"], capsys, "holds", db)
    refused(["demo-sources", db, *DEMO], capsys, "was not made by `bloodcell demo-sources`", db)


# ------------------------------------------------------------------ export


def test_export_refuses_a_mamic_like_folder_the_synth_folder_and_the_current_one(
        tmp_path, capsys, monkeypatch):
    from test_export import make_data_root

    data = make_data_root(tmp_path)
    mamic = tmp_path / "mamic"
    (mamic / "images").mkdir(parents=True)
    cv2.imwrite(str(mamic / "images" / "field_001.png"), np.zeros((40, 40, 3), np.uint8))
    (mamic / "crops.csv").write_text("image,class,x,y,w,h\n")
    work = user_folder(tmp_path / "work")

    def export(out):
        return ["export", "--format", "yolo", "train", out, "--synth", data / "synth"]

    refused(export(mamic), capsys, "was not made by `bloodcell export`", mamic)
    refused(export(data / "synth"), capsys, "is also an input", data)
    refused(export(data), capsys, "holds", data)
    refused(export(data / "synth" / "x"), capsys, "lies inside the synth folder", data)
    monkeypatch.chdir(work)
    refused(export("."), capsys, "is the current folder", work, data)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "yolo"
    assert run_cli(export(out), capsys)[0] == 0
    first = tree(out)
    (tmp_path / ".yolo.tmp-killed").mkdir()
    assert run_cli(export(out), capsys)[0] == 0
    assert tree(out) == first and tmp_leftovers(tmp_path) == []


# ------------------------------------------------------------------ detect, evaluate-images


def write_voc(root: Path) -> tuple[Path, Path]:
    images, labels = root / "JPEGImages", root / "Annotations"
    images.mkdir(parents=True)
    labels.mkdir()
    img = np.full((260, 300, 3), (215, 220, 235), np.uint8)
    cv2.circle(img, (60, 60), 17, (150, 120, 200), -1)
    cv2.circle(img, (150, 170), 30, (140, 60, 110), -1)
    assert cv2.imwrite(str(images / "img_0.png"), img)
    objs = "".join(
        f"<object><name>{lab}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin>"
        f"<ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
        for lab, x, y, w, h in (("RBC", 43, 43, 35, 35), ("WBC", 120, 140, 61, 61)))
    (labels / "img_0.xml").write_text(
        "<annotation><filename>img_0.png</filename><size><width>300</width><height>260"
        f"</height><depth>3</depth></size>{objs}</annotation>")
    return images, labels


def test_detect_refuses_a_folder_holding_a_summary_csv_and_its_inputs(tmp_path, capsys,
                                                                      monkeypatch):
    smears = tmp_path / "smears"
    smears.mkdir()
    cv2.imwrite(str(smears / "a.png"), np.full((120, 120, 3), 200, np.uint8))
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the output is checked first")
    split = user_folder(tmp_path / "split")  # like data/split: split.csv and summary.csv
    (split / "summary.csv").write_text("source,class_name,train,valid,test\n")
    (split / "split.csv").write_text("sample_id,source,class_name,split\n")
    work = user_folder(tmp_path / "work")

    def detect(inputs, out):
        return ["detect", inputs, "--out", out, "--model", model]

    refused(detect(smears, split), capsys, "was not made by `bloodcell detect`", split)
    refused(detect(smears, smears), capsys, "is also an input", smears)
    refused(detect(smears / "a.png", smears), capsys, "holds", smears)
    refused(detect(smears, tmp_path / "m.keras"), capsys, "is also an input", model)
    monkeypatch.chdir(work)
    refused(detect(smears, "."), capsys, "is the current folder", work, smears)
    assert tmp_leftovers(tmp_path) == []


def test_evaluate_images_refuses_figures_it_does_not_own(tmp_path, capsys, monkeypatch):
    images, labels = write_voc(tmp_path / "voc")
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the output is checked first")
    mine = user_folder(tmp_path / "mine")
    work = user_folder(tmp_path / "work")

    def evaluate(figures, metrics=tmp_path / "metrics.json"):
        return ["evaluate-images", images, "--labels", labels, "--format", "voc",
                "--class-map", "bccd", "--model", model, "--metrics", metrics,
                "--figures", figures]

    refused(evaluate(mine), capsys, "was not made by `bloodcell evaluate-images`", mine)
    refused(evaluate(images), capsys, "is also an input", tmp_path / "voc")
    refused(evaluate(tmp_path / "voc"), capsys, "holds", tmp_path / "voc")
    refused(evaluate(tmp_path / "figs", tmp_path / "figs" / "m.json"), capsys,
            "an output of", tmp_path / "voc")
    monkeypatch.chdir(work)
    refused(evaluate("."), capsys, "is the current folder", work, tmp_path / "voc")
    assert not (tmp_path / "metrics.json").exists() and tmp_leftovers(tmp_path) == []


RERUN = """
import sys
from pathlib import Path
from bloodcell.cli import main
from bloodcell.common.tf_threads import set_tf_threads
from bloodcell.model import network as model
set_tf_threads()
root = Path(sys.argv[1])
model.detector().save(root / "detector.keras")
(root / "detector.h5").write_bytes(b"hdf5?")
args = [a.replace("ROOT", str(root)) for a in sys.argv[2:]]
codes = [main(["-q", *args])]
(root / ".out.tmp-killed").mkdir()
codes.append(main(["-q", *args]))
h5 = [a.replace("detector.keras", "detector.h5") for a in args]
codes.append(main(["-q", *h5]))
print("codes", *codes)
"""


@pytest.mark.parametrize("command", ["detect", "evaluate-images"])
def test_detect_and_evaluate_images_rerun_over_their_own_output(command, tmp_path):
    """In a fresh process (TensorFlow's threads are set before it starts): a first run, a rerun
    over its own output (a killed run's temporary folder is removed), then a .h5 model: one
    line, exit 2."""
    if command == "detect":
        (tmp_path / "smears").mkdir()
        cv2.imwrite(str(tmp_path / "smears" / "a.png"), np.full((120, 150, 3), 200, np.uint8))
        args = ["detect", "ROOT/smears", "--out", "ROOT/out", "--model", "ROOT/detector.keras"]
    else:
        write_voc(tmp_path / "voc")
        args = ["evaluate-images", "ROOT/voc/JPEGImages", "--labels", "ROOT/voc/Annotations",
                "--format", "voc", "--class-map", "bccd", "--model", "ROOT/detector.keras",
                "--metrics", "ROOT/metrics.json", "--figures", "ROOT/out"]
    (tmp_path / "notes.txt").write_text("keep")
    proc = subprocess.run([sys.executable, "-c", RERUN, str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "codes 0 0 2" in proc.stdout, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("bloodcell: error:")]
    assert len(errors) == 1 and "only .keras model files are loaded" in errors[0], errors
    assert made_by(tmp_path / "out") == command
    assert tmp_leftovers(tmp_path) == [] and (tmp_path / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------ training


def write_shard(folder: Path, split: str, count: int, seed: int) -> None:
    import tensorflow as tf

    from bloodcell.dataset.shards import ImageRecord, encode_example, image_id

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "images.tfrecord")) as w:
        for i in range(count):
            img = rng.integers(0, 255, (224, 224, 3), np.uint8)
            png = cv2.imencode(".png", img)[1].tobytes()
            boxes = np.array([[20, 30, 40, 50]], np.float32)
            w.write(encode_example(ImageRecord(image_id(split, 0, i), png, 224, 224, boxes,
                                               np.array([i % 10]))))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_shard(root / "data" / "synth" / "train-0", "train", 20, 1)
    write_shard(root / "data" / "synth" / "valid-0", "valid", 10, 2)
    return root


def train_args(epochs: int, schedule: str) -> list[str]:
    return ["-q", "train-classifier", "--shards", "data/synth", "--model", "models/c.keras",
            "--history", "plots/c.csv", "--metrics", "metrics/c.json", "--seed", "7",
            "--epochs", str(epochs), "--batch", "10", "--schedule", schedule]


def bloodcell(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bloodcell", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err[-3000:]
    return [ln for ln in err.splitlines() if ln.startswith("bloodcell: error:")]


def test_the_lock_helper_refuses_a_second_holder(tmp_path):
    folder = tmp_path / "state"
    with checkpoint.locked(folder, "train-classifier"):
        assert (folder / checkpoint.LOCK_NAME).is_file()
        with pytest.raises(UserError, match="is in use by another `bloodcell train-classifier` "
                           "run") as err:
            with checkpoint.locked(folder, "train-classifier"):
                raise AssertionError("must not run")
        assert "\n" not in str(err.value)
        child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from pathlib import Path
            from bloodcell.train.checkpoints import locked
            from bloodcell.common.errors import UserError
            try:
                with locked(Path({str(folder)!r}), "train-detector"):
                    print("got it")
            except UserError as e:
                print("refused", e)
            """)], capture_output=True, text=True, timeout=120)
        assert child.stdout.startswith("refused"), child.stdout + child.stderr
    with checkpoint.locked(folder, "train-classifier"):  # free again once released
        pass


def test_train_run_holds_the_lock_while_it_trains(tmp_path, monkeypatch, shards):
    from bloodcell.train import loop as train
    seen = []

    def fake_fit(cfg, train_files, valid_files, state_dir, *rest):
        with pytest.raises(UserError, match="is in use"):
            with checkpoint.locked(state_dir, "train-classifier"):
                pass
        seen.append(state_dir)
        raise UserError("stop here")

    monkeypatch.setattr(train, "fit", fake_fit)
    monkeypatch.chdir(tmp_path)
    cfg = train.TrainConfig("classifier", 1, 10, ((1, 1e-3),), 7)
    synth = shards / "data" / "synth"
    with pytest.raises(UserError, match="stop here"):
        train.run(cfg, [synth / "train-0"], [synth / "valid-0"], tmp_path / "m.keras",
                  tmp_path / "h.csv", tmp_path / "m.json", ["a=1"])
    assert seen and seen[0].parent == checkpoint.STATE_ROOT


def test_a_second_concurrent_training_run_of_the_same_stage_exits_2(shards):
    first = bloodcell(train_args(500, "1:1e-3"), shards)
    try:
        deadline = time.time() + 300
        while not list((shards / ".bloodcell-state").glob(f"*/{checkpoint.LOCK_NAME}")):
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.time() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        second = bloodcell(train_args(500, "1:1e-3"), shards)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err[-3000:]
        lines = error_lines(err)
        assert len(lines) == 1 and "is in use by another `bloodcell train-classifier` run" \
            in lines[0], err[-3000:]
    finally:
        first.kill()
        first.communicate()
    import shutil

    shutil.rmtree(shards / ".bloodcell-state", ignore_errors=True)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_epoch(shards):
    proc = bloodcell(train_args(3, "1:1e-3,2:1e30"), shards)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    lines = error_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert re.search(r"classifier epoch [23] step \d+: non-finite loss (nan|inf) "
                     r"\(cross_entropy (nan|inf)\) at learning rate 1e\+30", lines[0]), lines[0]
    assert "the last good state (epoch" in lines[0] and "lower the learning rate" in lines[0]
    states = list((shards / ".bloodcell-state").glob("train_classifier-*"))
    assert len(states) == 1
    kept = checkpoint.latest(states[0])
    assert kept is not None and kept.name in ("epoch-0001", "epoch-0002")
    assert f"epoch {int(kept.name[-4:])})" in lines[0]
    assert not (shards / "models" / "c.keras").exists()
    import shutil

    shutil.rmtree(shards / ".bloodcell-state", ignore_errors=True)


def test_the_resume_key_changes_with_the_code_that_shapes_the_state(tmp_path, monkeypatch):
    names = sorted(p.name for p in checkpoint.CODE_FILES)
    assert {"checkpoints.py", "input_pipeline.py", "loop.py", "loss.py", "network.py",
            "hyperparams.py", "targets.py", "tfrecords.py"} <= set(names)
    assert len(set(names)) == len(names)  # the copies below keep their names
    assert all(p.is_file() for p in checkpoint.CODE_FILES)
    copies = []
    for p in checkpoint.CODE_FILES:
        copies.append(tmp_path / p.name)
        copies[-1].write_bytes(p.read_bytes())
    monkeypatch.setattr(checkpoint, "CODE_FILES", tuple(copies))
    (tmp_path / "in.bin").write_bytes(b"123")
    key = checkpoint.state_key(["--epochs=3"], [tmp_path / "in.bin"])
    assert key == checkpoint.state_key(["--epochs=3"], [tmp_path / "in.bin"])
    for copy in copies:
        original = copy.read_bytes()
        copy.write_bytes(original + b"\n# changed\n")
        assert checkpoint.state_key(["--epochs=3"], [tmp_path / "in.bin"]) != key, copy.name
        copy.write_bytes(original)
    assert checkpoint.state_key(["--epochs=3"], [tmp_path / "in.bin"]) == key
    assert checkpoint.state_key(["--epochs=4"], [tmp_path / "in.bin"]) != key


# ------------------------------------------------------------------ safe loading


def sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    return files


def test_no_pickle_anywhere_in_the_package():
    banned = re.compile(r"pickle|read_pickle|allow_pickle|\bdill\b|\bjoblib\b|\bshelve\b",
                        re.IGNORECASE)
    hits = [f"{f.relative_to(PACKAGE)}:{n}: {line.strip()}"
            for f in sources() for n, line in enumerate(f.read_text().splitlines(), 1)
            if banned.search(line)]
    assert hits == []


def _type_checking_only(tree_: ast.Module) -> set[int]:
    """Line numbers of the statements under ``if TYPE_CHECKING:``."""
    lines = set()
    for node in ast.walk(tree_):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(
                node.test, "attr", None)) == "TYPE_CHECKING":
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def test_xml_is_parsed_only_through_defusedxml():
    unsafe = ("xml", "lxml", "xmlrpc")
    hits, defused = [], 0
    for f in sources():
        module = ast.parse(f.read_text())
        typing_only = _type_checking_only(module)
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            defused += any(n.startswith("defusedxml") for n in names)
            if node.lineno in typing_only:
                continue
            for name in names:
                if name.split(".")[0] in unsafe or "minidom" in name or "expat" in name:
                    hits.append(f"{f.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert hits == []
    assert defused  # the VOC reader does parse XML, through defusedxml


def test_models_load_only_as_keras_files_in_safe_mode(tmp_path):
    import keras

    from bloodcell.model.inference import load_detector
    from bloodcell.train import loop as train

    calls = []
    for f in sources():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load_model":
                safe = [k for k in node.keywords if k.arg == "safe_mode"]
                calls.append((f.name, bool(safe) and getattr(safe[0].value, "value", None)))
    assert calls and all(ok is True for _, ok in calls), calls
    major, minor = (int(v) for v in keras.__version__.split(".")[:2])
    assert (major, minor) >= (3, 14), keras.__version__
    for name in ("model.h5", "model.hdf5", "saved_model", "model.pkl"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(UserError, match="only .keras model files are loaded") as err:
            load_detector(tmp_path / name)
        assert "\n" not in str(err.value)
    cfg = train.TrainConfig("detector", 1, 10, ((1, 1e-3),), 7)
    with pytest.raises(UserError, match="--init must be a .keras model file"):
        train.run(cfg, [tmp_path], [tmp_path], tmp_path / "d.keras", tmp_path / "h.csv",
                  tmp_path / "m.json", [], init_from=tmp_path / "model.h5")
    with pytest.raises(UserError, match="--model must be a .keras model file"):
        train.run(cfg, [tmp_path], [tmp_path], tmp_path / "d.h5", tmp_path / "h.csv",
                  tmp_path / "m.json", [])


def test_dvc_ignores_the_temporary_folders():
    ignore = (PACKAGE.parent / ".dvcignore").read_text().splitlines()
    assert ".*.tmp-*" in ignore
    assert atomic.MARKER == ".bloodcell-output"
