"""Test-time augmentation (bloodcell.model.tta): views map boxes back exactly, fusion merges one
cell's boxes across views, and whole slides fuse whole-image views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bloodcell.common.boxes import box_iou
from bloodcell.common.classes import CELL_KIND, CLASS_INDEX
from bloodcell.detect.whole_smear import SlideConfig, detect_slide
from bloodcell.model.tta import (
    BY_CLASS,
    BY_KIND,
    VIEWS,
    ViewFusion,
    boxes_from_view,
    fuse,
    fuse_frames,
    view_of,
)

RBC, INFECTED = CLASS_INDEX["_"], CLASS_INDEX["Infected"]
NEUTRO, BASO = CLASS_INDEX["Neutrophil"], CLASS_INDEX["Basophil"]


def bright_box(image: np.ndarray) -> np.ndarray:
    """x, y, w, h of the pixels above 128 in an (H, W, 3) image (one bright rectangle)."""
    ys, xs = np.nonzero(image[..., 0] > 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)


@pytest.mark.parametrize("k", range(8))
def test_each_view_maps_its_boxes_back_onto_the_original(k):
    image = np.zeros((70, 110, 3), np.uint8)
    image[12:31, 40:47] = 255  # x 40, y 12, w 7, h 19: not symmetric in any view
    view = view_of(image, k)
    assert view.shape[:2] == ((110, 70) if k & 4 else (70, 110))
    back = boxes_from_view(bright_box(view)[None], k, view.shape[1], view.shape[0])
    np.testing.assert_allclose(back[0], [40, 12, 7, 19])


def test_batch_views_equal_image_views():
    tiles = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    for k in range(8):
        batch = view_of(tiles, k, axes=(1, 2))
        for t in range(3):
            np.testing.assert_array_equal(batch[t], view_of(tiles[t], k))


def test_one_cell_seen_in_every_view_becomes_one_box_with_the_mean_score():
    boxes = np.array([[10, 10, 30, 30], [12, 10, 30, 30], [10, 12, 30, 30], [11, 11, 30, 30]],
                     float)
    scores = np.array([0.8, 0.6, 0.4, 0.2])
    b, s, c = fuse(boxes, scores, np.full(4, RBC), np.arange(4), 4)
    assert len(b) == 1 and c[0] == RBC
    assert s[0] == pytest.approx(0.5)
    np.testing.assert_allclose(b[0], (boxes * scores[:, None]).sum(0) / scores.sum())


def test_a_cell_seen_in_one_view_keeps_a_share_of_its_score():
    b, s, _ = fuse(np.array([[10, 10, 30, 30]], float), np.array([0.8]), np.array([RBC]),
                   np.array([2]), 4)
    assert s[0] == pytest.approx(0.2)


def test_views_disagreeing_on_the_type_give_one_cell_of_the_stronger_type():
    boxes = np.array([[50, 50, 60, 60]] * 4, float)
    b, s, c = fuse(boxes, np.array([0.5, 0.4, 0.45, 0.3]), np.array([NEUTRO, BASO, BASO, BASO]),
                   np.arange(4), 4)
    assert len(b) == 1 and c[0] == BASO and s[0] == pytest.approx(0.4125)


def test_different_kinds_of_cell_never_fuse_and_distant_boxes_stay_apart():
    boxes = np.array([[10, 10, 30, 30], [10, 10, 30, 30], [100, 100, 30, 30]], float)
    b, s, c = fuse(boxes, np.array([0.9, 0.9, 0.9]), np.array([RBC, NEUTRO, RBC]),
                   np.zeros(3, int), 1)
    assert len(b) == 3 and sorted(c.tolist()) == sorted([RBC, NEUTRO, RBC])


def test_one_view_counts_once_per_cell():
    """Two boxes of one view on one cell do not add up: the view's best score counts."""
    boxes = np.array([[10, 10, 30, 30], [11, 10, 30, 30]], float)
    _, s, c = fuse(boxes, np.array([0.9, 0.8]), np.array([INFECTED, RBC]), np.zeros(2, int), 1)
    assert len(s) == 1 and s[0] == pytest.approx(0.9) and c[0] == INFECTED


def square_finder(tiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """A stand-in tile detector: one healthy RBC at the bright pixels of each tile, score 0.9
    (the decoder's arrays: boxes y1x1y2x2, scores, classes, valid counts)."""
    boxes = np.zeros((len(tiles), 1, 4), np.float32)
    valid = np.zeros(len(tiles), np.int32)
    for t, tile in enumerate(tiles):
        if (tile[..., 0] > 128).any():
            x, y, w, h = bright_box(tile)
            boxes[t, 0], valid[t] = (y, x, y + h, x + w), 1
    return (boxes, np.full((len(tiles), 1), 0.9, np.float32),
            np.full((len(tiles), 1), RBC, np.float32), valid)


@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_fused_tiles_keep_an_exact_detection_where_it_is(mode):
    tiles = np.zeros((2, 224, 224, 3), np.uint8)
    tiles[0, 20:50, 100:131] = 255
    boxes, scores, classes, valid = ViewFusion(square_finder, VIEWS[mode], 0.2)(tiles)
    assert valid.tolist() == [1, 0]
    np.testing.assert_allclose(boxes[0, 0], [20, 100, 50, 131], atol=1e-4)
    assert scores[0, 0] == pytest.approx(0.9) and classes[0, 0] == RBC


def test_a_whole_slide_fuses_whole_image_views_in_its_own_pixels():
    slide = np.zeros((300, 500, 3), np.uint8)
    slide[200:240, 380:420] = 255  # beyond the first tile in both directions
    cfg = SlideConfig(overlap=45, second_pass=False)
    plain = detect_slide(square_finder, slide, cfg)
    fused = detect_slide(ViewFusion(square_finder, 4, 0.2), slide, cfg)
    assert len(plain) == len(fused) == 1
    np.testing.assert_allclose(fused[["x", "y", "w", "h"]].to_numpy()[0], [380, 200, 40, 40],
                               atol=1e-4)
    assert fused["score"].iloc[0] == pytest.approx(0.9)


def test_fused_scores_at_or_below_the_threshold_are_dropped():
    one = pd.DataFrame({"class_idx": [RBC], "score": [0.6], "x": [0.0], "y": [0.0], "w": [9.0],
                        "h": [9.0]})
    empty = one.iloc[:0]
    assert len(fuse_frames([one, empty, empty, empty], 4, 0.15)) == 0  # 0.6 / 4 = 0.15
    assert len(fuse_frames([one, one, empty, empty], 4, 0.15)) == 1


def test_detect_with_tta_is_deterministic_and_says_so(snakemake_run, tmp_path, capsys):
    from bloodcell.cli import main

    slide = sorted((snakemake_run / "data" / "slides" / "images").iterdir())[0]
    model = snakemake_run / "models" / "detector.keras"
    outs = []
    for name in ("one", "two"):
        assert main(["detect", str(slide), "--out", str(tmp_path / name), "--model", str(model),
                     "--tta", "flips"]) == 0
        assert "test-time augmentation: flips (4 views)" in capsys.readouterr().err
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).rglob("*"))
                     if p.is_file()})
    assert outs[0] == outs[1] and "summary.csv" in outs[0]


def test_non_square_tiles_fuse_their_transposed_views_in_place():
    tiles = np.zeros((1, 60, 100, 3), np.uint8)
    tiles[0, 5:25, 70:90] = 255
    boxes, scores, _, valid = ViewFusion(square_finder, 8, 0.2)(tiles)
    assert valid.tolist() == [1] and scores[0, 0] == pytest.approx(0.9)
    np.testing.assert_allclose(boxes[0, 0], [5, 70, 25, 90], atol=1e-4)


def test_many_boxes_fuse_through_the_grid_as_all_pairs_would():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 400, (300, 2))
    boxes = np.concatenate([xy, rng.uniform(20, 40, (300, 2))], axis=1)
    scores, views = rng.uniform(0.1, 1, 300), rng.integers(0, 4, 300)
    classes = rng.choice([RBC, INFECTED, NEUTRO], 300)
    b, s, c = fuse(boxes, scores, classes, views, 4)
    # the same greedy clustering over every pair, written out plainly
    from bloodcell.common.boxes import box_iou
    from bloodcell.common.classes import CELL_KIND
    kinds, count = np.asarray(CELL_KIND)[classes], 0
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        iou, free = box_iou(boxes[idx], boxes[idx]), np.ones(len(idx), bool)
        for i in range(len(idx)):
            if free[i]:
                free &= ~(iou[i] >= 0.55)
                free[i], count = False, count + 1
    assert len(b) == count and np.all(np.diff(s) <= 0)


def test_a_large_smear_read_by_region_is_mirrored_tile_by_tile(monkeypatch):
    import bloodcell.detect.whole_smear as whole_smear

    class Lazy:  # a smear read region by region: slicing only, never whole
        def __init__(self, rgb):
            self.rgb, self.shape, self.dtype = rgb, rgb.shape, rgb.dtype

        def __getitem__(self, key):
            return self.rgb[key].copy()

        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole smear was read")

    slide = np.zeros((300, 500, 3), np.uint8)
    slide[200:240, 380:420] = 255
    monkeypatch.setattr(whole_smear, "WHOLE_VIEW_PX", 1000)
    cfg = SlideConfig(overlap=45, second_pass=False)
    fused = detect_slide(ViewFusion(square_finder, 4, 0.2), Lazy(slide), cfg)
    np.testing.assert_allclose(fused[["x", "y", "w", "h"]].to_numpy(), [[380, 200, 40, 40]],
                               atol=1e-4)


def test_the_metrics_name_the_mode_a_detector_runs():
    from bloodcell.model.tta import tta_mode

    assert [tta_mode(ViewFusion(square_finder, n, 0.2)) for n in (4, 8)] == ["flips", "dihedral"]
    assert tta_mode(square_finder) == "none"


def test_a_lone_tile_keeps_one_cells_boxes_of_two_classes():
    """Tiles fuse class by class, as the decoder's per-class NMS leaves them; whole slides fuse
    by kind of cell, as their final merge does."""
    def two_classes(tiles):
        boxes, scores, classes, valid = square_finder(tiles)
        return (np.repeat(boxes, 2, axis=1), np.tile([[0.9, 0.5]], (len(tiles), 1)),
                np.tile(np.float32([[RBC, INFECTED]]), (len(tiles), 1)), valid * 2)

    tiles = np.zeros((1, 224, 224, 3), np.uint8)
    tiles[0, 20:50, 100:131] = 255
    _, scores, classes, valid = ViewFusion(two_classes, 4, 0.2)(tiles)
    assert valid.tolist() == [2] and sorted(classes[0].tolist()) == sorted([RBC, INFECTED])
    cfg = SlideConfig(second_pass=False)
    fused = detect_slide(ViewFusion(two_classes, 4, 0.2), tiles[0], cfg)
    assert fused["class_idx"].tolist() == [RBC] and fused["score"].iloc[0] == pytest.approx(0.9)


def fuse_one_cluster_at_a_time(xywh, scores, classes, views, n_views, groups):
    """The fusion of the module docstring written plainly (as tta.fuse was before it was
    vectorised): all pairwise IoUs, then one cluster at a time, each cluster's own box first."""
    out = []
    for kind in np.unique(groups[classes]):
        idx = np.flatnonzero(groups[classes] == kind)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        b, s, v, c = xywh[idx], scores[idx], views[idx], classes[idx]
        iou, free = box_iou(b, b), np.ones(len(idx), bool)
        for i in range(len(b)):
            if free[i]:
                free[i] = False
                member = np.r_[i, np.flatnonzero(free & (iou[i] >= 0.55))]
                free[member] = False
                w = s[member]
                box = (b[member] * w[:, None]).sum(axis=0) / w.sum()
                best = np.sum([w[v[member] == view].max() for view in np.unique(v[member])])
                votes = np.bincount(c[member], weights=w, minlength=len(CELL_KIND))
                out.append((box, min(1.0, float(best) / n_views), int(np.argmax(votes))))
    order = np.argsort([-o[1] for o in out], kind="stable")
    return [out[k] for k in order]


def cells_seen_in_views(rng, n_views):
    """Boxes of up to 24 cells, each found 0-2 times in every view, a pixel or two apart."""
    k = int(rng.integers(1, 25))
    cells = np.c_[rng.uniform(0, 200, (k, 2)), rng.uniform(8, 60, (k, 2))]
    rows = [(*(cell + rng.normal(0, 1.5, 4)), rng.uniform(0.01, 1), rng.integers(0, 10), view)
            for view in range(n_views) for cell in cells for _ in range(rng.integers(0, 3))]
    a = np.array(rows).reshape(-1, 7)
    return a[:, :4], a[:, 4], a[:, 5].astype(np.int64), a[:, 6].astype(np.int64)


@pytest.mark.parametrize("groups", [BY_KIND, BY_CLASS])
@pytest.mark.parametrize("n_views", [4, 8])
def test_fusion_equals_the_plain_one_cluster_at_a_time_loop_bit_for_bit(groups, n_views):
    """Clusters of up to 16 boxes (numpy sums 8 or more values pairwise, fewer in order)."""
    rng = np.random.default_rng(n_views)
    for _ in range(30):
        xywh, scores, classes, views = cells_seen_in_views(rng, n_views)
        b, s, c = fuse(xywh, scores, classes, views, n_views, groups)
        want = fuse_one_cluster_at_a_time(xywh, scores, classes, views, n_views, groups)
        assert len(b) == len(want)
        for k, (box, score, cls) in enumerate(want):
            np.testing.assert_array_equal(b[k], box)
            assert (s[k], c[k]) == (score, cls)
