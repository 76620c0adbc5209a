"""Property-based tests (hypothesis) of box geometry, tiling, format conversions, and fuzzing of
every label and params reader (issue 13, part 5).

Boxes are (x, y, w, h) in pixels with a top-left origin throughout. Readers fed arbitrary
bytes or arbitrary documents may succeed or refuse; the only exception that may escape them is
bloodcell.common.errors.UserError (a one-line message for the user).
"""

from __future__ import annotations

import copy
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bloodcell.common.boxes import box_iou
from bloodcell.common.classes import DISPLAY_NAMES
from bloodcell.common.errors import UserError
from bloodcell.provenance import export
from conftest import PROJECT

SCALE = float(os.environ.get("BLOODCELL_HYPOTHESIS_SCALE", "1"))
"""Multiplies every test's example count (e.g. 10 for a longer fuzzing session)."""
FAST = settings(max_examples=int(60 * SCALE), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ = settings(max_examples=int(80 * SCALE), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

coord = st.floats(-500, 1500, allow_nan=False, allow_infinity=False)
side = st.just(0.0) | st.floats(1e-3, 600)
"""Box sides: 0 or at least 1e-3 px (a side below x's float resolution is not a box)."""
box = st.tuples(coord, coord, side, side)
positive_box = st.tuples(coord, coord, st.floats(0.5, 600), st.floats(0.5, 600))


def boxes_array(rows) -> np.ndarray:
    return np.asarray(rows, float).reshape(-1, 4)


# ----------------------------------------------------------------------------- IoU


@FAST
@given(st.lists(box, max_size=8), st.lists(box, max_size=8))
def test_iou_is_symmetric_and_in_0_1(a, b):
    ab = box_iou(boxes_array(a), boxes_array(b))
    ba = box_iou(boxes_array(b), boxes_array(a))
    assert ab.shape == (len(a), len(b))
    np.testing.assert_allclose(ab, ba.T, rtol=1e-12, atol=1e-12)
    assert np.all((ab >= 0) & (ab <= 1 + 1e-12))


@FAST
@given(positive_box)
def test_iou_of_a_box_with_itself_is_1(b):
    assert box_iou(boxes_array([b]), boxes_array([b]))[0, 0] == pytest.approx(1.0)


@FAST
@given(positive_box, positive_box, st.floats(0, 100))
def test_iou_of_disjoint_boxes_is_0(a, b, gap):
    # b moved to start right of a's right edge (touching when gap == 0)
    b = (a[0] + a[2] + gap, b[1], b[2], b[3])
    assert box_iou(boxes_array([a]), boxes_array([b]))[0, 0] == 0.0


@FAST
@given(positive_box, st.floats(-50, 50), st.floats(-50, 50))
def test_iou_does_not_change_when_both_boxes_move(a, dx, dy):
    b = (a[0] + 3, a[1] - 2, a[2] * 0.7, a[3] * 1.1)
    moved = [(x + dx, y + dy, w, h) for x, y, w, h in (a, b)]
    before = box_iou(boxes_array([a]), boxes_array([b]))[0, 0]
    after = box_iou(boxes_array([moved[0]]), boxes_array([moved[1]]))[0, 0]
    assert after == pytest.approx(before, abs=1e-9)


# ----------------------------------------------------------------------------- clipping


def detections(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["class_idx", "score", "x", "y", "w", "h"])
    return frame.astype({"class_idx": int, "score": float, "x": float, "y": float,
                         "w": float, "h": float})


det_row = st.tuples(st.integers(0, 9), st.floats(0, 1), coord, coord, side, side)


@FAST
@given(st.lists(det_row, max_size=12), st.integers(1, 2000), st.integers(1, 2000))
def test_clip_to_image_keeps_boxes_inside_and_is_idempotent(rows, width, height):
    from bloodcell.detect.whole_smear import clip_to_image

    dets = detections(rows)
    out = clip_to_image(dets, width, height)
    assert set(out.index) <= set(dets.index)
    assert (out["x"] >= 0).all() and (out["y"] >= 0).all()
    assert (out["w"] > 0).all() and (out["h"] > 0).all()
    assert (out["x"] + out["w"] <= width + 1e-9).all()
    assert (out["y"] + out["h"] <= height + 1e-9).all()
    # a box that was inside the image already is unchanged
    inside = ((dets["x"] >= 0) & (dets["y"] >= 0) & (dets["w"] > 0) & (dets["h"] > 0)
              & (dets["x"] + dets["w"] <= width) & (dets["y"] + dets["h"] <= height))
    pd.testing.assert_frame_equal(out.loc[dets.index[inside]], dets[inside],
                                  check_exact=False, rtol=1e-12)
    again = clip_to_image(out, width, height)
    pd.testing.assert_frame_equal(again, out)


@FAST
@given(st.tuples(st.floats(-300, 500), st.floats(-300, 500), st.floats(0, 600),
                 st.floats(0, 600)))
def test_pixel_box_is_whole_pixels_inside_the_tile(b):
    from bloodcell.dataset.real_tiles import TILE, pixel_box

    x, y, w, h = pixel_box(np.array(b))
    assert all(isinstance(v, int) for v in (x, y, w, h))
    assert 0 <= x <= TILE and 0 <= y <= TILE and w >= 0 and h >= 0
    assert x + w <= TILE and y + h <= TILE
    if 0 <= b[0] and b[0] + b[2] <= TILE and 0 <= b[1] and b[1] + b[3] <= TILE:
        assert abs(x - b[0]) <= 0.5 and abs(x + w - (b[0] + b[2])) <= 0.5


labels = st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])


@FAST
@given(st.lists(st.tuples(positive_box, labels), max_size=10), st.integers(-100, 600),
       st.integers(-100, 600), st.floats(0.05, 1))
def test_tile_objects_clip_to_the_tile_and_relabel_cut_white_cells(objs, x0, y0, min_visible):
    from bloodcell.dataset.real_tiles import MIN_PARTIAL, PARTIAL, TILE, WHITE, tile_objects

    boxes = boxes_array([b for b, _ in objs])
    labs = np.array([c for _, c in objs], np.int64)
    idx, out, clipped, visible = tile_objects(boxes, labs, x0, y0, min_visible)
    assert len(idx) == len(out) == len(clipped) == len(visible)
    assert len(set(idx.tolist())) == len(idx) and set(idx.tolist()) <= set(range(len(objs)))
    if len(idx):
        assert (clipped[:, 0] >= 0).all() and (clipped[:, 1] >= 0).all()
        assert (clipped[:, 0] + clipped[:, 2] <= TILE + 1e-9).all()
        assert (clipped[:, 1] + clipped[:, 3] <= TILE + 1e-9).all()
        assert (clipped[:, 2] >= 1).all() and (clipped[:, 3] >= 1).all()
        assert ((visible >= 0) & (visible <= 1)).all()
    for i, label, vis in zip(idx, out, visible):
        white = int(labs[i]) in WHITE
        if vis >= min_visible:
            assert label == labs[i]
        else:  # only a white cell survives a small share, as a partial WBC
            assert white and vis >= MIN_PARTIAL - 1e-12 and label == PARTIAL


# ----------------------------------------------------------------------------- turns, flips


def draw(shape: tuple[int, int], b: tuple[int, int, int, int]) -> np.ndarray:
    img = np.zeros((*shape, 3), np.uint8)
    x, y, w, h = b
    img[y : y + h, x : x + w] = 255
    return img


def tight(img: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(img[..., 0])
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min()
                                                                           + 1)


@st.composite
def image_and_box(draw_, max_side: int = 60):
    h, w = draw_(st.integers(1, max_side)), draw_(st.integers(1, max_side))
    x, y = draw_(st.integers(0, w - 1)), draw_(st.integers(0, h - 1))
    bw, bh = draw_(st.integers(1, w - x)), draw_(st.integers(1, h - y))
    return (h, w), (x, y, bw, bh)


@FAST
@given(image_and_box(), st.integers(0, 7))
def test_dihedral_moves_a_box_with_the_rectangle_drawn_in_it(case, k):
    from bloodcell.dataset.real_tiles import dihedral

    shape, b = case
    img, boxes = dihedral(draw(shape, b), np.array([b], float), k)
    x, y, w, h = boxes[0]
    assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
    assert tight(img) == (x, y, w, h)
    assert sorted(img.shape[:2]) == sorted(shape)


@FAST
@given(image_and_box(), st.lists(positive_box, max_size=4))
def test_four_quarter_turns_and_two_flips_are_the_identity(case, more):
    from bloodcell.dataset.real_tiles import dihedral

    shape, b = case
    img = np.random.default_rng(len(more)).integers(0, 255, (*shape, 3), np.uint8)
    boxes = boxes_array([b, *more])
    out, ob = img, boxes
    for _ in range(4):
        out, ob = dihedral(out, ob, 1)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_allclose(ob, boxes, atol=1e-9)
    out, ob = dihedral(*dihedral(img, boxes, 4), 4)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_allclose(ob, boxes, atol=1e-9)


# ----------------------------------------------------------------------------- tiles


@FAST
@given(st.integers(224, 5000), st.integers(1, 224))
def test_tile_origins_cover_every_pixel_and_end_flush(length, stride):
    from bloodcell.dataset import real_tiles
    from bloodcell.detect import whole_smear
    for starts in (whole_smear.tile_origins(length, stride), real_tiles.origins(length, stride)):
        assert starts[0] == 0 and starts[-1] == length - whole_smear.TILE
        assert starts == sorted(set(starts))
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + whole_smear.TILE] = True
        assert covered.all()


@FAST
@given(st.integers(1, 700), st.integers(1, 700))
def test_padding_makes_every_image_at_least_one_tile(h, w):
    from bloodcell.detect.whole_smear import TILE, pad_to_tile

    img = np.full((h, w, 3), 7, np.uint8)
    out = pad_to_tile(img)
    assert out.shape[0] >= TILE and out.shape[1] >= TILE
    np.testing.assert_array_equal(out[:h, :w], img)


# ----------------------------------------------------------------------------- NMS


@FAST
@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0, 1), coord, coord,
                          st.floats(1, 300), st.floats(1, 300), st.booleans()), max_size=14),
       st.floats(0.05, 0.95))
def test_slide_class_nms_keeps_a_subset_without_overlaps_within_a_kind(rows, iou):
    from bloodcell.detect.whole_smear import KIND, class_nms

    dets = detections([r[:6] for r in rows]).assign(cut=[r[6] for r in rows])
    kept = class_nms(dets, iou)
    assert set(kept.index) <= set(dets.index)
    b = kept[["x", "y", "w", "h"]].to_numpy(float)
    overlap = box_iou(b, b)
    kinds = KIND[kept["class_idx"].to_numpy()]
    same = kinds[:, None] == kinds[None, :]
    np.fill_diagonal(same, False)
    assert not (same & (overlap > iou + 1e-9)).any()
    # greedy: a dropped box overlaps a kept box of its kind by more than ``iou``, or lies
    # mostly (70 %) inside one
    for i in set(dets.index) - set(kept.index):
        row = dets.loc[i]
        mates = kept[KIND[kept["class_idx"].to_numpy()] == KIND[int(row["class_idx"])]]
        m = mates[["x", "y", "w", "h"]].to_numpy(float)
        b = row[["x", "y", "w", "h"]].to_numpy(float)
        iw = np.minimum(m[:, 0] + m[:, 2], b[0] + b[2]) - np.maximum(m[:, 0], b[0])
        ih = np.minimum(m[:, 1] + m[:, 3], b[1] + b[3]) - np.maximum(m[:, 1], b[1])
        inside = np.clip(iw, 0, None) * np.clip(ih, 0, None) / (b[2] * b[3])
        overlap = box_iou(m, b[None])[:, 0]
        assert ((overlap > iou - 1e-9) | (inside > 0.7 - 1e-9)).any(), i


@FAST
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1), coord, coord,
                          st.floats(1, 300), st.floats(1, 300)), max_size=14),
       st.floats(0.05, 0.95))
def test_class_wise_nms_after_mapping_keeps_no_overlap_above_the_iou(rows, iou):
    from bloodcell.evaluate.on_annotated_images import nms_by_class

    dets = detections(rows)
    kept = nms_by_class(dets, iou)
    assert list(kept.index) == [i for i in dets.index if i in set(kept.index)]  # order kept
    for _, part in kept.groupby("class_idx"):
        b = part[["x", "y", "w", "h"]].to_numpy(float)
        overlap = box_iou(b, b)
        np.fill_diagonal(overlap, 0)
        assert (overlap <= iou + 1e-9).all()
    for _, part in dets.groupby("class_idx"):  # the best box of each class is kept
        assert part["score"].idxmax() in set(kept.index)


# ----------------------------------------------------------------------------- conversions


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


@st.composite
def export_image(draw_):
    """(width, height, object rows with integer boxes inside the image)."""
    width, height = draw_(st.integers(8, 3000)), draw_(st.integers(8, 3000))
    rows = []
    for obj in range(draw_(st.integers(0, 6))):
        x, y = draw_(st.integers(0, width - 1)), draw_(st.integers(0, height - 1))
        w, h = draw_(st.integers(1, width - x)), draw_(st.integers(1, height - y))
        c = draw_(st.integers(0, 9))
        rows.append({"image_id": "test-0-000001", "obj": obj, "class_idx": c, "x": x, "y": y,
                     "w": w, "h": h, "sample_id": None if c >= 8 else f"kaggle/{obj}.png",
                     "background_id": "test-nn-0000"})
    return width, height, rows


@FAST
@pytest.mark.parametrize("fmt", export.FORMATS)
@given(case=export_image())
def test_export_formats_read_back_the_same_boxes(fmt, case):
    from bloodcell.dataset.shards import ImageRecord

    width, height, rows = case
    rec = ImageRecord("test-0-000001", png_header(width, height), width, height,
                      np.array([[r[k] for k in "xywh"] for r in rows], float).reshape(-1, 4),
                      np.array([r["class_idx"] for r in rows]))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        if fmt == "original":  # the BMP needs a decodable image: write the labels only
            (out / "labels").mkdir()
            labels = {str(i): export.original_label(r) for i, r in enumerate(rows)}
            (out / "labels" / f"{rec.image_id}.json").write_text(json.dumps(labels))
            for r in rows:
                lab = export.original_label(r)
                assert (lab["posX"], lab["posY"]) == (r["x"] + r["w"] // 2,
                                                      r["y"] + r["h"] // 2)
        else:
            writer = export.WRITERS[fmt](out, ("test",))
            writer.add("test", rec, rows)
            writer.close()
        back = export.READERS[fmt](out)
    want = [(r["image_id"], r["class_idx"], r["x"], r["y"], r["w"], r["h"]) for r in rows]
    assert [tuple(v) for v in back.itertuples(index=False)] == want


@FAST
@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0, 1), st.floats(0, 5000),
                          st.floats(0, 5000), st.floats(0, 800), st.floats(0, 800)),
                max_size=10))
def test_detect_coco_and_geojson_carry_the_boxes_rounded_to_2_decimals(rows):
    from bloodcell.detect import outputs as out
    dets = detections(rows).assign(image_id="a")
    with tempfile.TemporaryDirectory() as d:
        out.write_coco(dets, [("a", "a.png", 6000, 6000)], Path(d) / "c.json")
        doc = json.loads((Path(d) / "c.json").read_text())
        out.write_geojson(dets, Path(d) / "g.json")
        geo = json.loads((Path(d) / "g.json").read_text())
    got = np.array(sorted((a["category_id"] - 1, *a["bbox"]) for a in doc["annotations"]),
                   float).reshape(-1, 5)
    key = [(int(c), *np.round([x, y, w, h], 2), x, y, w, h) for c, _, x, y, w, h in rows]
    want = np.array([(k[0], *k[5:]) for k in sorted(key)], float).reshape(-1, 5)
    assert got.shape == want.shape and (got[:, 0] == want[:, 0]).all()
    # 2 decimals, whichever way a value exactly half-way goes
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=0, atol=0.005 + 1e-9)
    assert (np.round(got[:, 1:], 2) == got[:, 1:]).all()
    for f in geo["features"]:
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        assert min(xs) <= max(xs) and min(ys) <= max(ys)
        assert f["properties"]["classification"]["name"] in DISPLAY_NAMES


@st.composite
def annotated(draw_):
    """(width, height, [(label, x, y, w, h)]) with integer boxes inside the image."""
    width, height = draw_(st.integers(8, 400)), draw_(st.integers(8, 400))
    objs = []
    for _ in range(draw_(st.integers(0, 5))):
        x, y = draw_(st.integers(0, width - 1)), draw_(st.integers(0, height - 1))
        w, h = draw_(st.integers(1, width - x)), draw_(st.integers(1, height - y))
        objs.append((draw_(st.sampled_from(["RBC", "WBC", "Platelets"])), x, y, w, h))
    return width, height, objs


def write_png_of(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 200, np.uint8))


@FAST
@pytest.mark.parametrize("fmt", ["voc", "coco", "iml"])
@given(case=annotated())
def test_annotation_readers_read_back_the_boxes_written(fmt, case):
    from bloodcell.sources.annotations import read_annotations

    width, height, objs = case
    with tempfile.TemporaryDirectory() as d:
        images = Path(d) / "images"
        write_png_of(images / "a.png", width, height)
        if fmt == "voc":
            labels = Path(d) / "Annotations"
            labels.mkdir()
            body = "".join(f"<object><name>{n}</name><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}"
                           f"</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                           for n, x, y, w, h in objs)
            (labels / "a.xml").write_text(
                f"<annotation><filename>a.png</filename><size><width>{width}</width><height>"
                f"{height}</height></size>{body}</annotation>")
        elif fmt == "coco":
            labels = Path(d) / "coco.json"
            cats = {"RBC": 1, "WBC": 2, "Platelets": 3}
            labels.write_text(json.dumps({
                "images": [{"id": 5, "file_name": "a.png", "width": width, "height": height}],
                "categories": [{"id": v, "name": k} for k, v in cats.items()],
                "annotations": [{"id": i + 1, "image_id": 5, "category_id": cats[n],
                                 "bbox": [x, y, w, h]} for i, (n, x, y, w, h) in enumerate(objs)]
            }))
        else:
            labels = Path(d) / "annotations.json"
            labels.write_text(json.dumps([{"image_name": "a.png", "objects": [
                {"type": n, "bbox": {"x": str(x), "y": str(y), "w": str(w), "h": str(h)}}
                for n, x, y, w, h in objs]}]))
        ann = read_annotations(fmt, images, labels, None)
    assert ann.images[["width", "height"]].values.tolist() == [[width, height]]
    # VOC's xmax == xmin (a 1 px click) is documented as a zero-size box and dropped
    kept = [k for k, (_, _, _, w, h) in enumerate(objs) if fmt != "voc" or min(w, h) > 1]
    got = [(r.label, r.x, r.y, r.w, r.h) for r in ann.objects.itertuples()]
    assert got == [(n, float(x), float(y), float(w), float(h))
                   for k, (n, x, y, w, h) in enumerate(objs) if k in kept]
    assert ann.objects["obj"].tolist() == kept
    assert sorted(ann.dropped["obj"]) == sorted(set(range(len(objs))) - set(kept))


# ----------------------------------------------------------------------------- fuzzing


def only_user_errors(call: Callable[[], object]) -> None:
    """Run ``call``; anything but success or a one-line UserError fails the test."""
    try:
        call()
    except UserError as err:
        assert "\n" not in str(err), str(err)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
number_like = (st.integers(-10**4, 10**4) | st.floats(allow_nan=True, allow_infinity=True)
               | st.sampled_from(["12", "1e400", "nan", "-3", "", " 7 ", "0x10", "1_0"])
               | st.text(max_size=6) | st.none() | st.booleans() | st.lists(st.integers(),
                                                                              max_size=2))


@st.composite
def iml_doc(draw_):
    """An IML-like annotations.json document with arbitrary values in the right places."""
    entries = []
    for _ in range(draw_(st.integers(0, 3))):
        objs = [draw_(st.fixed_dictionaries(
            {"type": st.sampled_from(["red blood cell", "ring", "difficult"]) | json_values,
             "bbox": st.fixed_dictionaries({k: number_like for k in "xywh"}) | json_values}))
            for _ in range(draw_(st.integers(0, 3)))]
        entries.append({"image_name": draw_(st.sampled_from(["a.png", "b.png"]) | json_values),
                        "objects": draw_(st.just(objs) | json_values)})
    return draw_(st.just(entries) | json_values)


@st.composite
def coco_doc(draw_):
    """A COCO-like document with arbitrary values in the right places."""
    images = [{"id": draw_(st.integers(0, 3) | json_values),
               "file_name": draw_(st.sampled_from(["a.png", "b.png"]) | json_values),
               "width": draw_(number_like), "height": draw_(number_like)}
              for _ in range(draw_(st.integers(0, 3)))]
    cats = [{"id": draw_(st.integers(0, 3) | json_values),
             "name": draw_(st.sampled_from(["RBC", "WBC"]) | json_values)}
            for _ in range(draw_(st.integers(0, 3)))]
    anns = [{"image_id": draw_(st.integers(0, 3) | json_values),
             "category_id": draw_(st.integers(0, 3) | json_values),
             "bbox": draw_(st.lists(number_like, max_size=5) | json_values),
             "iscrowd": draw_(st.sampled_from([0, 1]) | json_values)}
            for _ in range(draw_(st.integers(0, 4)))]
    doc = {"images": images, "categories": cats, "annotations": anns}
    for key in draw_(st.lists(st.sampled_from(list(doc)), max_size=2)):
        doc[key] = draw_(json_values)
    return draw_(st.just(doc) | json_values)


def voc_value() -> st.SearchStrategy:
    return (st.integers(-50, 500).map(str) | st.sampled_from(["", " ", "1.5", "nan", "inf",
                                                              "-0", "1e9", "x"])
            | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6))


@st.composite
def voc_doc(draw_):
    """A VOC-like XML document with arbitrary text in every element (escaped)."""
    from xml.sax.saxutils import escape

    def el(tag: str, text: str) -> str:
        return f"<{tag}>{escape(text)}</{tag}>"

    objs = []
    for _ in range(draw_(st.integers(0, 3))):
        parts = [el("name", draw_(st.sampled_from(["RBC", "WBC", "Platelets"]) | voc_value()))]
        if draw_(st.booleans()):
            parts.append(el("difficult", draw_(st.sampled_from(["0", "1"]) | voc_value())))
        keys = draw_(st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax"]), max_size=4,
                              unique=True) | st.just(["xmin", "ymin", "xmax", "ymax"]))
        if draw_(st.integers(0, 5)):
            parts.append("<bndbox>" + "".join(el(k, draw_(voc_value())) for k in keys)
                         + "</bndbox>")
        objs.append("<object>" + "".join(parts) + "</object>")
    size = ""
    if draw_(st.booleans()):
        size = "<size>" + el("width", draw_(voc_value())) + el("height", draw_(voc_value())) \
            + "</size>"
    filename = el("filename", draw_(st.sampled_from(["a.png", "b.png", ""]) | voc_value()))
    root = draw_(st.sampled_from(["annotation", "annotation", "svg"]))
    return f"<{root}>{filename}{size}{''.join(objs)}</{root}>"


raw_bytes = st.binary(max_size=200)
raw_text = st.text(max_size=200)


def fuzz_folder(d: Path) -> Path:
    images = d / "images"
    write_png_of(images / "a.png", 60, 40)
    return images


@FUZZ
@given(st.one_of(voc_doc(), raw_text.map(lambda t: t), raw_bytes))
def test_voc_reader_on_fuzzed_files_raises_only_user_errors(doc):
    from bloodcell.sources.annotations import read_voc

    with tempfile.TemporaryDirectory() as d:
        images = fuzz_folder(Path(d))
        labels = Path(d) / "Annotations"
        labels.mkdir()
        path = labels / "a.xml"
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_voc(images, labels, None))
        only_user_errors(lambda: read_voc(images, labels, ["a"]))


@FUZZ
@given(st.one_of(iml_doc().map(json.dumps), json_values.map(json.dumps), raw_text, raw_bytes))
def test_iml_reader_on_fuzzed_files_raises_only_user_errors(doc):
    from bloodcell.sources.annotations import read_iml

    with tempfile.TemporaryDirectory() as d:
        images = fuzz_folder(Path(d))
        path = Path(d) / "annotations.json"
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_iml(images, path, None))
        only_user_errors(lambda: read_iml(images, path, ["a.png"]))


@FUZZ
@given(st.one_of(coco_doc().map(json.dumps), json_values.map(json.dumps), raw_text, raw_bytes))
def test_coco_reader_on_fuzzed_files_raises_only_user_errors(doc):
    from bloodcell.sources.annotations import read_coco

    with tempfile.TemporaryDirectory() as d:
        images = fuzz_folder(Path(d))
        path = Path(d) / "coco.json"
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_coco(images, path, None))
        only_user_errors(lambda: read_coco(images, path, ["a"]))


@FUZZ
@given(raw_text | raw_bytes)
def test_image_list_reader_on_fuzzed_files_raises_only_user_errors(doc):
    from bloodcell.sources.annotations import read_name_list

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "list.txt"
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_name_list(path))


CLASS_MAPS = PROJECT / "bloodcell" / "sources" / "class_maps"
GOOD_MAP = yaml.safe_load((CLASS_MAPS / "bccd.yaml").read_text())
yaml_scalars = (st.none() | st.booleans() | st.integers(-5, 12) | st.floats(allow_nan=True)
                | st.sampled_from(["WBC", "RBC", "Platelets", "_", "Infected", "Clumps", "",
                                   "Sickle"]) | st.text(max_size=8))
yaml_values = st.recursive(yaml_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(yaml_scalars.filter(lambda v: v == v), c,
                                             max_size=4), max_leaves=16)


@st.composite
def class_map_doc(draw_):
    """The bundled BCCD map with a few parts replaced by arbitrary YAML values."""
    doc = copy.deepcopy(GOOD_MAP)
    for _ in range(draw_(st.integers(1, 4))):
        key = draw_(st.sampled_from(["classes", "model", "dataset", "train", "description",
                                     "extra"]))
        if isinstance(doc.get(key), dict) and doc[key] and draw_(st.booleans()):
            inner = draw_(st.sampled_from(sorted(doc[key], key=str)))
            doc[key][inner] = draw_(yaml_values)
        elif isinstance(doc.get(key), list) and doc[key] and draw_(st.booleans()):
            doc[key][draw_(st.integers(0, len(doc[key]) - 1))] = draw_(yaml_values)
        elif draw_(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw_(yaml_values)
    return draw_(st.just(doc) | yaml_values)


@FUZZ
@given(class_map_doc())
def test_class_map_parser_on_fuzzed_documents_raises_only_user_errors(doc):
    from bloodcell.sources.class_map import parse_class_map

    only_user_errors(lambda: parse_class_map(doc, "fuzz", "fuzz.yaml"))


@FUZZ
@given(class_map_doc().map(lambda d: yaml.safe_dump(d, allow_unicode=True)) | raw_text
       | raw_bytes)
def test_class_map_loader_on_fuzzed_files_raises_only_user_errors(text):
    from bloodcell.sources.class_map import load_class_map

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "map.yaml"
        path.write_bytes(text if isinstance(text, bytes)
                         else text.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: load_class_map(str(path)))


PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text())


def params_paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested params document."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += params_paths(v, (*prefix, k))
    return out


PARAM_PATHS = params_paths(PARAMS)


@st.composite
def params_doc(draw_):
    """params.yaml with a few values replaced by arbitrary ones, keys removed or added."""
    doc = copy.deepcopy(PARAMS)
    for _ in range(draw_(st.integers(1, 4))):
        path = draw_(st.sampled_from(PARAM_PATHS))
        parent = doc
        for k in path[:-1]:
            if not isinstance(parent, dict) or k not in parent:
                break
            parent = parent[k]
        else:
            if isinstance(parent, dict):
                what = draw_(st.sampled_from(["set", "set", "drop", "add"]))
                if what == "set":
                    parent[path[-1]] = draw_(yaml_values)
                elif what == "drop":
                    parent.pop(path[-1], None)
                else:
                    parent[draw_(yaml_scalars.filter(lambda v: v == v))] = draw_(yaml_values)
    return draw_(st.just(doc) | yaml_values)


@FUZZ
@given(params_doc())
def test_params_validate_on_fuzzed_documents_raises_only_user_errors(doc):
    from bloodcell.common.params import validate

    only_user_errors(lambda: validate(doc, Path("fuzz.yaml")))


@FUZZ
@given(params_doc().map(lambda d: yaml.safe_dump(d, allow_unicode=True)) | raw_text
       | raw_bytes)
def test_params_check_on_fuzzed_files_raises_only_user_errors(text):
    from bloodcell.common.params import check

    with tempfile.TemporaryDirectory() as d:
        for rel in ("workflow/schemas",):
            (Path(d) / rel).mkdir(parents=True)
        (Path(d) / "workflow/schemas/params.schema.yaml").write_bytes(
            (PROJECT / "workflow/schemas/params.schema.yaml").read_bytes())
        path = Path(d) / "params.yaml"
        path.write_bytes(text if isinstance(text, bytes)
                         else text.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: check(path))


crop_cell = (st.sampled_from(["field_001.png", "Thrombocytes", "Clumps", "Infected", "_",
                              "12", "-3", "0", "1.5", "", "../x.png", "/abs.png"])
             | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6))


@st.composite
def crop_list(draw_):
    head = draw_(st.just("image,class,x,y,w,h") | st.text(max_size=20))
    rows = [",".join(draw_(st.lists(crop_cell, min_size=0, max_size=8)))
            for _ in range(draw_(st.integers(0, 5)))]
    return "\n".join([head, *rows]) + draw_(st.sampled_from(["", "\n", "\r\n"]))


@FUZZ
@given(crop_list() | raw_text | raw_bytes)
def test_mamic_crop_list_reader_on_fuzzed_files_raises_only_user_errors(text):
    from bloodcell.sources.mamic import plan, read_crop_list

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_png_of(root / "images" / "field_001.png", 50, 40)
        path = root / "crops.csv"
        path.write_bytes(text if isinstance(text, bytes)
                         else text.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_crop_list(path))
        only_user_errors(lambda: plan(root, path, 1.0, 2, 10))


@st.composite
def labels_csv(draw_):
    head = draw_(st.sampled_from(["image ID,class label", "image ID,class", "id,label", ""])
                 | st.text(max_size=15))
    cell = st.integers(-3, 9).map(str) | st.sampled_from(["", "x", "1.0", " 2"]) | \
        st.text(max_size=4)
    rows = [",".join(draw_(st.lists(cell, max_size=4))) for _ in range(draw_(st.integers(0, 6)))]
    return "\n".join([head, *rows])


@FUZZ
@given(labels_csv() | raw_text | raw_bytes)
def test_wbcseg_class_csv_reader_on_fuzzed_files_raises_only_user_errors(text):
    from bloodcell.sources.wbcseg import read_labels

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "Class Labels of Dataset 1.csv"
        path.write_bytes(text if isinstance(text, bytes)
                         else text.encode("utf-8", "surrogatepass"))
        only_user_errors(lambda: read_labels(path))


@FUZZ
@given(raw_bytes, st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"BM", b"\xff\xd8\xff",
                                   b"II*\x00", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"]))
def test_image_decoders_on_fuzzed_bytes_raise_only_their_own_errors(data, magic):
    from bloodcell.common.image_files import ImageProblem, decode_color, header_size
    from bloodcell.detect.smear_reader import read_smear

    blob = magic + data
    size = header_size(blob)
    assert size is None or (len(size) == 2 and min(size) >= 0)
    try:
        decode_color(blob)
    except ImageProblem as err:
        assert "\n" not in str(err)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.png"
        path.write_bytes(blob)
        only_user_errors(lambda: read_smear(path))
