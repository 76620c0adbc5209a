"""How close `--rbc-diameter auto` (bloodcell.detect.rbc_size) comes to the annotated RBC sizes.

Per image, the reference is the median over its annotated RBC boxes of sqrt(w * h) (the side of
the square of the box's area), in the image's pixels; per dataset the script prints the median
and the largest absolute % error of the estimate, the median signed error (the bias) and the
median time per image (estimate only, image already decoded, one thread).

    python benchmarks/rbc_diameter.py [--data ../shared/data] [--slides data/slides] [-v]

Datasets (each skipped when absent):
- BCCD (Pascal VOC; class ``RBC``): only images with >= 5 RBC boxes, as some files under-label
  RBCs.
- IML malaria (annotations.json; type ``red blood cell``): images with >= 5 RBC boxes.
- the demo's synthetic slides (COCO ground_truth.json; categories ``_`` and ``Infected``).

Annotators draw boxes with some margin around the cell (IML's boxes are loose by several px a
side), while the synthetic slides' boxes are tight; the estimate adds a margin between the two
(rbc_size.BOX_MARGIN), and the signed errors show where it sits. For BCCD and IML the script
therefore also prints a margin-free reference where an image has >= 3 annotated RBC boxes that
overlap no other box: the median sqrt(w * h) of the tight box of the largest cell-mask component
(the estimator's threshold) inside each such box. Last, per dataset, the time for a 2000 x 2000
image tiled from its first image (the path that estimates on 4 crops of 1024 px).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

try:  # noqa: E402
    from defusedxml import ElementTree as ET
except ImportError:  # pragma: no cover
    import xml.etree.ElementTree as ET  # noqa: N817

from bloodcell.detect.rbc_size import cell_mask, estimate_rbc_diameter, fill_small_holes  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MIN_BOXES = 5

Box = tuple[float, float, float, float]


def box_size(box: Box) -> float:
    """sqrt(w * h) of an (x, y, w, h) box, px."""
    return float(np.sqrt(box[2] * box[3]))


def bccd_items(root: Path) -> list[tuple[Path, list[Box]]]:
    """(image, RBC boxes (x, y, w, h)) of BCCD images with >= MIN_BOXES RBCs."""
    items = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        boxes = []
        for obj in ET.parse(xml).getroot().iter("object"):
            if obj.findtext("name") != "RBC":
                continue
            b = obj.find("bndbox")
            x0, y0 = float(b.findtext("xmin")), float(b.findtext("ymin"))
            x1, y1 = float(b.findtext("xmax")), float(b.findtext("ymax"))
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        image = root / "JPEGImages" / f"{xml.stem}.jpg"
        if len(boxes) >= MIN_BOXES and image.is_file():
            items.append((image, boxes))
    return items


def iml_items(root: Path) -> list[tuple[Path, list[Box]]]:
    """(image, RBC boxes) of the IML images present with >= MIN_BOXES RBCs."""
    items = []
    for entry in json.loads((root / "annotations.json").read_text()):
        image = root / "IML_Malaria" / entry["image_name"]
        boxes = [tuple(float(o["bbox"][k]) for k in "xywh") for o in entry["objects"]
                 if o["type"] == "red blood cell"]
        if len(boxes) >= MIN_BOXES and image.is_file():
            items.append((image, boxes))
    return sorted(items)


def slide_items(root: Path) -> list[tuple[Path, list[Box]]]:
    """(image, RBC boxes) of the synthetic slides (COCO; categories _ and Infected)."""
    coco = json.loads((root / "ground_truth.json").read_text())
    rbc = {c["id"] for c in coco["categories"] if c["name"] in ("_", "Infected")}
    boxes = defaultdict(list)
    for a in coco["annotations"]:
        if a["category_id"] in rbc:
            boxes[a["image_id"]].append(tuple(float(v) for v in a["bbox"]))
    return [(root / im["file_name"], boxes[im["id"]]) for im in coco["images"]
            if len(boxes[im["id"]]) >= MIN_BOXES]


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def tight_size(bgr: np.ndarray, boxes: list[Box]) -> float | None:
    """Median sqrt(w * h) of the tight box of the largest cell-mask component inside each
    annotated box that overlaps no other one (None with fewer than 3 such boxes)."""
    mask = cell_mask(bgr)
    if mask is None:
        return None
    mask = fill_small_holes(mask, np.inf).astype(np.uint8)
    sizes = []
    for i, box in enumerate(boxes):
        if any(overlaps(box, other) for j, other in enumerate(boxes) if j != i):
            continue
        x, y, w, h = (int(round(v)) for v in box)
        part = np.ascontiguousarray(mask[max(0, y) : y + h, max(0, x) : x + w])
        if part.size == 0:
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        if n < 2:
            continue
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        sizes.append(float(np.sqrt(stats[k, cv2.CC_STAT_WIDTH] * stats[k, cv2.CC_STAT_HEIGHT])))
    return statistics.median(sizes) if len(sizes) >= 3 else None


def run(name: str, items: list[tuple[Path, list[Box]]], tight: bool, verbose: bool) -> None:
    errors, signed, seconds, tight_errors, tight_signed = [], [], [], [], []
    failed = 0
    for image, boxes in items:
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        reference = statistics.median(box_size(b) for b in boxes)
        start = time.perf_counter()
        estimate = estimate_rbc_diameter(bgr)
        seconds.append(time.perf_counter() - start)
        if estimate is None:
            failed += 1
            if verbose:
                print(f"  {image.name}: reference {reference:.1f} px, no estimate")
            continue
        err = 100 * (estimate - reference) / reference
        errors.append(abs(err))
        signed.append(err)
        line = (f"  {image.name}: reference {reference:.1f} px, estimate {estimate:.1f} px, "
                f"{err:+.1f} %")
        if tight:
            ref_tight = tight_size(bgr, boxes)
            if ref_tight is not None:
                tight_signed.append(100 * (estimate - ref_tight) / ref_tight)
                tight_errors.append(abs(tight_signed[-1]))
                line += f" (tight reference {ref_tight:.1f} px)"
        if verbose:
            print(line)
    if not errors:
        print(f"{name}: {len(items)} images, no estimate")
        return
    within = {k: 100 * sum(e <= k for e in errors) / len(errors) for k in (10, 20)}
    print(f"{name}: {len(items)} images ({failed} without estimate); |error| median "
          f"{statistics.median(errors):.1f} %, max {max(errors):.1f} %; signed median "
          f"{statistics.median(signed):+.1f} %; within 10 %: {within[10]:.0f} % of images, "
          f"within 20 %: {within[20]:.0f} %; {statistics.median(seconds):.3f} s per image "
          f"(max {max(seconds):.3f} s)")
    if tight_errors:
        print(f"{name}: vs the tight reference ({len(tight_errors)} images): |error| median "
              f"{statistics.median(tight_errors):.1f} %, max {max(tight_errors):.1f} %; signed "
              f"median {statistics.median(tight_signed):+.1f} %")


def big_image_time(name: str, items: list[tuple[Path, list[Box]]]) -> None:
    """Seconds for a 2000 x 2000 image tiled from the dataset's first image (the crops path)."""
    bgr = cv2.imread(str(items[0][0]), cv2.IMREAD_COLOR)
    reps = (2000 // bgr.shape[0] + 1, 2000 // bgr.shape[1] + 1, 1)
    big = np.ascontiguousarray(np.tile(bgr, reps)[:2000, :2000])
    estimate_rbc_diameter(big)
    start = time.perf_counter()
    estimate = estimate_rbc_diameter(big)
    shown = "none" if estimate is None else f"{estimate:.1f} px"
    print(f"{name}: 2000x2000 image tiled from {items[0][0].name}: "
          f"{time.perf_counter() - start:.3f} s (estimate {shown})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    p.add_argument("--slides", type=Path, default=Path("data/slides"),
                   help="synthetic slides folder (bloodcell slides output)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every image")
    a = p.parse_args()
    cv2.setNumThreads(1)
    print("reference: median of sqrt(w * h) of the annotated RBC boxes per image")
    sets = [("BCCD", a.data / "bccd" / "BCCD", bccd_items, True),
            ("IML", a.data / "iml-malaria", iml_items, True),
            ("synthetic slides", a.slides, slide_items, False)]
    for name, root, load, tight in sets:
        if not root.is_dir():
            print(f"{name}: {root} absent, skipped")
            continue
        items = load(root)
        run(name, items, tight, a.verbose)
        big_image_time(name, items)


if __name__ == "__main__":
    main()
