"""Whole-slide detection logic with a stand-in detector that finds coloured rectangles.

The stand-in behaves like the trained detector at tile borders: a white cell cut by the tile
edge comes back as partialWBC (class 5) with its clipped box, any other cell as its visible part.
"""

from __future__ import annotations

import argparse
import dataclasses

import cv2
import numpy as np
import pandas as pd
import pytest

from bloodcell.common.boxes import box_iou, candidate_pairs, neighbours, pair_ios, pair_iou
from bloodcell.common.detection_options import add_slide
from bloodcell.detect.whole_smear import (
    KIND,
    SlideConfig,
    class_nms,
    detect_slide,
    meet_across_seam,
    pad_to_tile,
    ranked_by_kind,
    seam_lines,
    seam_pairs,
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


@pytest.mark.parametrize("views", [0, 4])
def test_both_passes_from_one_tiling_equal_two_separate_runs(views):
    """detect_slide_passes (evaluate_slides) gives detect_slide's frames with and without the
    second pass, and tiles the slide (each view of it) once instead of twice."""
    from bloodcell.detect.whole_smear import detect_slide_passes
    from bloodcell.model.tta import ViewFusion

    img = scene(1000, 700, [(2, 184, 300, 80, 80), (9, 500, 210, 36, 36), (4, 700, 640, 60, 60)])
    seen = []

    def counting(tiles):
        seen.append(len(tiles))
        return fake_detect(tiles)

    def detector():
        return ViewFusion(counting, views, 0.2) if views else counting

    separate = {p: detect_slide(detector(), img, SlideConfig(second_pass=p)) for p in (True, False)}
    tiles_separately, seen[:] = sum(seen), []
    both = detect_slide_passes(detector(), img, SlideConfig())
    assert set(both) == {True, False}
    for p in (True, False):
        pd.testing.assert_frame_equal(both[p], separate[p])
    assert views or not both[True].equals(both[False])  # the second pass changed something
    assert sum(seen) < 0.6 * tiles_separately


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


def test_whole_neighbours_on_either_side_of_a_seam_are_not_joined():
    # two RBCs 3 px from the seam x = 224, neither cut by a tile edge: the old seam join made
    # them one box (two GT cells missed); only boxes a tile edge cut are joined now
    img = scene(448, 448, [(9, 187, 100, 34, 34), (9, 227, 100, 34, 34)])
    dets = detect_slide(fake_detect, img, SlideConfig())
    assert sorted(boxes_of(dets, 9)) == [[187, 100, 34, 34], [227, 100, 34, 34]]


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


# ------------------------------------------------------------------ the merge at smear scale


def all_pairs_class_nms(dets: pd.DataFrame, iou: float, inside: float = 0.7) -> pd.DataFrame:
    """The all-pairs class_nms before the grid (issue 12), kept as the reference."""
    keep = []
    for part in ranked_by_kind(dets):
        b = part[["x", "y", "w", "h"]].to_numpy(float)
        overlap = box_iou(b, b)
        area = b[:, 2] * b[:, 3]
        inter = overlap * (area[:, None] + area[None, :]) / (1 + overlap)
        contained = inter / np.maximum(area[None, :], 1e-6)  # [kept, other]: share of other
        alive = np.ones(len(part), bool)
        for i in range(len(part)):
            if alive[i]:
                later = np.arange(len(part)) > i
                alive &= ~(later & ((overlap[i] > iou) | (contained[i] > inside)))
        keep += list(part.index[alive])
    return dets.loc[sorted(keep)]


def clustered_dets(seed: int, n: int = 10_000) -> pd.DataFrame:
    """``n`` detections in clusters of ~5 on a 6000 px square: RBC-, WBC- and platelet-sized
    boxes, half on whole px, exact duplicates, boxes nested in others, scores on a 0.1 grid
    (many ties), a fifth cut by a tile edge, and a shuffled, gappy index."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 6000, (n // 5, 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 8, (n, 2))
    side = rng.choice([8.0, 20, 35, 35, 35, 80], n)[:, None] * rng.uniform(0.7, 1.3, (n, 2))
    b = np.c_[xy, side]
    whole = rng.random(n) < 0.5
    b[whole] = b[whole].round()
    dup = rng.choice(n, n // 20, replace=False)
    b[dup[1:]] = b[dup[:-1]]  # copies of other boxes
    nest = rng.choice(n, n // 20, replace=False)
    b[nest[1:], :2] = b[nest[:-1], :2] + 0.2 * b[nest[:-1], 2:]
    b[nest[1:], 2:] = 0.6 * b[nest[:-1], 2:]
    p = [0.05] * 6 + [0.15, 0.15, 0.1, 0.3]
    return pd.DataFrame({
        "class_idx": rng.choice(10, n, p=p), "score": rng.integers(1, 11, n) / 10,
        "x": b[:, 0], "y": b[:, 1], "w": b[:, 2], "h": b[:, 3], "cut": rng.random(n) < 0.2,
    }, index=rng.permutation(n) * 3 + 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_class_nms_equals_the_all_pairs_version_on_10000_boxes(seed):
    dets = clustered_dets(seed)
    for iou, inside in ((0.3, 0.7), (0.1, 0.5)):
        kept = class_nms(dets, iou, inside)
        expected = all_pairs_class_nms(dets, iou, inside)
        assert list(kept.index) == list(expected.index)
        assert 0.3 * len(dets) < len(kept) < 0.9 * len(dets)  # many merges, many survivors


def test_ios_merge_removes_a_small_box_mostly_inside_a_big_one():
    dets = pd.DataFrame({"class_idx": [9, 9, 6], "score": [0.9, 0.8, 0.7], "cut": False,
                         "x": [0.0, 25, 25], "y": [0.0, 25, 25], "w": [40.0, 20, 20],
                         "h": [40.0, 20, 20]})
    # small box: 15 x 15 of its 20 x 20 inside: IOS 0.56, IoU 0.13, 56 % < 70 % contained
    assert list(class_nms(dets, 0.5, metric="ios").index) == [0, 2]  # other kind stays
    assert list(class_nms(dets, 0.5, metric="iou").index) == [0, 1, 2]
    assert list(class_nms(dets, 0.6, metric="ios").index) == [0, 1, 2]
    with pytest.raises(ValueError, match="merge metric"):
        class_nms(dets, 0.5, metric="giou")
    with pytest.raises(ValueError, match="merge_metric"):
        SlideConfig(merge_metric="giou")


def test_pair_measures_and_grid_candidates_match_all_pairs():
    rng = np.random.default_rng(5)
    b = np.c_[rng.uniform(0, 400, (300, 2)).round(), rng.uniform(0, 50, (300, 2)).round()]
    b[0] = [5, 5, 3000, 200]  # spans many cells: compared with every box directly
    b[1, 0], b[2, 2] = np.nan, np.inf
    i, j = np.triu_indices(len(b), 1)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(pair_iou(b[i], b[j]), box_iou(b, b)[i, j])
        ios = pair_ios(b[i], b[j])
    assert ((ios >= 0) & (ios <= 1)).all()
    assert ios[(i == 0) & (j == 3)] == pytest.approx(1.0)  # b[3] lies inside b[0]
    for margin in (0.0, 6.0):
        ci, cj = candidate_pairs(b, margin)
        assert (ci < cj).all() and len(set(zip(ci, cj))) == len(ci)
        x0, y0 = b[:, 0] - margin, b[:, 1] - margin
        x1, y1 = b[:, 0] + b[:, 2] + margin, b[:, 1] + b[:, 3] + margin
        touch = (x0[i] <= x1[j]) & (x0[j] <= x1[i]) & (y0[i] <= y1[j]) & (y0[j] <= y1[i])
        assert set(zip(i[touch], j[touch])) <= set(zip(ci, cj))
        assert len(ci) < 0.1 * len(i)  # far fewer than all pairs
    indptr, idx = neighbours(b)
    ci, cj = candidate_pairs(b)
    assert sorted(idx[indptr[7]:indptr[8]]) == sorted([*cj[ci == 7], *ci[cj == 7]])


# ------------------------------------------------------------------ seams at smear scale


def all_pairs_near_seam(xywh: np.ndarray, gap: float, seams) -> np.ndarray:
    """near_seam before issue 12 (a boxes x seams matrix), kept as the reference."""
    near = np.zeros(len(xywh), bool)
    for axis in (0, 1):
        lines = np.asarray(seams[axis], float)
        if lines.size == 0:
            continue
        for side in (xywh[:, axis], xywh[:, axis] + xywh[:, axis + 2]):
            near |= (np.abs(side[:, None] - lines[None, :]) <= gap).any(axis=1)
    return near


def brute_seam_pairs(dets: pd.DataFrame, classes, gap: float, seams) -> list[tuple[int, int]]:
    """seam_pairs before issue 12 (every box against all others), kept as the reference."""
    pairs = []
    sub = dets[dets["class_idx"].isin(classes)]
    xywh = sub[["x", "y", "w", "h"]].to_numpy(float)
    keep = all_pairs_near_seam(xywh, gap, seams)
    sub, xywh = sub[keep], xywh[keep]
    cls, tile, rows = KIND[sub["class_idx"].to_numpy()], sub["tile"].to_numpy(), \
        sub.index.to_numpy()
    x0, y0 = xywh[:, 0] - gap, xywh[:, 1] - gap
    x1, y1 = xywh[:, 0] + xywh[:, 2] + gap, xywh[:, 1] + xywh[:, 3] + gap
    for i in range(len(sub)):
        near = np.nonzero((cls == cls[i]) & (tile != tile[i]) & (np.arange(len(sub)) > i)
                          & (x0 <= x1[i]) & (x0[i] <= x1)
                          & (y0 <= y1[i]) & (y0[i] <= y1))[0]
        pairs += [(int(rows[i]), int(rows[j])) for j in near
                  if meet_across_seam(xywh[i], xywh[j], gap, seams)]
    return pairs


def seam_case(seed: int, n: int = 3000):
    """Detections on a 1500 px square tiled at a random stride: a third anywhere, the rest in
    pairs of parts meeting (or nearly, a quarter exactly on it) across a seam, on whole, half or
    any px, mostly of one class."""
    rng = np.random.default_rng(seed)
    stride = int(rng.choice([224, 176, 112]))
    origins = [(x, y) for y in tile_origins(1500, stride) for x in tile_origins(1500, stride)]
    seams = seam_lines(origins)
    b = np.c_[rng.uniform(0, 1500, (n, 2)), rng.uniform(5, 60, (n, 2))]
    cls = rng.choice([0, 5, 6, 7, 8, 9], n)
    rounding = rng.integers(0, 3, n)
    b[rounding == 0] = b[rounding == 0].round()
    b[rounding == 1] = (2 * b[rounding == 1]).round() / 2
    for k in range(n // 3, n - 1, 2):
        axis = int(rng.integers(0, 2))
        s = float(rng.choice(seams[axis]))
        d = rng.uniform(-8, 8, 2).round(int(rng.integers(0, 3))) * (rng.random() < 0.75)
        b[k, axis] = s - b[k, axis + 2] + d[0]  # ends near the seam (or on it)
        b[k + 1, axis] = s + d[1]  # starts near it
        b[k + 1, 1 - axis] = b[k, 1 - axis] + round(rng.uniform(-30, 30))
        cls[k + 1] = cls[k] if rng.random() < 0.8 else cls[k + 1]
    dets = pd.DataFrame({"class_idx": cls,
                         "score": 0.9, "x": b[:, 0], "y": b[:, 1], "w": b[:, 2], "h": b[:, 3],
                         "tile": rng.integers(0, 4, n)}, index=rng.permutation(n) * 2)
    return dets, seams


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grid_seam_pairs_equal_the_brute_force_ones(seed):
    dets, seams = seam_case(seed)
    for classes, gap in ((tuple(range(10)), 6), ((6, 7, 9), 6.5), ((0, 5, 8), 0)):
        expected = brute_seam_pairs(dets, classes, gap, seams)
        assert seam_pairs(dets, classes, gap, seams) == expected
        assert len(expected) > 20


# ------------------------------------------------------------------ overlapping tiles


def slide_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_slide(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("text, overlap, stride", [
    ("20%", 45, 179), ("0.2", 45, 179), ("48", 48, 176), ("0", 0, 224), ("0.5", 112, 112),
    ("12.5%", 28, 196), ("223", 223, 1)])
def test_overlap_in_px_share_or_percent_sets_the_stride(text, overlap, stride):
    a = slide_args("--overlap", text)  # a share is round(224 * share) px
    assert (a.overlap, a.stride) == (overlap, stride)
    cfg = SlideConfig(a.stride, a.merge_iou, a.adjacency_px, overlap=a.overlap)
    assert cfg.stride == stride


def test_slide_options_default_and_stride_still_works():
    a = slide_args()
    assert (a.stride, a.overlap, a.merge_iou, a.merge_metric, a.adjacency_px) == \
        (179, 45, 0.3, "iou", 6)
    assert (slide_args("--stride", "112").stride, slide_args("--stride", "112").overlap) == \
        (112, None)
    assert slide_args("--merge-metric", "ios").merge_metric == "ios"


@pytest.mark.parametrize("argv, needle", [
    (("--overlap", "224"), "--overlap"), (("--overlap", "-1"), "--overlap"),
    (("--overlap", "1.0"), "--overlap"), (("--overlap", "100%"), "--overlap"),
    (("--overlap", "0.999"), "--overlap"), (("--overlap", "abc"), "--overlap"),
    (("--overlap", "nan"), "--overlap"), (("--overlap", ""), "--overlap"),
    (("--stride", "0"), "--stride"), (("--stride", "225"), "--stride"),
    (("--stride", "112", "--overlap", "48"), "not both"),
    (("--overlap", "48", "--stride", "176"), "not both"),
    (("--merge-metric", "giou"), "--merge-metric"), (("--merge-iou", "-0.1"), "--merge-iou")])
def test_bad_slide_options_give_one_clear_error(argv, needle, capsys):
    with pytest.raises(SystemExit) as err:
        slide_args(*argv)
    assert err.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error" in last and needle in last


def test_slide_config_overlap_sets_the_stride_and_survives_replace():
    cfg = SlideConfig(overlap=48)
    assert cfg.stride == 176
    assert dataclasses.replace(cfg, second_pass=False).stride == 176
    assert SlideConfig(176, overlap=48).stride == 176
    for bad in ({"stride": 100, "overlap": 48}, {"overlap": 224}, {"overlap": -1},
                {"stride": 0}):
        with pytest.raises(ValueError):
            SlideConfig(**bad)


@pytest.mark.parametrize("cfg", [SlideConfig(overlap=48), SlideConfig(overlap=45,
                                                                      merge_metric="ios")])
def test_overlapping_tiles_by_overlap_give_the_same_cells(cfg):
    img = scene(700, 700, [(9, 300, 300, 30, 30), (2, 400, 100, 70, 70)])
    dets = detect_slide(fake_detect, img, cfg)
    assert boxes_of(dets, 9) == [[300, 300, 30, 30]]
    assert boxes_of(dets, 2) == [[400, 100, 70, 70]]
