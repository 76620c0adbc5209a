"""The detector as an int8 TFLite model: same bytes from the same inputs, and outputs that
follow the float model's."""

from __future__ import annotations

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
