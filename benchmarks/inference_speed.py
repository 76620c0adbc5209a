"""Detector inference speed: ms per 224 tile by batch size, and whole slides end to end.

Tiles: the compiled call that `bloodcell detect` and the evaluation use (model, decoding and
NMS together), and Keras `predict` on one tile for comparison. Slides: read the PNG, tile,
detect, second pass, merge, write the annotated PNG and the GeoJSON.

    python benchmarks/inference_speed.py [--model models/detector.keras] [--slides data/slides]

Without a trained model an untrained detector is timed (the same FLOPs; NMS sees other boxes).
Targets (issue 5): <= 5 ms per tile at batch >= 25 and <= 0.3 s per 1000x1000 slide on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def tiles(detect, net, repeats: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for batch in (1, 25, 50, 100):
        x = rng.integers(0, 255, (batch, 224, 224, 3), np.uint8)
        detect(x)
        t = best_of(lambda: detect(x), repeats)
        print(f"tiles: batch {batch:3d}: {1000 * t / batch:6.2f} ms per tile (model+decode+NMS)")
    one = rng.integers(0, 255, (1, 224, 224, 3), np.uint8)
    net.predict(one, verbose=0)
    t = best_of(lambda: net.predict(one, verbose=0), repeats)
    print(f"tiles: Keras predict, one tile: {1000 * t:6.2f} ms")


def slides(detect, folder: Path, repeats: int) -> None:
    import cv2
    import numpy as np

    from bloodcell.common.image_files import write_png
    from bloodcell.detect.outputs import annotate, write_geojson
    from bloodcell.detect.smear_reader import read_smear
    from bloodcell.detect.whole_smear import SlideConfig, detect_slide

    paths = sorted(folder.glob("images/*.png"))
    if not paths:
        rng = np.random.default_rng(1)
        folder = Path(tempfile.mkdtemp())
        (folder / "images").mkdir()
        cv2.imwrite(str(folder / "images" / "random.png"),
                    rng.integers(0, 255, (1000, 1000, 3), np.uint8))
        paths = [folder / "images" / "random.png"]
    out = Path(tempfile.mkdtemp())

    def one(path: Path) -> int:
        bgr = read_smear(path)  # as `bloodcell detect` reads
        dets = detect_slide(detect, np.ascontiguousarray(bgr[:, :, ::-1]), SlideConfig())
        dets = dets.assign(image_id=path.stem)
        write_png(out / f"{path.stem}.png", annotate(bgr, dets))
        write_geojson(dets, out / f"{path.stem}.geojson")
        return len(dets)

    one(paths[0])
    for path in paths[:3] + [p for p in paths if "1000" not in p.stem][3:5]:
        shape = cv2.imread(str(path)).shape
        n = one(path)
        times = [best_of(lambda: one(path), 1) for _ in range(repeats)]
        print(f"slide {path.name} ({shape[1]}x{shape[0]}): {statistics.median(times):.3f} s "
              f"end to end, {n} cells")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/detector.keras"))
    p.add_argument("--slides", type=Path, default=Path("data/slides"))
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    import tensorflow as tf

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.model import network as model
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.inference import load_detector, tile_detector

    tf.config.threading.set_inter_op_parallelism_threads(1)
    trained = a.model.is_file()
    net = load_detector(a.model) if trained else model.fold_batchnorm(model.detector())
    print(f"{os.cpu_count()} CPUs, {'trained model ' + str(a.model) if trained else 'untrained'}")
    detect = tile_detector(net, ORIGINAL_ANCHORS, DecodeConfig())
    tiles(detect, net, a.repeats)
    slides(detect, a.slides, a.repeats)


if __name__ == "__main__":
    main()
