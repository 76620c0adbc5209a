"""Training, resuming, evaluation and `bloodcell detect` through the real CLI on small shards.

The shards hold random-noise images with random boxes: enough to exercise every code path
(tf.data, targets, loss, checkpoints, decoding, pycocotools) in seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.dataset.shards import ImageRecord, encode_example, image_id

ANCHORS = "3.1x3.1,6.125x3.1,3.1x6.125,6.125x6.125,5.32x5.32,2.7x2.7"


def write_shard(root: Path, split: str, count: int, seed: int) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    folder = root / f"{split}-0"
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "images.tfrecord")) as w:
        for i in range(count):
            img = rng.integers(0, 255, (224, 224, 3), np.uint8)
            n = int(rng.integers(0, 4))
            xy = rng.integers(0, 150, (n, 2))
            wh = rng.integers(15, 70, (n, 2))
            png = cv2.imencode(".png", img)[1].tobytes()
            rec = ImageRecord(image_id(split, 0, i), png, 224, 224,
                              np.hstack([xy, wh]).astype(np.float32), rng.integers(0, 10, n))
            w.write(encode_example(rec))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("work")
    for split, count, seed in (("train", 120, 1), ("valid", 20, 2), ("test", 20, 3)):
        write_shard(root / "data" / "synth", split, count, seed)
    return root


def bloodcell(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bloodcell", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_ok(args: list[str], cwd: Path) -> str:
    proc = bloodcell(args, cwd)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def classifier_args(name: str, epochs: int = 3) -> list[str]:
    return ["train-classifier", "--shards", "data/synth", "--model", f"models/{name}.keras",
            "--history", f"plots/{name}.csv", "--metrics", f"metrics/{name}.json",
            "--seed", "7", "--epochs", str(epochs), "--batch", "10", "--schedule", "1:1e-3,3:1e-4"]


def weights(path: Path) -> list[np.ndarray]:
    import keras

    import bloodcell.model.fused_batchnorm  # noqa: F401  registers the layer for loading

    return keras.models.load_model(path, compile=False).get_weights()


@pytest.fixture(scope="module")
def classifier(shards) -> Path:
    run_ok(classifier_args("classifier"), shards)
    return shards / "models" / "classifier.keras"


def test_training_writes_the_model_history_and_metrics(classifier, shards):
    history = (shards / "plots" / "classifier.csv").read_text().splitlines()
    assert history[0] == "epoch,lr,train_loss,valid_loss,valid_accuracy"
    assert [row.split(",")[:2] for row in history[1:]] == [["1", "0.001"], ["2", "0.001"],
                                                           ["3", "0.0001"]]
    metrics = json.loads((shards / "metrics" / "classifier.json").read_text())
    assert metrics["epochs"] == 3 and metrics["train_images"] == 120
    assert not (shards / ".bloodcell-state").exists()  # a finished run leaves no state


def test_a_run_killed_mid_epoch_resumes_from_its_last_epoch_with_the_same_result(classifier,
                                                                               shards):
    proc = bloodcell(classifier_args("resumed"), shards)
    deadline = time.time() + 300
    while not list((shards / ".bloodcell-state").glob("*/epoch-0001/state.json")):
        assert proc.poll() is None and time.time() < deadline, "no epoch finished"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (shards / "models" / "resumed.keras").exists()
    log = run_ok(classifier_args("resumed"), shards)
    assert "resuming classifier after epoch" in log
    history = (shards / "plots" / "resumed.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    for a, b in zip(weights(classifier), weights(shards / "models" / "resumed.keras")):
        np.testing.assert_array_equal(a, b)  # same batches, same optimizer state
    assert (shards / "models" / "resumed.keras").read_bytes() == classifier.read_bytes()
    assert (shards / "plots" / "resumed.csv").read_bytes() == (
        shards / "plots" / "classifier.csv").read_bytes()


@pytest.fixture(scope="module")
def detector(classifier, shards) -> Path:
    run_ok(["train-detector", "--shards", "data/synth", "--init", "models/classifier.keras",
            "--model", "models/detector.keras", "--history", "plots/detector.csv",
            "--metrics", "metrics/detector.json", "--seed", "7", "--epochs", "1", "--batch", "10",
            "--schedule", "1:1e-3", "--anchors", ANCHORS, "--map-score-threshold", "0.01"], shards)
    return shards / "models" / "detector.keras"


def test_detector_training_and_evaluation(detector, shards):
    history = (shards / "plots" / "detector.csv").read_text().splitlines()
    assert "valid_map50" in history[0]
    out = run_ok(["evaluate", "--shards", "data/synth", "--model", "models/detector.keras",
                  "--histories", "plots/classifier.csv", "plots/detector.csv",
                  "--anchors", ANCHORS, "--score-threshold", "0.01", "--metrics",
                  "metrics/evaluate.json", "--plots", "plots/evaluate", "--figures",
                  "reports/evaluate"], shards)
    assert "test mAP@0.5" in out
    m = json.loads((shards / "metrics" / "evaluate.json").read_text())
    assert 0 <= m["coco"]["map50"] <= 1 and m["images"] == 20
    assert {"original_lenient_map30_percent", "rbc", "count_errors",
            "classification_exact_match"} <= set(m)
    for name in ("pr_curves.png", "confusion.png", "training_curves.png"):
        assert (shards / "reports" / "evaluate" / name).stat().st_size > 1000
    assert (shards / "plots" / "evaluate" / "confusion.csv").read_text().startswith(
        "actual,predicted")


def test_the_trained_detector_carries_its_anchors_and_refuses_others(detector, shards,
                                                                      tmp_path):
    from bloodcell.model.card import read_card

    card = read_card(detector)
    assert card["anchors"][0] == [3.1, 3.1] and card["decode"]["map_score_threshold"] == 0.01
    assert [i["folder"] for i in card["training"]["inputs"]] == ["data/synth/train-0",
                                                                 "data/synth/valid-0"]
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((240, 240, 3), 200, np.uint8))
    proc = bloodcell(["detect", str(image), "--out", str(tmp_path / "out"), "--model",
                      str(detector), "--anchors", "1x1,2x2"], shards)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "differs from the anchors" in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_detect_on_user_images_of_any_size_and_depth(detector, shards, tmp_path):
    import tifffile

    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "small.png"), rng.integers(0, 255, (150, 180, 3), np.uint8))
    tifffile.imwrite(images / "deep.tif", rng.integers(0, 65535, (500, 700, 3), np.uint16))
    cv2.imwrite(str(images / "gray.jpg"), rng.integers(0, 255, (300, 260), np.uint8))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    out = tmp_path / "out"
    proc = bloodcell(["detect", str(images), "--out", str(out), "--model", str(detector),
                      "--rbc-diameter", "40", "--score-threshold", "0.01", "--pixel-size",
                      "0.25"], shards)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "broken.png" in last
    assert last.startswith("bloodcell: error: 1 of 4 image(s) failed")
    names = sorted(p.name for p in out.iterdir())
    assert names == [".bloodcell-detect", ".bloodcell-output", "deep.cells.csv", "deep.geojson",
                     "deep.png", "detections.json", "gray.cells.csv", "gray.geojson", "gray.png",
                     "small.cells.csv", "small.geojson", "small.png", "summary.csv"]
    assert cv2.imread(str(out / "deep.png")).shape[0] >= 500
    features = json.loads((out / "deep.geojson").read_text())["features"]
    assert features
    for f in features:  # outlines closed, inside the image, measured in µm
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and all(0 <= x <= 700 and 0 <= y <= 500 for x, y in ring)
        assert {"Area µm^2", "Perimeter µm", "Mean OD"} <= set(f["properties"]["measurements"])
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 5 and "parasitemia_pct" in summary[0]
    assert summary[1].startswith("broken,") and ",failed," in summary[1]
    coco = json.loads((out / "detections.json").read_text())
    for ann in coco["annotations"]:
        image = next(im for im in coco["images"] if im["id"] == ann["image_id"])
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= image["width"] + 0.01 and y + h <= image["height"] + 0.01


@pytest.mark.parametrize(("args", "needle"), [
    (["detect", "missing.png", "--out", "o"], "missing.png"),
    (["train-classifier", "--shards", "nowhere", "--model", "m.keras", "--history", "h.csv",
      "--metrics", "m.json", "--seed", "1", "--epochs", "1", "--schedule", "1:1e-3"], "nowhere"),
    (["evaluate", "--shards", "data/synth", "--model", "none.keras", "--histories", "a", "b",
      "--anchors", ANCHORS, "--metrics", "m.json", "--plots", "p", "--figures", "f"],
     "none.keras"),
    (["train-classifier", "--shards", "data/synth", "--model", "m.keras", "--history", "h.csv",
      "--metrics", "m.json", "--seed", "1", "--epochs", "1", "--schedule", "2:1e-3"],
     "schedule"),
])
def test_bad_input_gives_one_line_and_exit_2(args, needle, shards):
    proc = bloodcell(args, shards)
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if "bloodcell" in line and "error" in line]
    assert proc.returncode == 2, err[-2000:]
    assert len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err
    for leftover in ("m.keras", "p", "f", "o"):
        assert not (shards / leftover).exists()


def test_detect_refuses_to_replace_a_foreign_folder(detector, shards, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((300, 300, 3), np.uint8))
    proc = bloodcell(["detect", str(img), "--out", str(foreign), "--model", str(detector)],
                     shards)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "was not made by `bloodcell detect`" in err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_the_readme_python_example_runs(detector, tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "from bloodcell import Detector" in b)
    rng = np.random.default_rng(3)
    image = tmp_path / "smear.tif"
    cv2.imwrite(str(image), rng.integers(150, 255, (300, 400, 3), np.uint8))
    code = code.replace("models/detector.keras", str(detector)).replace("smear.tif", str(image))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    cells = scope["cells"]
    assert list(cells.columns) == ["class_name", "class_idx", "score", "x", "y", "w", "h"]
    assert ((cells["x"] >= 0) & (cells["x"] + cells["w"] <= 400.01)).all()
    shapes = scope["shapes"]
    assert list(shapes.columns) == [*cells.columns, "outline", "measurements"]
    assert all("Area µm^2" in m for m in shapes["measurements"])


def test_one_validation_pass_gives_the_loss_and_the_detections_of_two(shards):
    """The detector's validation runs the network once per batch for its loss and its mAP's
    detections: the same loss as the training input's batches and the same detections as
    predict_shards, which ran the network a second time."""
    import keras
    import pandas as pd

    from bloodcell.common.hyperparams import parse_anchors
    from bloodcell.evaluate.metrics import coco_metrics
    from bloodcell.model import network
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.inference import predict_shards
    from bloodcell.train import input_pipeline, loop

    keras.utils.set_random_seed(3)
    net = network.detector()
    files = [str(shards / "data" / "synth" / "valid-0" / "images.tfrecord")]
    cfg = loop.TrainConfig(kind="detector", epochs=1, batch=8, schedule=((1, 1e-3),), seed=3,
                           anchors=parse_anchors(ANCHORS), decode=DecodeConfig(0.01))
    step = loop.validation_step(cfg, net)
    val = loop.evaluate(cfg, step, loop.datasets(cfg, ([], files, ()), 1, 0)[1])

    loss = n = 0
    for images, targets in input_pipeline.dataset(files, 8, "detector", anchors=cfg.anchors):
        loss += float(loop.detector_loss(targets, net(images, training=False), cfg.weights,
                                          cfg.anchors)) * int(images.shape[0])
        n += int(images.shape[0])
    gt, det, ids = predict_shards(net, files, cfg.anchors, cfg.decode, batch=8)
    assert len(det) > 100  # an untrained net scores many boxes above 0.01
    assert val["loss"] == pytest.approx(loss / n, rel=1e-6)
    sizes = {i: (224, 224) for i in ids}
    assert val["map50"] == coco_metrics(gt, det, ids, sizes)["map50"]

    found = []
    for ex in loop.datasets(cfg, ([], files, ()), 1, 0)[1]:
        _, nms = step(loop.dense(ex["image"]), loop.dense(ex["target"]))
        found.append(loop.to_frame([i.decode() for i in ex["id"].numpy()],
                                   *(t.numpy() for t in nms)))
    pd.testing.assert_frame_equal(pd.concat(found, ignore_index=True), det)


def test_with_ema_validation_scores_and_keeps_the_moving_average(shards, tmp_path):
    """train_detector.ema > 0: the validation loss of an epoch is the averaged weights' loss,
    the epoch's best model is that average, and the weights training goes on from (the
    checkpoint's last) are the trained ones, not the average."""
    import keras

    from bloodcell.common.hyperparams import parse_anchors
    from bloodcell.train import loop

    synth = shards / "data" / "synth"
    files = [str(synth / f"{s}-0" / "images.tfrecord") for s in ("train", "valid")]
    cfg = loop.TrainConfig(kind="detector", epochs=1, batch=10, schedule=((1, 1e-3),), seed=5,
                           anchors=parse_anchors(ANCHORS), select="loss", ema=0.5)
    with loop.policy_kept():
        net, state = loop.fit(cfg, [files[0]], [files[1]], tmp_path)
        epoch = tmp_path / "epoch-0001"
        valid = loop.datasets(cfg, ([], [files[1]], ()), 1, 0)[1]
        kept = loop.evaluate(cfg, loop.validation_step(cfg, net), valid)["loss"]
        trained = keras.models.clone_model(net)
        trained.load_weights(epoch / "last.weights.h5")
        last = loop.evaluate(cfg, loop.validation_step(cfg, trained), valid)["loss"]
    assert state["history"][0]["valid_loss"] == pytest.approx(kept, rel=1e-6)
    assert last != pytest.approx(kept, rel=1e-3)
    best = keras.models.clone_model(net)
    best.load_weights(epoch / "best.weights.h5")
    for a, b in zip(best.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_with_ema_a_resumed_run_ends_with_the_bytes_of_an_uninterrupted_one(shards, tmp_path):
    """The moving average lives in the optimizer's variables, which the checkpoint keeps: two
    epochs in one go and one epoch, then a resumed second, give the same weights."""
    from dataclasses import replace

    from bloodcell.common.hyperparams import parse_anchors
    from bloodcell.train import loop

    synth = shards / "data" / "synth"
    train, valid = ([str(synth / f"{s}-0" / "images.tfrecord")] for s in ("train", "valid"))
    cfg = loop.TrainConfig(kind="detector", epochs=2, batch=10, schedule=((1, 1e-3),), seed=5,
                           anchors=parse_anchors(ANCHORS), select="loss", ema=0.9)
    with loop.policy_kept():
        whole, _ = loop.fit(cfg, train, valid, tmp_path / "whole")
        loop.fit(replace(cfg, epochs=1), train, valid, tmp_path / "parts")
        resumed, state = loop.fit(cfg, train, valid, tmp_path / "parts")
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
