"""Which runtime runs a detector file: TensorFlow for a trained ``.keras`` model, TFLite for
one that ``bloodcell quantize`` made (it carries an int8 flatbuffer, bloodcell.model.tflite_entry).
Detection and the evaluations load models here; training never does, so its stages do not
depend on the TFLite code. Test-time augmentation (``DecodeConfig.tta``) wraps either one.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from bloodcell.common.errors import UserError
from bloodcell.common.tf_threads import cpu_threads
from bloodcell.model.decode import DecodeConfig
from bloodcell.model.inference import TileFn, load_detector, tile_detector
from bloodcell.model.quantize import TFLiteRunner, tflite_tile_detector
from bloodcell.model.tflite_entry import read_flatbuffer
from bloodcell.model.tta import VIEWS, ViewFusion

log = logging.getLogger("bloodcell")


def tile_function(path: Path, anchors: tuple[tuple[float, float], ...],
                  cfg: DecodeConfig) -> TileFn:
    """The :func:`tile_detector` of a detector file: through TFLite when the file carries a
    flatbuffer (``bloodcell quantize``, bloodcell.model.tflite_entry), else the Keras model.
    Either way: tiles (B, 224, 224, 3) uint8 RGB -> numpy NMS results. With ``cfg.tta`` it is a
    :class:`ViewFusion` (whole slides then fuse whole-image views,
    bloodcell.detect.whole_smear.detect_slide)."""
    if cfg.tta not in VIEWS:
        raise UserError(f"tta {cfg.tta!r} is not one of {', '.join(VIEWS)}")
    views = VIEWS[cfg.tta]
    per_view = replace(cfg, tta="none")
    if Path(path).suffix == ".keras" and (flatbuffer := read_flatbuffer(path)) is not None:
        log.info("%s: running its int8 TFLite model", path)
        fn = tflite_tile_detector(TFLiteRunner(flatbuffer, cpu_threads()), anchors, per_view)
    else:
        fn = tile_detector(load_detector(path), anchors, per_view)
    if views == 1:
        return fn
    log.info("test-time augmentation: %s (%d views)", cfg.tta, views)
    return ViewFusion(fn, views, cfg.score_threshold)
