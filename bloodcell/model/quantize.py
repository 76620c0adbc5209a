"""The detector through TFLite: post-training int8 quantisation and a tile runner.

:func:`to_tflite` converts a loaded detector (:func:`bloodcell.model.inference.load_detector`,
BatchNorm folded) to a TFLite flatbuffer, by default full-integer int8: weights per output
channel, activations per tensor, their ranges calibrated on RGB tiles from the train or valid
split (never the test split). The flatbuffer stops at the last convolution, conv24, and returns
its (B, 14, 14, 90) output; :class:`TFLiteRunner` reshapes that to the raw (B, 14, 14, 6, 15)
outputs the Keras model gives, so decoding and NMS (:func:`bloodcell.model.decode.detect_batch`)
run unchanged (:func:`tflite_tile_detector`).

Conventions: tiles are (B, 224, 224, 3) uint8 RGB, 0..255, as everywhere in bloodcell. The int8
model takes them as they are: a uint8 input whose quantisation is scale 1, zero point 0 whenever
the calibration tiles reach both 0 and 255 (the input range is always widened to include 0), so
the tile bytes are the input and the network's own x / 127.5 - 1 scaling runs inside, quantised.
Its output is dequantised to float32 inside the flatbuffer (one op on 17,640 values per tile).
Conversion is deterministic: the same model and calibration tiles give the same bytes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from bloodcell.common.tile import GRID, TILE_PX
from bloodcell.dataset.tfrecords import examples
from bloodcell.model.decode import DecodeConfig, detect_batch
from bloodcell.model.network import N_ANCHORS, VECTOR

Mode = Literal["int8", "dynamic", "float32"]
"""``int8``: full-integer (weights and activations int8, calibrated); ``dynamic``: dynamic-range
(int8 weights, float activations, no calibration); ``float32``: no quantisation."""

LAST_CONV = "conv24"
"""The detector's linear 1x1 output convolution: where the flatbuffer stops."""


def _to_last_conv(model: keras.Model) -> keras.Model:
    """``model`` up to its last convolution: float32 (B, 224, 224, 3) 0..255 RGB -> (B, 14, 14,
    90). The Reshape to anchors is left to the runner, so the flatbuffer has no shape arithmetic
    on the batch size. The fixed name keeps the op names, and so the flatbuffer's bytes, the same
    from one conversion to the next."""
    return keras.Model(model.inputs, model.get_layer(LAST_CONV).output, name="to_last_conv")


def to_tflite(model: keras.Model, calibration: Iterable[np.ndarray] | None = None,
              mode: Mode = "int8", float_last_conv: bool = False) -> bytes:
    """A detector (BatchNorm folded) as a TFLite flatbuffer.

    ``calibration``: (224, 224, 3) or (B, 224, 224, 3) uint8 RGB tiles from the train or valid
    split, one calibration step per tile in the given order (``int8`` only; a few hundred
    suffice). ``mode``: see :data:`Mode`.

    The ``int8`` model takes uint8 tiles and returns float32. ``float_last_conv`` (``int8``
    only) leaves the output convolution, conv24, in float32 (its input dequantised): the rest
    stays int8, the input then is float32 0..255 (quantised inside). The ``dynamic`` and
    ``float32`` models take float32 0..255. :class:`TFLiteRunner` feeds each what it takes.
    Keras's printout of the SavedModel it exports for the converter is silenced.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return _convert(model, calibration, mode, float_last_conv)


def _convert(model: keras.Model, calibration: Iterable[np.ndarray] | None, mode: Mode,
             float_last_conv: bool) -> bytes:
    """:func:`to_tflite`, with Keras's printout."""
    converter = tf.lite.TFLiteConverter.from_keras_model(_to_last_conv(model))
    if mode == "float32":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "dynamic":
        return converter.convert()
    if mode != "int8":
        raise ValueError(f"mode must be int8, dynamic or float32, not {mode!r}")
    if calibration is None:
        raise ValueError("int8 quantisation needs calibration tiles (train or valid split)")
    tiles = [np.asarray(t, np.uint8).reshape(-1, TILE_PX, TILE_PX, 3) for t in calibration]
    if not sum(len(t) for t in tiles):
        raise ValueError("no calibration tiles")

    def representative() -> Iterator[list[np.ndarray]]:
        for batch in tiles:
            for tile in batch:
                yield [tile[None].astype(np.float32)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    if not float_last_conv:
        return converter.convert()
    # TFLite's selective quantisation: the node that makes the float model's output (conv24)
    # stays float. fully_quantize=False keeps the float output (True would requantise it).
    output = tf.lite.Interpreter(model_content=_convert(model, None, "float32", False))
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=[output.get_output_details()[0]["name"]],
        fully_quantize=False)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative, debug_options=options)
    flatbuffer = debugger.get_nondebug_quantized_model()
    if not _float_output_conv(flatbuffer):  # the denylist matches by name: check it took
        raise RuntimeError("TFLite quantised the output convolution although it was "
                           "denylisted; this TensorFlow names the nodes otherwise")
    return flatbuffer


def _float_output_conv(flatbuffer: bytes) -> bool:
    """Whether the flatbuffer's output comes from a CONV_2D on a float32 input."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    out = interpreter.get_output_details()[0]["index"]
    for op in interpreter._get_ops_details():  # no public API lists a model's ops
        if out in op["outputs"]:
            dtype = interpreter._get_tensor_details(op["inputs"][0], 0)["dtype"]
            return op["op_name"] == "CONV_2D" and dtype == np.float32
    return False


def calibration_tiles(files: Sequence[str], count: int) -> np.ndarray:
    """The first ``count`` tiles of TFRecord shard files, (count, 224, 224, 3) uint8 RGB, in
    file order (deterministic). Pass train or valid shards only."""
    if count < 1:
        raise ValueError(f"calibration needs at least one tile, not {count}")
    out: list[np.ndarray] = []
    n = 0
    for ex in examples(files, min(count, 100)):
        out.append(ex["image"].numpy()[: count - n])
        n += len(out[-1])
        if n >= count:
            break
    if n < count:
        raise ValueError(f"asked for {count} calibration tiles, the files hold {n}")
    return np.concatenate(out)


class TFLiteRunner:
    """A TFLite detector flatbuffer (from :func:`to_tflite`) on the TFLite interpreter with its
    default XNNPACK delegate: uint8 tiles -> raw (B, 14, 14, 6, 15) float32 outputs, as the
    Keras detector's. Not thread-safe (one interpreter, resized when the batch size changes)."""

    def __init__(self, flatbuffer: bytes, num_threads: int = 2):
        self.interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = 0

    def _feed(self, tiles: np.ndarray) -> np.ndarray:
        """Tiles as the input tensor wants them: uint8 as is when the input is uint8 with scale 1
        and zero point 0, quantised with the input's parameters otherwise, float32 for a float
        input."""
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return tiles.astype(np.float32)
        scale, zero = self._input["quantization"]
        if dtype == np.uint8 and (scale, zero) == (1.0, 0):
            return tiles
        info = np.iinfo(dtype)
        q = np.round(tiles.astype(np.float32) / scale) + zero
        return np.clip(q, info.min, info.max).astype(dtype)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """(B, 224, 224, 3) uint8 RGB tiles -> raw outputs (B, 14, 14, 6, 15) float32."""
        tiles = np.ascontiguousarray(tiles, np.uint8)
        batch = tiles.shape[0]
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"],
                                                 [batch, TILE_PX, TILE_PX, 3])
            self.interpreter.allocate_tensors()
            self._batch = batch
        self.interpreter.set_tensor(self._input["index"], self._feed(tiles))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        if out.dtype != np.float32:  # an integer output: dequantise
            scale, zero = self._output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.reshape(batch, GRID, GRID, N_ANCHORS, VECTOR)


def tflite_tile_detector(runner: Callable[[np.ndarray], np.ndarray],
                         anchors: tuple[tuple[float, float], ...], cfg: DecodeConfig
                         ) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """As :func:`bloodcell.model.inference.tile_detector`, with the network run by ``runner``
    (a :class:`TFLiteRunner`, or any function of tiles to raw outputs): tiles (B, 224, 224, 3)
    uint8 RGB -> numpy NMS results (boxes y1x1y2x2, scores, classes, valid counts). Decoding
    and NMS are the same compiled TensorFlow function."""

    @tf.function(reduce_retracing=True)
    def decode(raw: tf.Tensor):
        return detect_batch(raw, anchors, cfg)

    def call(tiles) -> tuple[np.ndarray, ...]:
        return tuple(t.numpy() for t in decode(tf.convert_to_tensor(runner(np.asarray(tiles)))))

    return call
