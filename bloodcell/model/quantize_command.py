"""``bloodcell quantize``: a trained detector as an int8 TFLite model, for faster detection.

Post-training full-integer quantisation (bloodcell.model.quantize), calibrated on the first
``--tiles`` tiles of the given train or valid shards (never the test split). The result is a
new ``.keras`` file holding the detector's own entries, its card and the flatbuffer
(bloodcell.model.tflite_entry); ``detect``, ``evaluate``, ``evaluate-slides`` and
``evaluate-images`` run such a file through TFLite. The trained ``.keras`` file is only read.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import warnings
from pathlib import Path

from bloodcell.common.cli_args import positive_int
from bloodcell.common.errors import UserError

log = logging.getLogger("bloodcell")


def add_parser(sub) -> None:
    """``bloodcell quantize``."""
    p = sub.add_parser("quantize", help="convert a trained detector to int8 TFLite",
                       description="Post-training full-integer quantisation of a trained "
                       "detector, calibrated on the first --tiles tiles of train or valid "
                       "shards (never the test split). Writes a new .keras file holding the "
                       "detector, its card and the int8 TFLite model; detect, evaluate, "
                       "evaluate-slides and evaluate-images run such a file through TFLite. "
                       "The trained model is only read.")
    p.add_argument("model", type=Path, help="trained detector (models/detector.keras)")
    p.add_argument("--calibration", type=Path, nargs="+", required=True,
                   help="train or valid shard folders (data/synth/train-0 ..., or "
                   "data/real_tiles for real smears), read in order")
    p.add_argument("--out", type=Path, required=True,
                   help="the int8 model to write, a new .keras file (models/detector-int8.keras)")
    p.add_argument("--tiles", type=positive_int, default=200,
                   help="calibration tiles: the first of the folders, in order (default 200)")
    p.add_argument("--float-output-conv", action="store_true",
                   help="keep the output convolution (conv24) in float32: closer boxes "
                   "(mAP@[.5:.95]) for a few percent of speed")
    p.set_defaults(main=main)


def check_args(a: argparse.Namespace) -> None:
    """UserError, before anything is read at length, for a bad path or a test-split folder."""
    if not a.model.is_file():
        raise UserError(f"{a.model} does not exist: train first (snakemake) or give the path "
                        "of a models/detector.keras")
    if a.out.suffix != ".keras":
        raise UserError(f"--out {a.out}: give a .keras file name (models/detector-int8.keras)")
    if a.out.resolve() == a.model.resolve():
        raise UserError(f"--out {a.out} is the model itself; give a new file name "
                        "(models/detector-int8.keras)")
    for folder in a.calibration:
        if folder.name.startswith("test-"):
            raise UserError(f"--calibration {folder}: a test-split shard; calibrate on train "
                            "or valid shards, so the test split stays unseen")
        if not (folder / "images.tfrecord").is_file():
            raise UserError(f"--calibration {folder}: no images.tfrecord; give shard folders "
                            "such as data/synth/train-0")


def main(a: argparse.Namespace) -> None:
    """Quantise ``a.model`` on the calibration tiles and write ``a.out``."""
    from bloodcell.common.tf_threads import set_tf_threads
    from bloodcell.dataset.tfrecords import record_files
    from bloodcell.model import quantize
    from bloodcell.model.card import file_sha256, shard_lineage
    from bloodcell.model.inference import load_detector
    from bloodcell.model.tflite_entry import read_flatbuffer, write_with_flatbuffer

    check_args(a)
    if read_flatbuffer(a.model) is not None:
        raise UserError(f"{a.model} is already quantised; give the trained float model")
    if a.out.exists() and (a.out.is_dir() or read_flatbuffer(a.out) is None):
        raise UserError(f"--out {a.out} exists and was not made by `bloodcell quantize`; give "
                        "a new file name, or delete it yourself")
    set_tf_threads()
    net = load_detector(a.model)
    try:
        tiles = quantize.calibration_tiles(record_files(a.calibration), a.tiles)
    except ValueError as e:
        raise UserError(f"--calibration: {e}; lower --tiles or add shard folders") from None
    with warnings.catch_warnings():  # the converter's note on the uint8 input's statistics:
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")  # scale 1, by design
        flatbuffer = quantize.to_tflite(net, tiles, "int8", a.float_output_conv)
    write_with_flatbuffer(a.model, a.out, flatbuffer, {
        "mode": "int8", "float_output_conv": bool(a.float_output_conv),
        "sha256": hashlib.sha256(flatbuffer).hexdigest(),
        "calibration": {"tiles": int(len(tiles)),
                        "inputs": [shard_lineage(f) for f in a.calibration]},
        "source_sha256": file_sha256(a.model)})
    log.info("%s: int8 TFLite (%.1f MB flatbuffer, %d calibration tiles%s) -> %s", a.model,
             len(flatbuffer) / 1e6, len(tiles),
             ", output conv float" if a.float_output_conv else "", a.out)
