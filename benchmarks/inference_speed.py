"""Detector inference speed: ms per 224 tile by batch size, and whole slides end to end.

Tiles: the compiled call that `bloodcell detect` and the evaluation use (model, decoding and
NMS together), and Keras `predict` on one tile for comparison. Slides: read the PNG, tile,
detect, second pass, merge, write the annotated PNG and the GeoJSON.

    python benchmarks/inference_speed.py [--model models/detector.keras] [--slides data/slides]

Without a trained model an untrained detector is timed (the same FLOPs; NMS sees other boxes).
Targets (issue 5): <= 5 ms per tile at batch >= 25 and <= 0.3 s per 1000x1000 slide on 2 cores.

``--int8`` (instead of the tile and slide timings) compares the network's paths through the same
decoding and NMS: TensorFlow float32 (the compiled call above), TFLite float32, TFLite int8
(full-integer, calibrated on ``--calibration`` tiles of the train and valid shards), int8 with
the output convolution in float32, and dynamic-range int8; all TFLite paths on XNNPACK with
2 threads (bloodcell.model.quantize). It prints ms per tile by batch size, COCO mAP@0.5 and
mAP@[.5:.95] on the test shards (as ``bloodcell evaluate``), and each path's time ratio and mAP
difference to TensorFlow float32. The int8 model is converted twice to check the bytes are equal.

    python benchmarks/inference_speed.py --model models/detector.keras --int8 --shards data/synth

``--tta`` (instead of the tile and slide timings) times whole slides through
bloodcell.detect.whole_smear.detect_slide with each test-time augmentation mode (decode.tta:
none, flips, dihedral; bloodcell.model.tta), paths interleaved, and prints seconds per slide and
each mode's time over ``none``'s.

    python benchmarks/inference_speed.py --model models/detector.keras --tta --slides data/slides
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


BATCHES = (1, 25, 50, 100)


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
    for batch in BATCHES:
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


def tta_slides(detect, folder: Path, repeats: int) -> None:
    """Seconds per slide (read, detect with the second pass, merge) for each tta mode."""
    import numpy as np

    from bloodcell.detect.smear_reader import read_smear
    from bloodcell.detect.whole_smear import DEFAULT_OVERLAP_PX, SlideConfig, detect_slide
    from bloodcell.model.tta import VIEWS, ViewFusion

    paths = sorted(folder.glob("images/*.png"))[:3]
    if not paths:
        raise SystemExit(f"--tta needs slides: no {folder}/images/*.png")
    cfg = SlideConfig(overlap=DEFAULT_OVERLAP_PX)
    modes = {m: detect if n == 1 else ViewFusion(detect, n, 0.2) for m, n in VIEWS.items()}
    images = [np.ascontiguousarray(read_smear(p)[:, :, ::-1]) for p in paths]
    for fn in modes.values():
        detect_slide(fn, images[0], cfg)  # compile and warm up
    best = {m: [float("inf")] * len(images) for m in modes}
    for _ in range(repeats):
        for k, image in enumerate(images):
            for m, fn in modes.items():
                best[m][k] = min(best[m][k], best_of(lambda: detect_slide(fn, image, cfg), 1))
    sizes = ", ".join(f"{im.shape[1]}x{im.shape[0]}" for im in images)
    print(f"seconds per slide ({len(images)} slides of {folder}: {sizes}; best of {repeats}, "
          "median over slides)")
    ref = statistics.median(best["none"])
    for m in modes:
        t = statistics.median(best[m])
        print(f"tta {m:10s}{t:8.3f} s  ({t / ref:4.2f} x none)")


def quantised(net, model_path: Path, shards: Path, calibration: int, repeats: int) -> None:
    """TF float32 against the TFLite paths: conversion, ms per tile, test-split COCO mAP."""
    import hashlib
    from dataclasses import replace

    import numpy as np

    from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
    from bloodcell.common.tile import TILE_PX
    from bloodcell.dataset.tfrecords import record_files
    from bloodcell.evaluate.on_test_split import EvalConfig, score
    from bloodcell.model import quantize
    from bloodcell.model.card import model_anchors
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.model.inference import predict_shards, tile_detector

    fit = sorted(shards.glob("train-*")) + sorted(shards.glob("valid-*"))
    test = sorted(shards.glob("test-*"))
    if not fit or not test:
        raise SystemExit(f"{shards}: needs train-*/valid-* (calibration) and test-* shards")
    anchors = model_anchors(model_path, None, ORIGINAL_ANCHORS)
    start = time.perf_counter()
    tiles = quantize.calibration_tiles(record_files(fit), calibration)
    print(f"calibration: {len(tiles)} tiles of {', '.join(d.name for d in fit)} "
          f"({time.perf_counter() - start:.1f} s to read)")

    flat = {}
    for name, mode, float_last in (("tflite float32", "float32", False),
                                   ("tflite int8", "int8", False),
                                   ("tflite int8, conv24 float", "int8", True),
                                   ("tflite dynamic-range int8", "dynamic", False)):
        start = time.perf_counter()
        flat[name] = quantize.to_tflite(net, tiles, mode, float_last)
        took = time.perf_counter() - start
        digest = hashlib.sha256(flat[name]).hexdigest()[:16]
        again = ""
        if mode == "int8":
            same = quantize.to_tflite(net, tiles, mode, float_last) == flat[name]
            again = f", second conversion {'identical' if same else 'DIFFERS'}"
        print(f"{name}: {len(flat[name]) / 1e6:.2f} MB, sha256 {digest}, {took:.1f} s{again}")

    runners = {name: quantize.TFLiteRunner(b, num_threads=2) for name, b in flat.items()}
    for name, r in runners.items():
        d = r.interpreter.get_input_details()[0]
        print(f"{name}: input {np.dtype(d['dtype']).name} quantisation {d['quantization']}")

    def paths(cfg: DecodeConfig) -> dict:
        out = {"tf float32": tile_detector(net, anchors, cfg)}
        out.update({n: quantize.tflite_tile_detector(r, anchors, cfg) for n, r in runners.items()})
        return out

    timed = paths(DecodeConfig())
    rng = np.random.default_rng(0)
    times: dict[str, dict[int, float]] = {n: {} for n in [*timed, "decode + NMS alone"]}
    for batch in BATCHES:  # paths interleaved, so a load change hits them alike; best of repeats
        x = rng.integers(0, 255, (batch, TILE_PX, TILE_PX, 3), np.uint8)
        raw = net(x, training=False).numpy()
        fns = {**timed, "decode + NMS alone": quantize.tflite_tile_detector(
            lambda _, raw=raw: raw, anchors, DecodeConfig())}
        for fn in fns.values():
            fn(x)
        best = {n: float("inf") for n in fns}
        for _ in range(repeats):
            for n, fn in fns.items():
                best[n] = min(best[n], best_of(lambda: fn(x), 1))
        for n in fns:
            times[n][batch] = 1000 * best[n] / batch

    cfg = EvalConfig(anchors, DecodeConfig())
    low = replace(cfg.decode, score_threshold=min(cfg.map_score_threshold,
                                                  cfg.decode.score_threshold))
    files = record_files(test)
    maps = {}
    for n, fn in paths(low).items():
        gt, det, ids = predict_shards(net, files, anchors, low, detect=fn)
        coco = score(gt, det, ids, {i: (TILE_PX, TILE_PX) for i in ids}, cfg)[0]["coco"]
        maps[n] = (coco["map50"], coco["map50_95"])
    ref_t, ref_m = times["tf float32"], maps["tf float32"]
    print(f"ms per tile (model + decode + NMS; best of {repeats}, paths interleaved) and, in "
          "brackets, TF float32's time / this path's")
    print(f"{'path':28s}" + "".join(f"{'batch ' + str(b):>15s}" for b in BATCHES))
    for n, t in times.items():
        ratio = n in timed
        print(f"{n:28s}" + "".join(f"{t[b]:8.2f}" + (f" ({ref_t[b] / t[b]:4.2f})" if ratio
                                                      else " " * 7) for b in BATCHES))
    print(f"COCO mAP on the test split ({len(ids)} images of {', '.join(d.name for d in test)}"
          "; d: this path - TF float32)")
    print(f"{'path':28s}{'mAP@0.5':>9s}{'d':>9s}{'mAP@[.5:.95]':>14s}{'d':>9s}")
    for n, (m50, m5095) in maps.items():
        print(f"{n:28s}{m50:9.4f}{m50 - ref_m[0]:+9.4f}{m5095:14.4f}{m5095 - ref_m[1]:+9.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/detector.keras"))
    p.add_argument("--slides", type=Path, default=Path("data/slides"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--int8", action="store_true",
                   help="compare TF float32 with TFLite float32, int8 and dynamic-range int8 "
                        "(time and test-split mAP) instead of the tile and slide timings")
    p.add_argument("--tta", action="store_true",
                   help="time whole slides with each test-time augmentation mode instead")
    p.add_argument("--shards", type=Path, default=Path("data/synth"),
                   help="--int8: folder of train-*/valid-* (calibration) and test-* shards")
    p.add_argument("--calibration", type=int, default=200,
                   help="--int8: calibration tiles, the first of the train then valid shards")
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
    if a.int8:
        if not trained:
            raise SystemExit(f"--int8 needs a trained model: {a.model} does not exist")
        quantised(net, a.model, a.shards, a.calibration, a.repeats)
        return
    if a.tta:
        from bloodcell.model.card import model_anchors

        anchors = model_anchors(a.model, None, ORIGINAL_ANCHORS) if trained else ORIGINAL_ANCHORS
        tta_slides(tile_detector(net, anchors, DecodeConfig()), a.slides, a.repeats)
        return
    detect = tile_detector(net, ORIGINAL_ANCHORS, DecodeConfig())
    tiles(detect, net, a.repeats)
    slides(detect, a.slides, a.repeats)


if __name__ == "__main__":
    main()
