"""Drawing boxes and class names on images for contact sheets (BGR, boxes x, y, w, h px)."""

from __future__ import annotations

import cv2
import numpy as np

from bloodcell.common.classes import RBC_IDX, label_name

CLASS_COLOURS_BGR = (
    (255, 255, 0), (128, 128, 0), (190, 190, 250), (0, 128, 128), (128, 0, 0), (255, 0, 0),
    (0, 225, 255), (255, 0, 255), (0, 0, 255), (0, 255, 0),
)
"""The original project's class colours (BGR), by class index."""
UNTYPED_COLOUR_BGR = (255, 255, 255)
"""White: a white cell of unknown type (label -1)."""


def draw_boxes(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               names: bool = True) -> np.ndarray:
    """A copy of a BGR image with each (x, y, w, h) box and its class name drawn."""
    out = img.copy()
    for (x, y, w, h), c in zip(np.asarray(boxes, int), np.asarray(classes, int)):
        colour = CLASS_COLOURS_BGR[c] if c >= 0 else UNTYPED_COLOUR_BGR
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, 1)
        if names and c not in RBC_IDX:
            cv2.putText(out, label_name(c)[:5], (x + 1, max(y + 8, 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.28, colour, 1, cv2.LINE_AA)
    return out
