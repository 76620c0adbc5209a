"""The detector as an int8 TFLite model: same bytes from the same inputs, and outputs that
follow the float model's."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bloodcell.model import network, quantize


@pytest.fixture(scope="module")
def folded():
    import keras

    keras.utils.set_random_seed(3)
    return network.fold_batchnorm(network.detector())


def test_int8_conversion_is_deterministic_and_follows_the_float_model(folded):
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (8, 224, 224, 3), np.uint8)
    calibration[0, 0, 0], calibration[0, 0, 1] = 0, 255  # the input range 0..255: scale 1
    flat = quantize.to_tflite(folded, calibration, "int8")
    assert quantize.to_tflite(folded, calibration, "int8") == flat

    runner = quantize.TFLiteRunner(flat, num_threads=1)
    assert runner.interpreter.get_input_details()[0]["dtype"] == np.uint8
    tiles = rng.integers(0, 256, (2, 224, 224, 3), np.uint8)
    raw = runner(tiles)
    ref = folded(tiles, training=False).numpy()
    assert raw.shape == ref.shape == (2, 14, 14, 6, 15) and raw.dtype == np.float32
    assert np.corrcoef(raw.ravel(), ref.ravel())[0, 1] > 0.98
    assert runner(tiles[:1]).shape == (1, 14, 14, 6, 15)  # the batch size may change


def test_int8_needs_calibration_tiles(folded):
    with pytest.raises(ValueError, match="calibration"):
        quantize.to_tflite(folded, None, "int8")
    with pytest.raises(ValueError, match="int8, dynamic or float32"):
        quantize.to_tflite(folded, None, "fp16")


# --- `bloodcell quantize` and the commands that run its file, on the tiny preset's run ---


def quantize_args(run, out, *extra):
    return ["quantize", run / "models" / "detector.keras",
            "--calibration", run / "data" / "synth" / "train-0", "--tiles", 20, "--out", out,
            *extra]


@pytest.fixture(scope="module")
def int8_model(snakemake_run, tmp_path_factory):
    """The tiny run's detector quantised by the command, and the source's bytes before."""
    from bloodcell.cli import main

    out = tmp_path_factory.mktemp("int8") / "detector-int8.keras"
    before = (snakemake_run / "models" / "detector.keras").read_bytes()
    assert main([str(a) for a in quantize_args(snakemake_run, out)]) == 0
    return out, before


def test_quantize_writes_a_keras_file_with_the_flatbuffer_and_its_lineage(int8_model,
                                                                          snakemake_run):
    from bloodcell.model.card import file_sha256, read_card
    from bloodcell.model.tflite_entry import read_flatbuffer

    out, before = int8_model
    source = snakemake_run / "models" / "detector.keras"
    assert source.read_bytes() == before  # the trained model is only read
    card, own = read_card(out), read_card(source)
    assert card["anchors"] == own["anchors"] and card["training"] == own["training"]
    flat = read_flatbuffer(out)
    assert flat is not None and read_flatbuffer(source) is None
    t = card["tflite"]
    assert t["mode"] == "int8" and t["calibration"]["tiles"] == 20
    assert t["source_sha256"] == file_sha256(source)
    assert t["calibration"]["inputs"][0]["folder"].endswith("train-0")
    assert t["sha256"] == hashlib.sha256(flat).hexdigest()


def test_quantize_gives_the_same_bytes_twice(int8_model, snakemake_run, tmp_path):
    from bloodcell.cli import main

    again = tmp_path / "again.keras"
    assert main([str(a) for a in quantize_args(snakemake_run, again)]) == 0
    assert again.read_bytes() == int8_model[0].read_bytes()


def test_evaluate_and_detect_run_the_int8_file_through_tflite(int8_model, snakemake_run,
                                                              tmp_path, capsys):
    from bloodcell.cli import main

    run = snakemake_run
    assert main(["evaluate", "--shards", str(run / "data" / "synth"), "--model",
                 str(int8_model[0]), "--metrics", str(tmp_path / "m.json"), "--plots",
                 str(tmp_path / "plots"), "--figures", str(tmp_path / "figs"), "--histories",
                 str(run / "plots" / "train" / "classifier.csv"),
                 str(run / "plots" / "train" / "detector.csv")]) == 0
    assert "int8 TFLite" in capsys.readouterr().err
    assert 0 <= json.loads((tmp_path / "m.json").read_text())["coco"]["map50"] <= 1
    slide = sorted((run / "data" / "slides" / "images").iterdir())[0]
    assert main(["detect", str(slide), "--out", str(tmp_path / "det"), "--model",
                 str(int8_model[0])]) == 0
    assert "int8 TFLite" in capsys.readouterr().err
    assert (tmp_path / "det" / "summary.csv").is_file()
