"""Huge smears read by region: time and peak memory of tiling 2000..20000 px tiled BigTIFFs.

For each side a smear is generated as a tiled, zlib-compressed BigTIFF, written one row of
tiles at a time (the whole image is never in memory): a pale background with many ~34 px
reddish discs with a paler centre, seeded. Then a child process (so that peak RSS is per run)
opens it with ``smear_reader.open_smear``, walks the scaled view (``--scale``, default 1.0) in
rows of 224x224 tiles in batches, as ``whole_smear.detect_slide``'s first pass does, and feeds the
batches to the detector of ``--model`` (as ``bloodcell detect`` loads it) or, without one, to
a cheap numpy stand-in (a bounding box of the reddish pixels per tile). ``--overview N`` also
builds the N px overview ``bloodcell detect`` draws huge smears on.

    python benchmarks/large_smears.py [--sizes 2000,5000,10000,20000] [--model PATH]
    python benchmarks/large_smears.py --cli --model models/detector.keras

``--cli`` instead times the real command end to end, ``bloodcell detect SMEAR --out DIR
--model PATH --scale S`` (reading, tiles, second pass, merge, annotated PNG, GeoJSON, cells
CSV, summary and COCO), and reports its cells; peak RSS is that process's.

Printed per size: side (px), megapixels, seconds (open, walk and detect; not generating),
seconds per megapixel, peak RSS of the child (MB) and its RSS after imports (MB). Files go to
a temporary folder that is removed at the end. Target (issue 12): a 20000 x 20000 smear with
peak RSS under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TILE_PX = 256
"""Side of the TIFF's tiles, px (a common whole-slide choice)."""
CELL_PX = 40
"""Grid step of the disc centres, px: one disc or none per cell."""


def background(y0: int, y1: int, width: int, height: int) -> np.ndarray:
    """Rows y0..y1-1 of a pale pink-grey RGB background, darker towards the corners."""
    yy = (np.arange(y0, y1, dtype=np.float32)[:, None] / height - 0.5) ** 2
    xx = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5) ** 2
    shade = 1 - 0.08 * (xx + yy)
    base = np.array([236, 226, 232], np.float32)
    return (shade[..., None] * base).astype(np.uint8)


def discs_of_row(row: int, width: int, seed: int) -> np.ndarray:
    """Discs (x, y, radius px) of one row of grid cells, the same whichever band asks."""
    rng = np.random.default_rng([seed, row, 0])
    n = width // CELL_PX
    keep = rng.random(n) < 0.7
    x = (np.arange(n) + 0.5) * CELL_PX + rng.uniform(-8, 8, n)
    y = (row + 0.5) * CELL_PX + rng.uniform(-8, 8, n)
    r = rng.normal(17, 1.5, n).clip(13, 21)
    return np.stack([x, y, r], axis=1)[keep]


def grain(width: int, seed: int) -> np.ndarray:
    """Sensor-like noise, -3..3 grey levels, for TILE_PX rows (repeated down the smear): it
    keeps zlib from compressing the smear to nothing, so decoding costs what it does on
    real scans."""
    return np.random.default_rng([seed, 0, 1]).integers(-3, 4, (TILE_PX, width, 3), np.int16)


def band(y0: int, y1: int, width: int, height: int, seed: int, noise: np.ndarray
         ) -> np.ndarray:
    """Rows y0..y1-1 of the smear, uint8 RGB: background and every disc reaching them."""
    import cv2

    img = (background(y0, y1, width, height) + noise[: y1 - y0]).clip(0, 255).astype(np.uint8)
    for row in range(max(0, (y0 - 30) // CELL_PX), (y1 + 30) // CELL_PX + 1):
        for x, y, r in discs_of_row(row, width, seed):
            centre = (int(round(x)), int(round(y)) - y0)
            cv2.circle(img, centre, int(round(r)), (196, 112, 124), -1, cv2.LINE_AA)
            cv2.circle(img, centre, int(round(r * 0.45)), (214, 150, 160), -1, cv2.LINE_AA)
    return img


def write_smear(path: Path, side: int, seed: int) -> None:
    """A side x side tiled BigTIFF, generated and written one row of tiles at a time."""
    import tifffile

    noise = grain(side, seed)

    def tiles():
        for y0 in range(0, side, TILE_PX):
            rows = band(y0, min(side, y0 + TILE_PX), side, side, seed, noise)
            for x0 in range(0, side, TILE_PX):
                yield np.ascontiguousarray(rows[:, x0 : x0 + TILE_PX])

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype=np.uint8, photometric="rgb",
                     tile=(TILE_PX, TILE_PX), bigtiff=True, compression="zlib",
                     compressionargs={"level": 1})


def stand_in(tiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """A cheap detector: per tile, the bounding box (y1, x1, y2, x2) of its reddish pixels."""
    red = tiles[..., 0].astype(np.int16) - tiles[..., 1] > 40
    rows, cols = red.any(axis=2), red.any(axis=1)
    y1, x1 = rows.argmax(axis=1), cols.argmax(axis=1)
    y2 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    x2 = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([y1, x1, y2, x2], axis=1)[:, None].astype(np.float32)
    valid = rows.any(axis=1).astype(np.int32)
    return boxes, np.full((len(tiles), 1), 0.9, np.float32), np.full((len(tiles), 1), 9), valid


def model_detector(path: Path):
    """The compiled tile detector of a trained model, as ``bloodcell detect`` builds it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.common.tf_threads import set_tf_threads
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.inference import load_detector, tile_detector

    set_tf_threads()
    return tile_detector(load_detector(path), ORIGINAL_ANCHORS, DecodeConfig())


def walk(path: Path, scale: float, detect, batch: int, overview: int) -> int:
    """Open the smear, walk its scaled view tile row by tile row in batches of tiles (as
    whole_smear.run_tiles does) through ``detect``; the number of boxes found."""
    from bloodcell.detect.smear_reader import open_smear
    from bloodcell.detect.whole_smear import cut_tiles, tile_origins

    found = 0
    with open_smear(path) as smear:
        view = smear.scaled(scale)
        origins = [(x, y) for y in tile_origins(view.shape[0], 224)
                   for x in tile_origins(view.shape[1], 224)]
        for start in range(0, len(origins), batch):
            *_, valid = detect(cut_tiles(view, origins[start : start + batch]))
            found += int(np.sum(valid))
        if overview:
            smear.overview(overview)
    return found


def child(a: argparse.Namespace) -> None:
    """One measured run; prints a JSON line (seconds, boxes, RSS after imports in MB)."""
    import resource

    import zarr  # noqa: F401 - loaded lazily by open_smear

    import bloodcell.detect.smear_reader  # noqa: F401
    import bloodcell.detect.whole_smear  # noqa: F401 - imports before the baseline

    detect = model_detector(a.model) if a.model else stand_in
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    boxes = walk(a.child, a.scale, detect, a.batch, a.overview)
    print(json.dumps({"seconds": time.perf_counter() - start, "boxes": boxes,
                      "import_mb": base}))


def measure_cli(path: Path, a: argparse.Namespace) -> tuple[dict, float]:
    """Run ``bloodcell detect`` on one smear; (seconds, cells, RSS after start-up), peak RSS."""
    out = path.with_suffix(".out")
    cmd = [sys.executable, "-m", "bloodcell", "-q", "detect", str(path), "--out", str(out),
           "--model", str(a.model), "--scale", str(a.scale)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"bloodcell detect failed on {path}")
    cells = sum(1 for _ in (out / f"{path.stem}.cells.csv").open()) - 1
    shutil.rmtree(out)
    return {"seconds": seconds, "boxes": cells, "import_mb": float("nan")}, \
        usage.ru_maxrss / 1024


def measure(path: Path, a: argparse.Namespace) -> tuple[dict, float]:
    """Run one child; (its JSON result, its peak RSS in MB from os.wait4)."""
    cmd = [sys.executable, __file__, "--child", str(path), "--scale", str(a.scale),
           "--batch", str(a.batch), "--overview", str(a.overview)]
    if a.model:
        cmd += ["--model", str(a.model)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}) on {path}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,5000,10000,20000",
                   help="comma-separated sides of the square smears, px")
    p.add_argument("--model", type=Path, help="trained detector .keras (default: a stand-in)")
    p.add_argument("--scale", type=float, default=1.0, help="detector scale of the view")
    p.add_argument("--batch", type=int, default=64, help="tiles per detector call")
    p.add_argument("--overview", type=int, default=0,
                   help="also build an overview of this many px a side (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli", action="store_true",
                   help="time `bloodcell detect` end to end (needs --model)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--side", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)
    if a.write:
        return write_smear(a.write, a.side, a.seed)
    if a.cli and not a.model:
        p.error("--cli needs --model")
    sides = [int(s) for s in a.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="large_smears_"))
    what = "bloodcell detect end to end" if a.cli else f"tiles in batches of {a.batch}"
    print(f"{os.cpu_count()} CPUs, {'model ' + str(a.model) if a.model else 'numpy stand-in'},"
          f" scale {a.scale:g}, {what}, tiles {TILE_PX} px zlib BigTIFF")
    print(f"{'side':>6} {'MP':>6} {'write s':>8} {'file MB':>8} {'s':>7} {'s/MP':>7} "
          f"{'peak MB':>8} {'import MB':>9} {'boxes':>7}")
    try:
        for side in sides:
            path = folder / f"smear_{side}.tif"
            start = time.perf_counter()  # in a child too: the parent stays small, as a
            subprocess.run([sys.executable, __file__, "--write", str(path), "--side",  # fork
                            str(side), "--seed", str(a.seed)], check=True)  # copies its RSS
            written = time.perf_counter() - start
            result, peak = measure_cli(path, a) if a.cli else measure(path, a)
            mp = side * side / 1e6
            print(f"{side:6d} {mp:6.0f} {written:8.1f} {path.stat().st_size / 2**20:8.0f} "
                  f"{result['seconds']:7.1f} {result['seconds'] / mp:7.3f} {peak:8.0f} "
                  f"{result['import_mb']:9.0f} {result['boxes']:7d}", flush=True)
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
