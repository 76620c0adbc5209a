"""Whole-slide detection logic with a stand-in detector that finds coloured rectangles.

The stand-in behaves like the trained detector at tile borders: a white cell cut by the tile
edge comes back as partialWBC (class 5) with its clipped box, any other cell as its visible part.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bloodcell.slide import (
    SlideConfig,
    class_nms,
    detect_slide,
    meet_across_seam,
    pad_to_tile,
    tile_origins,
)

GREY = (200, 200, 200)


def colour(k: int) -> tuple[int, int, int]:
    return (10 * (k + 1), 100, 50)


def fake_detect(tiles: np.ndarray, cut_as_partial: bool = True, infected_left: bool = False):
    """Boxes (y1, x1, y2, x2) of every solid-colour rectangle per tile, NMS-style padded.
    ``cut_as_partial`` False: a cut white cell keeps its type (a detector fooled by the cut);
    ``infected_left``: an RBC cut by the tile's right edge is called infected."""
    out = []
    for tile in tiles:
        found = []
        for k in range(10):
            mask = np.all(tile == colour(k), axis=-1).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, _area in stats[1:n]:
                cut = x == 0 or y == 0 or x + w == 224 or y + h == 224
                cls = 5 if (k < 5 and cut and cut_as_partial) else k
                if infected_left and k == 9 and x + w == 224:
                    cls = 8
                found.append(((y, x, y + h, x + w), 0.9, cls))
        out.append(found)
    size = max(1, max(len(f) for f in out))
    boxes = np.zeros((len(tiles), size, 4), np.float32)
    scores = np.zeros((len(tiles), size), np.float32)
    classes = np.zeros((len(tiles), size), np.int32)
    for i, found in enumerate(out):
        for j, (b, s, c) in enumerate(found):
            boxes[i, j], scores[i, j], classes[i, j] = b, s, c
    return boxes, scores, classes, np.array([len(f) for f in out])


def scene(width: int, height: int, cells: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = GREY
    for k, x, y, w, h in cells:
        img[y:y + h, x:x + w] = colour(k)
    return img


def boxes_of(dets, cls: int) -> list[list[float]]:
    part = dets[dets["class_idx"] == cls]
    return part[["x", "y", "w", "h"]].round(1).values.tolist()


def test_tiles_cover_any_size_with_a_far_edge_tile():
    assert tile_origins(1000, 224) == [0, 224, 448, 672, 776]
    assert tile_origins(224, 224) == [0]
    assert tile_origins(1000, 112)[-1] == 776
    small = pad_to_tile(np.zeros((100, 300, 3), np.uint8))
    assert small.shape == (224, 300, 3)


def test_a_white_cell_on_a_seam_is_re_detected_whole_by_the_second_pass():
    img = scene(1000, 700, [(2, 184, 300, 80, 80)])  # neutrophil across the x = 224 seam
    with_pass = detect_slide(fake_detect, img, SlideConfig())
    assert boxes_of(with_pass, 2) == [[184, 300, 80, 80]]
    assert len(with_pass) == 1
    without = detect_slide(fake_detect, img, SlideConfig(second_pass=False))
    assert boxes_of(without, 5) == [[184, 300, 80, 80]]  # halves joined, still partial
    assert boxes_of(without, 2) == []


def test_a_partial_white_cell_at_the_slide_border_stays_partial():
    img = scene(600, 500, [(3, 0, 100, 40, 70)])
    dets = detect_slide(fake_detect, img, SlideConfig())
    assert boxes_of(dets, 5) == [[0, 100, 40, 70]]


def test_cells_cut_by_seams_are_counted_once():
    cells = [(9, 210, 50, 30, 30),      # healthy RBC across x = 224
             (8, 500, 210, 32, 30),     # infected RBC across y = 224
             (9, 440, 440, 20, 20),     # RBC at a corner of four tiles
             (6, 100, 214, 20, 20),     # thrombocyte across y = 224
             (9, 600, 600, 30, 30)]     # RBC inside one tile
    img = scene(1000, 1000, cells)
    dets = detect_slide(fake_detect, img, SlideConfig())
    assert sorted(boxes_of(dets, 9)) == [[210, 50, 30, 30], [440, 440, 20, 20], [600, 600, 30, 30]]
    assert boxes_of(dets, 8) == [[500, 210, 32, 30]]
    assert boxes_of(dets, 6) == [[100, 214, 20, 20]]


def test_neighbouring_cells_in_one_tile_are_not_joined():
    img = scene(448, 448, [(9, 20, 20, 30, 30), (9, 51, 20, 30, 30)])  # 1 px apart, one tile
    dets = detect_slide(fake_detect, img, SlideConfig())
    assert len(dets) == 2


def test_images_smaller_than_a_tile_and_of_odd_sizes():
    img = scene(150, 90, [(9, 10, 10, 30, 30), (4, 100, 40, 40, 50)])
    dets = detect_slide(fake_detect, img, SlideConfig())
    assert boxes_of(dets, 9) == [[10, 10, 30, 30]]
    assert boxes_of(dets, 4) == [[100, 40, 40, 50]]
    odd = scene(1301, 899, [(0, 1250, 850, 51, 49)])
    assert boxes_of(detect_slide(fake_detect, odd, SlideConfig()), 5) == [[1250, 850, 51, 49]]


def test_seam_meeting_needs_a_seam_and_overlap_along_it():
    seams = ([0, 224, 448], [0, 224, 448])
    assert meet_across_seam(np.array([200, 10, 24, 30]), np.array([224, 12, 10, 30]), 6, seams)
    assert not meet_across_seam(np.array([100, 10, 24, 30]), np.array([124, 12, 10, 30]), 6,
                                seams)
    assert not meet_across_seam(np.array([200, 10, 24, 30]), np.array([224, 60, 10, 30]), 6,
                                seams)


def test_class_nms_drops_overlaps_and_contained_boxes_of_one_class_only():
    import pandas as pd

    dets = pd.DataFrame({"class_idx": [9, 9, 9, 6], "score": [0.9, 0.8, 0.7, 0.6], "cut": False,
                         "x": [0, 2, 5, 0], "y": [0, 2, 5, 0], "w": [30, 30, 10, 30],
                         "h": [30, 30, 10, 30]})
    kept = class_nms(dets, 0.3)
    assert list(kept.index) == [0, 3]


@pytest.mark.parametrize("stride", [224, 112])
def test_overlapping_tiles_give_the_same_cells(stride):
    img = scene(700, 700, [(9, 300, 300, 30, 30), (2, 400, 100, 70, 70)])
    dets = detect_slide(fake_detect, img, SlideConfig(stride=stride))
    assert boxes_of(dets, 9) == [[300, 300, 30, 30]]
    assert boxes_of(dets, 2) == [[400, 100, 70, 70]]


def test_a_white_cell_cut_but_called_by_a_type_is_re_detected_too():
    img = scene(1000, 700, [(4, 400, 184, 90, 80)])  # monocyte across y = 224
    detect = lambda t: fake_detect(t, cut_as_partial=False)  # noqa: E731
    assert boxes_of(detect_slide(detect, img, SlideConfig()), 4) == [[400, 184, 90, 80]]


def test_an_rbc_cut_by_a_seam_is_infected_when_one_part_is():
    img = scene(700, 700, [(9, 210, 50, 30, 30), (9, 600, 600, 30, 30)])
    detect = lambda t: fake_detect(t, infected_left=True)  # noqa: E731
    dets = detect_slide(detect, img, SlideConfig())
    assert boxes_of(dets, 8) == [[210, 50, 30, 30]]
    assert boxes_of(dets, 9) == [[600, 600, 30, 30]]
