"""Time and memory of the whole-smear merge (`class_nms`) and seam search (`seam_pairs`).

Synthetic detections laid out like RBCs on a smear: cells of ~35 px (a few white cells of
~80 px and platelets), about one per 4000 px^2, on a square smear sized to the cell count;
224 px tiles at ``--overlap`` px (stride 224 - overlap) cut every cell crossing a tile edge
into the parts each tile sees (different tile ids, ``cut`` set), with +-0.5 px of noise.
Per cell count the script prints seconds (best of ``--repeats``), the peak of traced Python
allocations (tracemalloc, numpy included) and the peak RSS growth over the call (Linux
VmHWM, reset through /proc/self/clear_refs; "n/a" where that is not allowed), each function
measured in a forked child of the process holding the detections. The RSS growth is a lower
bound: the child reuses memory the parent freed before the fork.

    python benchmarks/merge_scale.py [--cells 1000 10000 100000] [--overlap 0 48]
                                     [--reference-max 1000] [--repeats 3]

``--reference-max``: also time the all-pairs versions these replaced (issue 12) up to that
many cells (default 1000; they build cells x cells matrices: ~9 GB at 10,000 cells).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from bloodcell.detect.whole_smear import (
    TILE,
    class_nms,
    seam_lines,
    seam_pairs,
    tile_origins,
)

DENSITY_PX2 = 4000.0
"""Smear area per cell, px^2 (~30 % of the smear covered by 35 px cells)."""
GAP_PX = 6


def smear_cells(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` cells (x, y, w, h px, top-left) with their classes on a square smear; its side."""
    side = max(int(np.sqrt(n * DENSITY_PX2)), TILE)
    cls = rng.choice([9, 8, 6, 2, 0], n, p=[0.94, 0.03, 0.02, 0.005, 0.005])
    size = np.where(cls < 6, 80.0, np.where(cls == 6, 12.0, 35.0))
    wh = size[:, None] * rng.uniform(0.85, 1.15, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * (side - wh)
    return np.c_[xy, wh], cls, side


def tile_range(start: np.ndarray, end: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per interval [start, end) px, the first tile index and the count of tiles it reaches."""
    first = np.searchsorted(origins + TILE, start, "right")
    last = np.searchsorted(origins, end, "left") - 1
    return first, last - first + 1


def tiled_detections(cells: np.ndarray, cls: np.ndarray, side: int, stride: int,
                     rng: np.random.Generator) -> tuple[pd.DataFrame, tuple[list, list]]:
    """The part of each cell every tile sees, as detections (class_idx, score, x, y, w, h,
    tile, cut), and the seams of the tiling."""
    origins = np.asarray(tile_origins(side, stride))
    fx, kx = tile_range(cells[:, 0], cells[:, 0] + cells[:, 2], origins)
    fy, ky = tile_range(cells[:, 1], cells[:, 1] + cells[:, 3], origins)
    cell = np.repeat(np.arange(len(cells)), kx * ky)
    local = np.arange(cell.size) - np.repeat(np.cumsum(kx * ky) - kx * ky, kx * ky)
    tx, ty = fx[cell] + local % kx[cell], fy[cell] + local // kx[cell]
    ox, oy = origins[tx], origins[ty]
    b = cells[cell]
    x0, y0 = np.maximum(b[:, 0], ox), np.maximum(b[:, 1], oy)
    x1 = np.minimum(b[:, 0] + b[:, 2], ox + TILE)
    y1 = np.minimum(b[:, 1] + b[:, 3], oy + TILE)
    cut = (x0 > b[:, 0]) | (y0 > b[:, 1]) | (x1 < b[:, 0] + b[:, 2]) | (y1 < b[:, 1] + b[:, 3])
    noise = rng.uniform(-0.5, 0.5, (cell.size, 2))
    dets = pd.DataFrame({"class_idx": cls[cell], "score": rng.uniform(0.5, 1, cell.size),
                         "x": x0 + noise[:, 0], "y": y0 + noise[:, 1], "w": x1 - x0,
                         "h": y1 - y0, "tile": ty * len(origins) + tx, "cut": cut})
    return dets, seam_lines([(int(x), int(y)) for y in origins for x in origins])


def rss_mb(field: str) -> float | None:
    """VmRSS or VmHWM (peak) of this process in MB, None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); whether that worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn, repeats: int) -> tuple[float, float, str, object]:
    """Best seconds of ``repeats`` calls, peak traced MB of one more, peak RSS growth (over
    the timed calls) and the result."""
    best, rss = float("inf"), "n/a"
    for _ in range(repeats):
        ok, base = reset_peak_rss(), rss_mb("VmRSS")
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        peak = rss_mb("VmHWM")
        if ok and base is not None and peak is not None:
            rss = f"+{peak - base:.0f} MB"
    tracemalloc.start()
    result = fn()
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, traced, rss, result


# ---------------------------------------------------------------- the all-pairs versions


def all_pairs():
    """The all-pairs class_nms and seam_pairs from before the grid: the references kept in
    tests/test_whole_smear.py (one copy of each)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_slide import all_pairs_class_nms, brute_seam_pairs

    return all_pairs_class_nms, lambda d, gap, seams: brute_seam_pairs(d, range(10), gap, seams)


# ---------------------------------------------------------------- main


def measure_apart(fn, repeats: int) -> tuple[float, float, str, object]:
    """:func:`measure` in a forked child, so memory freed by earlier calls (kept by the
    allocator) does not hide this call's RSS growth; in this process where fork is missing."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return measure(fn, repeats)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=lambda: queue.put(measure(fn, repeats)))
    child.start()
    out = queue.get()
    child.join()
    return out


def report(name: str, fn, repeats: int) -> object:
    """Print one measured line; return the function's result."""
    seconds, traced, rss, result = measure_apart(fn, repeats)
    print(f"  {name:<28} {seconds:8.3f} s   traced peak {traced:8.1f} MB   RSS peak {rss}")
    return result


def one_size(n: int, overlap: int, a: argparse.Namespace) -> None:
    rng = np.random.default_rng(a.seed)
    cells, cls, side = smear_cells(n, rng)
    dets, seams = tiled_detections(cells, cls, side, TILE - overlap, rng)
    print(f"{n} cells on {side}x{side} px, overlap {overlap} px (stride {TILE - overlap}): "
          f"{len(dets)} detections, {int(dets['cut'].sum())} cut")
    pairs = report("seam_pairs (grid)", lambda: seam_pairs(dets, tuple(range(10)), GAP_PX,
                                                          seams), a.repeats)
    for metric in ("iou", "ios"):
        kept = report(f"class_nms {metric} (grid)",
                      lambda: class_nms(dets, a.merge_iou, metric=metric), a.repeats)
        print(f"  {'':<28} {len(kept)} kept of {len(dets)}")
    if n <= a.reference_max:
        old = report("seam_pairs (all pairs)",
                     lambda: all_pairs()[1](dets, GAP_PX, seams), 1)
        print(f"  {'':<28} {len(pairs)} seam pairs, same as all pairs: {old == pairs}")
        ref = report("class_nms iou (all pairs)",
                     lambda: all_pairs()[0](dets, a.merge_iou), 1)
        same = list(ref.index) == list(class_nms(dets, a.merge_iou).index)
        print(f"  {'':<28} same kept rows as the grid: {same}")
    else:
        print(f"  {'':<28} {len(pairs)} seam pairs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--overlap", type=int, nargs="+", default=[0, 48],
                   help="tile overlaps to run, px (default 0 48)")
    p.add_argument("--merge-iou", type=float, default=0.3)
    p.add_argument("--reference-max", type=int, default=1000,
                   help="largest cell count to run the all-pairs versions on (0: never)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for overlap in a.overlap:
        for n in a.cells:
            one_size(n, overlap, a)


if __name__ == "__main__":
    main()
