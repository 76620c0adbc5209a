"""The Python API for notebooks and scripts: a trained detector applied to smear images.

    from bloodcell import Detector
    det = Detector.load("models/detector.keras")
    cells = det.detect("smear.tif", rbc_diameter=48)      # or an RGB numpy array
    Detector.summary(cells)["parasitemia_pct"]

``detect`` returns a pandas DataFrame, one row per cell, sorted by y, x: ``class_name`` (as a
person reads it: "Healthy RBC", "Infected RBC", "Neutrophil"...), ``class_idx`` (0..9, see
bloodcell.common.classes), ``score`` (0..1) and the box ``x``, ``y``, ``w``, ``h`` in the input
image's pixels, x, y its top-left corner. With ``outlines=True`` two columns follow:
``outline``, the cell's outline as a closed ring, a (K, 2) array of x, y input px (threshold
segmentation in its box, bloodcell.detect.outlines), and ``measurements``, a dict (``Area px^2``,
``Perimeter px``, ``Mean OD``; µm and µm² with ``pixel_size`` in µm per input px).
``bloodcell detect`` is a thin layer over this class.

Images: a path (PNG, JPEG, BMP, TIFF of any size, read region by region as
smear_reader.open_smear does) or a numpy array (H, W, 3) uint8 in **RGB** order (what PIL,
scikit-image and matplotlib give; OpenCV's BGR must be flipped first).
Scale: the model sees cells at the size it was trained on (its card's RBC diameter, 34 px);
``rbc_diameter`` (px of a typical red cell in the image, or ``"auto"`` to estimate it) or
``scale`` (a resize factor) brings the image there, and boxes come back in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bloodcell.common.errors import UserError
from bloodcell.common.param_defaults import param_default

CELL_COLUMNS = ("class_name", "class_idx", "score", "x", "y", "w", "h")


def check_scale(scale: float, what: str) -> None:
    """UserError unless a resize factor to the model's scale lies in 0.05..20 (``what`` names
    where it came from)."""
    if not (np.isfinite(scale) and 0.05 <= scale <= 20):
        raise UserError(f"{what}: scale {scale:g} is outside 0.05..20: check --scale/"
                        "--rbc-diameter")


def with_shapes(cells: pd.DataFrame, view, factor: float,
                pixel_size: float | None) -> pd.DataFrame:
    """``cells`` plus ``outline`` and ``measurements`` (bloodcell.detect.outlines) from ``view``."""
    from bloodcell.detect.outlines import cell_shapes

    shapes = cell_shapes(view, cells[["x", "y", "w", "h"]].to_numpy(), factor, pixel_size)
    return cells.assign(outline=[s.ring for s in shapes],
                        measurements=[s.measurements for s in shapes])


@dataclass
class Detector:
    """A loaded detector with its decoding and whole-slide settings (see the module doc)."""

    path: Path
    detect_tiles: object = field(repr=False)
    anchors: tuple
    slide: object
    rbc_diameter_px: float

    @classmethod
    def load(cls, path: str | Path,
             score_threshold: float = param_default("decode.score_threshold"),
             nms_iou: float = param_default("decode.nms_iou"),
             anchors=None, slide=None, tta: str = param_default("decode.tta")) -> Detector:
        """Load a trained detector ``.keras`` file (one made by ``bloodcell quantize`` runs
        through TFLite). ``anchors``: None takes the model's own (its card); ``slide``: a
        bloodcell.detect.whole_smear.SlideConfig (default: tiles overlapping by
        DEFAULT_OVERLAP_PX, second pass on); ``tta``: none, flips or dihedral
        (bloodcell.model.tta). UserError for a missing or foreign file."""
        from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
        from bloodcell.common.tf_threads import set_tf_threads
        from bloodcell.common.tile import MODEL_RBC_PX
        from bloodcell.detect.whole_smear import DEFAULT_OVERLAP_PX, SlideConfig
        from bloodcell.model.card import model_anchors, model_rbc_diameter
        from bloodcell.model.decode import DecodeConfig
        from bloodcell.model.runtime import tile_function

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist: train first (snakemake) or give the path "
                            "of a models/detector.keras")
        set_tf_threads()
        own = model_anchors(path, anchors, ORIGINAL_ANCHORS)
        fn = tile_function(path, own, DecodeConfig(score_threshold, nms_iou, tta=tta))
        return cls(path, fn, own, slide or SlideConfig(overlap=DEFAULT_OVERLAP_PX),
                   model_rbc_diameter(path, MODEL_RBC_PX))

    def scale_for(self, rbc_diameter: float | None, scale: float | None) -> float:
        """The resize factor to the model's scale from a red-cell diameter (px) or a scale."""
        if rbc_diameter is not None and scale is not None:
            raise ValueError("give rbc_diameter or scale, not both")
        if rbc_diameter is not None:
            from bloodcell.detect.smear_reader import scale_from_rbc_diameter

            return scale_from_rbc_diameter(rbc_diameter, self.rbc_diameter_px)
        return 1.0 if scale is None else float(scale)

    def detect(self, image: str | Path | np.ndarray, rbc_diameter: float | str | None = None,
               scale: float | None = None, outlines: bool = False,
               pixel_size: float | None = None) -> pd.DataFrame:
        """Cells of one image (a path, or an RGB uint8 array): the module doc's DataFrame."""
        shape = {"outlines": outlines, "pixel_size": pixel_size}
        if isinstance(image, np.ndarray):
            return self.detect_array(image, rbc_diameter, scale, **shape)
        from bloodcell.detect.smear_reader import open_smear

        with open_smear(Path(image)) as smear:
            return self.detect_smear(smear, rbc_diameter, scale, **shape)

    def detect_array(self, rgb: np.ndarray, rbc_diameter=None, scale=None,
                     **shape) -> pd.DataFrame:
        """Cells of an in-memory (H, W, 3) uint8 RGB image."""
        from bloodcell.detect.smear_reader import resize_smear

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} "
                             f"{rgb.shape}")
        if rbc_diameter == "auto":
            rbc_diameter = self.estimate_rbc_diameter("image", rgb[:, :, ::-1])
        factor = self.scale_for(rbc_diameter, scale)
        view = np.ascontiguousarray(resize_smear(rgb, factor))
        return self.cells(view, factor, rgb.shape[1], rgb.shape[0], **shape)

    def detect_smear(self, smear, rbc_diameter=None, scale=None, window=4096,
                     **shape) -> pd.DataFrame:
        """Cells of a smear opened with smear_reader.open_smear, read region by region; ``"auto"``
        measures the red cells on the centre ``window`` px."""
        if rbc_diameter == "auto":
            rbc_diameter = self.smear_rbc_diameter(smear, window)
        factor = self.scale_for(rbc_diameter, scale)
        return self.cells(smear.scaled(factor), factor, smear.width, smear.height, **shape)

    def smear_rbc_diameter(self, smear, window: int = 4096) -> float:
        """A smear's typical red-cell diameter (px), estimated on its centre ``window`` px."""
        w, h = min(smear.width, window), min(smear.height, window)
        x0, y0 = (smear.width - w) // 2, (smear.height - h) // 2
        return self.estimate_rbc_diameter(str(smear.path), smear.region(x0, y0, x0 + w, y0 + h))

    def estimate_rbc_diameter(self, name: str, bgr: np.ndarray) -> float:
        """The image's typical red-cell diameter (px), estimated (bloodcell.detect.rbc_size);
        UserError naming ``name`` when no estimate is possible."""
        from bloodcell.detect.rbc_size import require_estimate

        return require_estimate(name, bgr, 1.0, "auto")[1]

    def cells(self, view, factor: float, width: int, height: int, outlines: bool = False,
              pixel_size: float | None = None) -> pd.DataFrame:
        """Detect on an image at the model's scale (``view``: array or ScaledSmear, RGB) and
        return the cells in the input's pixels (``factor``: input -> view), with their
        outlines and measurements when ``outlines``."""
        from bloodcell.common.classes import DISPLAY_NAMES
        from bloodcell.detect.whole_smear import clip_to_image, detect_slide

        check_scale(factor, "detector")
        found = detect_slide(self.detect_tiles, view, self.slide)
        found = found.assign(**{c: found[c] / factor for c in ("x", "y", "w", "h")})
        found = clip_to_image(found, width, height)
        found = found.sort_values(["y", "x", "class_idx"], kind="mergesort")
        found["class_name"] = [DISPLAY_NAMES[int(c)] for c in found["class_idx"]]
        found = found[list(CELL_COLUMNS)].reset_index(drop=True)
        return with_shapes(found, view, factor, pixel_size) if outlines else found

    @staticmethod
    def summary(cells: pd.DataFrame) -> dict:
        """Counts per class (``n_healthy_rbc``...), ``n_wbc``, ``n_rbc``, the WBC differential
        (``pct_neutrophil``... in %) and ``parasitemia_pct`` of one image's cells (NaN where
        undefined): the columns of detect's summary.csv."""
        from bloodcell.detect.outputs import summary_row

        row = summary_row("image", cells.assign(image_id="image"))
        row.pop("image_id")
        return row
