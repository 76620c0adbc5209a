"""Pure mask and scale functions on drawn shapes with known answers."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bloodcell.dataset.masks import (
    cell_on_black,
    cell_on_light,
    components,
    fill_holes,
    touches_border,
)
from bloodcell.dataset.scale import crop, mask_box, rescale


def ring(size=100, r_out=30, r_in=10):
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (50, 50), r_out, 1, -1)
    cv2.circle(m, (50, 50), r_in, 0, -1)
    return m.astype(bool)


def test_fill_holes_fills_the_centre_but_not_the_outside():
    filled = fill_holes(ring())
    assert filled[50, 50] and not filled[0, 0]
    assert filled.sum() > ring().sum()


def test_components_sorted_largest_first_and_filtered_by_area():
    m = np.zeros((60, 100), bool)
    m[5:15, 5:15] = True  # 100 px
    m[20:50, 40:90] = True  # 1500 px
    m[55, 0] = True  # 1 px speck
    found = components(m, min_area=50)
    assert [c.sum() for c, _ in found] == [1500, 100]
    assert found[0][1] == (40, 20, 50, 30)


def test_touches_border():
    assert touches_border((0, 5, 10, 10), (100, 100))
    assert touches_border((90, 5, 10, 10), (100, 100))
    assert not touches_border((1, 1, 10, 10), (100, 100))


@pytest.mark.parametrize("threshold", [12, "otsu"])
def test_cell_on_black_recovers_a_disk_with_a_dark_parasite(threshold):
    img = np.zeros((120, 120, 3), np.uint8)
    cv2.circle(img, (60, 60), 50, (170, 150, 210), -1)
    cv2.circle(img, (60, 60), 6, (90, 20, 90), -1)
    img[2, 2] = (200, 200, 200)  # isolated speck
    mask = cell_on_black(img, threshold, min_area=100)
    truth = np.zeros((120, 120), np.uint8)
    cv2.circle(truth, (60, 60), 50, 1, -1)
    iou = (mask & truth.astype(bool)).sum() / (mask | truth.astype(bool)).sum()
    assert iou > 0.97 and not mask[2, 2]


def test_cell_on_black_returns_none_for_an_empty_image():
    assert cell_on_black(np.zeros((50, 50, 3), np.uint8), 12, 10) is None


def test_cell_on_light_picks_the_central_cell_not_the_intruding_neighbour():
    img = np.full((100, 100, 3), 230, np.uint8)
    cv2.circle(img, (50, 50), 25, (160, 110, 200), -1)
    cv2.circle(img, (50, 50), 8, (200, 190, 225), -1)  # central pallor
    cv2.circle(img, (-5, 5), 20, (160, 110, 200), -1)  # neighbour cut by the crop
    mask = cell_on_light(img, min_area=50)
    assert mask[50, 50] and mask[50, 30] and not mask[2, 2]


def test_mask_box_pads_and_clips():
    m = np.zeros((40, 50), bool)
    m[10:20, 1:30] = True
    assert mask_box(m, 3) == (0, 7, 33, 16)
    assert crop(np.arange(2000).reshape(40, 50), (0, 7, 33, 16)).shape == (16, 33)


@settings(max_examples=30, deadline=None)
@given(w=st.integers(5, 300), h=st.integers(5, 300), factor=st.floats(0.1, 2.0))
def test_rescale_sizes_round_to_the_nearest_pixel(w, h, factor):
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.ones((h, w), bool)
    small, small_mask = rescale(img, mask, factor)
    assert small.shape[:2] == small_mask.shape == (max(1, round(h * factor)),
                                                   max(1, round(w * factor)))
    assert small_mask.dtype == bool and small_mask.all()
