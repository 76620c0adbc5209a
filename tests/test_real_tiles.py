"""Real tiles: flips and quarter turns keep boxes on their cells, tile edges relabel cut white
cells, the stage writes a synth-format shard with lineage, and training mixes it in."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.real_tiles import PARTIAL, dihedral, pixel_box, tile_objects


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("k", range(8))
def test_every_turn_moves_the_box_with_its_cell(k):
    img = np.zeros((90, 140, 3), np.uint8)
    img[20:35, 30:70] = 255  # a 40x15 box at (30, 20)
    out, boxes = dihedral(img, np.array([[30, 20, 40, 15]]), k)
    assert tuple(int(v) for v in boxes[0]) == tight_box(out[..., 0] > 0)
    assert out.shape[:2] == ((90, 140) if k % 2 == 0 else (140, 90))


def test_tile_edges_keep_whole_cells_and_make_cut_white_cells_partial():
    boxes = np.array([[10, 10, 30, 30],     # RBC inside
                      [210, 10, 30, 30],    # RBC 14 of 30 px inside: under half, dropped
                      [200, 100, 60, 60],   # WBC 24 of 60 px inside: partial
                      [215, 150, 60, 60],   # WBC 9 of 60 px inside (15 %): kept as partial
                      [220, 20, 60, 60]],   # WBC 4 px inside: dropped
                     float)
    labels = np.array([9, 9, 2, -1, 0])
    idx, out, clipped, visible = tile_objects(boxes, labels, 0, 0, 0.5)
    assert idx.tolist() == [0, 2, 3]
    assert out.tolist() == [9, PARTIAL, PARTIAL]
    assert clipped[1].tolist() == [200, 100, 24, 60]
    assert visible[0] == 1.0
    assert pixel_box(np.array([223.6, 10.2, 5.0, 3.0])) == (224, 10, 0, 3)


def test_an_untyped_white_cell_inside_the_tile_keeps_label_minus_one():
    idx, out, _, _ = tile_objects(np.array([[50, 50, 60, 60]], float), np.array([-1]), 0, 0, 0.5)
    assert out.tolist() == [-1]
