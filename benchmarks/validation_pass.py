"""Time of the detector's per-epoch validation: one forward pass per batch for the loss and the
mAP's detections (training now) against the two passes it made before (the loss over the
training input's batches, then ``predict_shards`` for the detections), in one run.

    python benchmarks/validation_pass.py --shards RUN/data/synth --model RUN/models/detector.keras

Prints the seconds of each way (best of ``--repeats``), their ratio, and both ways' loss and
mAP@0.5, which must agree (the loss with the default loss weights, not necessarily the run's).
Measured on the public preset's 400 validation tiles (passthrough head, 2 cores): 5.2 s
against 8.1 s, 0.64 of the time, about 3 s of each detector epoch. A second line times the one
pass scored by pycocotools' default evaluation (four area ranges, ten IoU thresholds), as it was
before the validation scored IoU 0.5 and the range 'all' alone (the same mAP@0.5).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def two_passes(cfg, net, files: list[str]) -> dict[str, float]:
    """The validation as it was: loss over the training input's batches, then detections."""
    from bloodcell.common.tile import TILE_PX
    from bloodcell.evaluate.metrics import coco_metrics
    from bloodcell.model.inference import predict_shards
    from bloodcell.train import input_pipeline, loop

    step = loop.validation_step(cfg, net)
    loss = n = 0
    for images, targets in input_pipeline.dataset(files, cfg.batch, "detector",
                                                  anchors=cfg.anchors, match_iou=cfg.match_iou):
        batch_loss, _ = step(images, targets)
        loss += float(batch_loss) * int(images.shape[0])
        n += int(images.shape[0])
    gt, det, ids = predict_shards(net, files, cfg.anchors, cfg.decode, batch=cfg.batch)
    sizes = {i: (TILE_PX, TILE_PX) for i in ids}
    return {"loss": loss / n, "map50": coco_metrics(gt, det, ids, sizes)["map50"]}


def default_coco_map50(gt, det, image_ids, image_sizes) -> float:
    """mAP@0.5 from pycocotools' default bbox evaluation (all four area ranges, ten IoUs)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from bloodcell.evaluate import metrics

    gt, det = metrics._boxes(gt, False, "gt"), metrics._boxes(det, True, "det")
    ids = metrics._image_list(image_ids, gt, det)
    ev = COCOeval(*metrics._coco_pair(gt, det, ids, image_sizes), iouType="bbox")
    ev.params.maxDets = [1, 100, 1000]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def best_time(fn, repeats: int) -> tuple[float, dict]:
    """The shortest wall time of ``repeats`` calls (after one warm-up call) and the result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, required=True, help="a run's data/synth")
    ap.add_argument("--model", type=Path, required=True, help="a trained models/detector.keras")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import keras

    import bloodcell.model.fused_batchnorm  # noqa: F401  registers the layer for loading
    from bloodcell.dataset.tfrecords import record_files
    from bloodcell.model.card import read_card
    from bloodcell.model.decode import DecodeConfig
    from bloodcell.train import loop

    net = keras.models.load_model(a.model, compile=False)
    anchors = read_card(a.model)["anchors"]
    cfg = loop.TrainConfig(kind="detector", epochs=1, batch=a.batch, schedule=((1, 1e-3),),
                           seed=0, anchors=tuple(map(tuple, anchors)),
                           decode=DecodeConfig(score_threshold=0.01))
    files = record_files(sorted(a.shards.glob("valid-*")))
    step = loop.validation_step(cfg, net)
    one_s, one = best_time(
        lambda: loop.evaluate(cfg, step, loop.datasets(cfg, ([], files, ()), 1, 0)[1]),
        a.repeats)
    two_s, two = best_time(lambda: two_passes(cfg, net, files), a.repeats)
    loop.coco_map50, scored_by = default_coco_map50, loop.coco_map50
    try:
        full_s, full = best_time(
            lambda: loop.evaluate(cfg, step, loop.datasets(cfg, ([], files, ()), 1, 0)[1]),
            a.repeats)
    finally:
        loop.coco_map50 = scored_by
    print(f"one pass : {one_s:6.2f} s  loss {one['loss']:.4f}  mAP@0.5 {one['map50']:.4f}")
    print(f"one pass, pycocotools' default evaluation: {full_s:6.2f} s  mAP@0.5 "
          f"{full['map50']:.4f}  ({one_s / full_s:.3f} of its time at IoU 0.5 and 'all' alone)")
    print(f"two passes: {two_s:6.2f} s  loss {two['loss']:.4f}  mAP@0.5 {two['map50']:.4f}")
    print(f"one / two: {one_s / two_s:.3f} of the time")


if __name__ == "__main__":
    main()
