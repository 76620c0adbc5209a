"""The two training phases: the multi-label classifier, then the detector on its trunk.

Both use Adam and a piecewise-constant learning-rate schedule by epoch (params), keep the best model
by a validation metric (the detector optionally validates and keeps an exponential moving average
of its weights, ``train_detector.ema``), and save a resumable state after every epoch (see
bloodcell.train.checkpoints): a killed run restarts from its last finished epoch with the
optimizer's state, and sees the same batches as an uninterrupted run (the shuffle is seeded per
epoch). A run holds a lock on its state folder (a second run of the same stage is refused), and a
non-finite loss stops training with a UserError naming the epoch, step and loss terms; the last
finished epoch's state stays on disk.

Outputs: the best model as ``.keras``, a per-epoch history CSV (for ``dvc plots``) and a
metrics JSON (for ``dvc metrics``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from bloodcell.common.atomic import atomic_file
from bloodcell.common.errors import UserError
from bloodcell.common.hyperparams import learning_rate
from bloodcell.common.tile import TILE_PX
from bloodcell.dataset.tfrecords import count_records, record_files
from bloodcell.evaluate.metrics import coco_map50
from bloodcell.model import card as model_card
from bloodcell.model import network as models
from bloodcell.model.decode import DecodeConfig, detect_batch, to_frame
from bloodcell.model.inference import ground_truth
from bloodcell.train import checkpoints as checkpoint
from bloodcell.train import input_pipeline as data
from bloodcell.train.loss import LossWeights, classifier_loss, detector_loss, detector_terms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """One phase's params. ``schedule``: (first epoch, learning rate) pairs, epochs from 1."""

    kind: str  # "classifier" or "detector"
    epochs: int
    batch: int
    schedule: tuple[tuple[int, float], ...]
    seed: int
    anchors: tuple[tuple[float, float], ...] = ()
    match_iou: float = 0.7
    weights: LossWeights = field(default_factory=LossWeights)
    select: str = "accuracy"  # classifier: accuracy; detector: map50 or loss
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(score_threshold=0.01))
    """Post-processing for the validation mAP (a low threshold: AP integrates over scores)."""
    policy: str = "float32"
    """Keras dtype policy (bloodcell.train.precision.policy: float32, mixed_bfloat16 or
    mixed_float16)."""
    deterministic: bool = True
    real_share: float = 0.0
    """Share of each detector epoch's images drawn from real tiles (when a real shard is given)."""
    head: str = "plain"
    """The detector head (bloodcell.model.network.HEADS)."""
    augment: str = "none"
    """Training-tile augmentation (bloodcell.train.augment.MODES)."""
    ema: float = 0.0
    """Momentum of an exponential moving average of the weights, updated after every step
    (Keras's ``use_ema``); validation scores, and the best model keeps, the average. 0: off,
    the model's own weights (the original)."""


def setup(cfg: TrainConfig) -> None:
    """Seeds, determinism and precision policy, before any model is built."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
        try:  # concurrent ops break determinism on CPU (see bloodcell.common.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the runtime already started: the caller has set it
            pass
    keras.mixed_precision.set_global_policy(cfg.policy)


@contextlib.contextmanager
def policy_kept() -> Iterator[None]:
    """Restores Keras's global dtype policy on exit: setup() sets the run's, and models that a
    caller builds after training in the same process (tests, notebooks) are its own."""
    policy = keras.mixed_precision.global_policy()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def step_fn(model: keras.Model, optimizer, loss_fn: Callable,
            terms_fn: Callable | None = None) -> Callable:
    """A compiled training step: (images, labels) -> (loss before the update, its terms: a dict
    of batch means from ``terms_fn``, computed outside the gradient, for messages)."""

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            loss = loss_fn(labels, out)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, ({} if terms_fn is None else terms_fn(labels, out))

    return step


def loss_function(cfg: TrainConfig) -> Callable:
    if cfg.kind == "classifier":
        return classifier_loss
    return lambda y, p: detector_loss(y, p, cfg.weights, cfg.anchors)


def loss_terms(cfg: TrainConfig) -> Callable:
    """(labels, outputs) -> the loss's unweighted terms, batch means (for a non-finite loss's
    message): the classifier's cross-entropy, or the detector's coord, obj, noobj and class."""
    if cfg.kind == "classifier":
        return lambda y, p: {"cross_entropy": classifier_loss(y, p)}
    return lambda y, p: {k: tf.reduce_mean(v)
                         for k, v in detector_terms(y, p, cfg.weights.class_loss,
                                                    cfg.weights.untyped_wbc,
                                                    cfg.weights.obj_loss,
                                                    cfg.weights.box_loss, cfg.anchors,
                                                    cfg.weights.obj_target).items()}


class NonFiniteLoss(Exception):
    """A training step's loss was NaN or infinite (step from 1, loss, terms)."""

    def __init__(self, step: int, loss: float, terms: dict[str, float]) -> None:
        super().__init__(step, loss, terms)
        self.step, self.loss, self.terms = step, loss, terms


def train_one_epoch(step: Callable, batches: tf.data.Dataset, n_images: int, desc: str
                    ) -> tuple[float, float]:
    """One pass over the training batches with the compiled ``step`` (which updates the
    weights); returns (mean loss per image, images per second). Raises NonFiniteLoss at the
    first step whose loss is not finite."""
    total, seen, start = 0.0, 0, time.perf_counter()
    with tqdm(total=n_images, desc=desc, unit="img", file=sys.stderr, leave=False,
              mininterval=2.0) as bar:
        for k, (images, labels) in enumerate(batches, 1):
            n = int(images.shape[0])
            loss, terms = step(images, labels)
            value = float(loss)
            if not math.isfinite(value):
                raise NonFiniteLoss(k, value, {t: float(v) for t, v in terms.items()})
            total += value * n
            seen += n
            bar.update(n)
            bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1), seen / (time.perf_counter() - start)


def evaluate(cfg: TrainConfig, val_step: Callable, batches: tf.data.Dataset
             ) -> dict[str, float]:
    """The validation pass over ``batches`` (see :func:`datasets`): the mean loss and, for the
    classifier, exact-match accuracy (10 sigmoids at 0.5), for the detector mAP@0.5
    (pycocotools) of its detections, both from one forward pass per batch."""
    if cfg.kind == "detector":
        return evaluate_detector(val_step, batches)
    loss, hits, n = 0.0, 0, 0
    for images, labels in batches:
        batch_loss, batch_hits = val_step(images, labels)
        loss += float(batch_loss) * int(images.shape[0])
        hits += int(batch_hits)
        n += int(images.shape[0])
    return {"loss": loss / max(n, 1), "accuracy": hits / max(n, 1)}


def evaluate_detector(val_step: Callable, batches: tf.data.Dataset) -> dict[str, float]:
    """The detector's validation loss and mAP@0.5 over batches of
    :func:`bloodcell.train.input_pipeline.validation_examples`."""
    loss, n, gts, dets, ids = 0.0, 0, [], [], []
    for ex in batches:
        images = dense(ex["image"])
        batch_loss, found = val_step(images, dense(ex["target"]))
        image_ids = [i.decode() for i in ex["id"].numpy()]
        loss += float(batch_loss) * len(image_ids)
        n += len(image_ids)
        dets.append(to_frame(image_ids, *(t.numpy() for t in found)))
        gts.append(ground_truth(ex))
        ids += image_ids
    sizes = {i: (TILE_PX, TILE_PX) for i in ids}
    gt, det = pd.concat(gts, ignore_index=True), pd.concat(dets, ignore_index=True)
    return {"loss": loss / max(n, 1), "map50": coco_map50(gt, det, ids, sizes)}


def dense(t: tf.Tensor | tf.RaggedTensor) -> tf.Tensor:
    """A batch component of a ragged batch as a dense tensor (it is ragged only in type)."""
    return t.to_tensor() if isinstance(t, tf.RaggedTensor) else t


def validation_step(cfg: TrainConfig, net: keras.Model) -> Callable:
    """The compiled validation step. Classifier: (images, labels) -> (batch loss, exact-match
    hits). Detector: (images, targets) -> (batch loss, NMS results of the same outputs at
    ``cfg.decode``)."""
    if cfg.kind == "classifier":
        @tf.function
        def stats(images, labels):
            logits = net(images, training=False)
            hit = tf.reduce_all(tf.equal(tf.cast(logits > 0, tf.float32), labels), axis=1)
            return classifier_loss(labels, logits), tf.reduce_sum(tf.cast(hit, tf.int32))
    else:
        @tf.function(reduce_retracing=True)
        def stats(images, targets):
            raw = net(images, training=False)
            return (detector_loss(targets, raw, cfg.weights, cfg.anchors),
                    detect_batch(raw, cfg.anchors, cfg.decode))
    return stats


def improved(cfg: TrainConfig, value: float, best: float | None) -> bool:
    """Whether a validation value beats the best so far (loss: lower; others: higher)."""
    if best is None:
        return True
    return value < best if cfg.select == "loss" else value > best


def datasets(cfg: TrainConfig, files: tuple[list[str], list[str], tuple[str, ...]], epoch: int,
             n_images: int, decoded: tf.data.Dataset | None = None
             ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The epoch's training batches (synthetic, or mixed with real tiles) and validation ones
    (the detector's with their ground truth: data.validation_examples); ``files``: the train,
    valid and real-tile TFRecords; ``decoded``: the synthetic training examples held in memory
    (data.decoded_examples), or None to read them from the files."""
    train_files, valid_files, real_files = files
    kw = {"anchors": cfg.anchors, "match_iou": cfg.match_iou}
    seed = cfg.seed * 1000 + epoch
    aug = {"augment_mode": cfg.augment}
    if mixes_real(cfg, real_files):
        train = data.mixed(train_files, real_files, cfg.real_share, n_images, cfg.batch, seed,
                           **kw, **aug)
    else:
        train = data.dataset(train_files, cfg.batch, cfg.kind, shuffle_seed=seed, **kw, **aug,
                             decoded=decoded)
    if cfg.kind == "detector":
        return train, data.validation_examples(valid_files, cfg.batch, **kw)
    return train, data.dataset(valid_files, cfg.batch, cfg.kind, **kw)


def mixes_real(cfg: TrainConfig, real_files: Sequence[str]) -> bool:
    """Whether the training epochs mix real tiles in (data.mixed) rather than read the
    synthetic shards alone."""
    return bool(real_files) and cfg.real_share > 0


def build(cfg: TrainConfig, init_from: Path | None) -> keras.Model:
    """A fresh model; the detector's trunk is copied from the classifier at ``init_from``."""
    if cfg.kind == "classifier":
        return models.classifier()
    net = models.detector(head=cfg.head)
    if init_from is not None:
        check_keras_file(init_from, "--init")
        try:
            trained = keras.models.load_model(init_from, compile=False, safe_mode=True)
            models.copy_trunk(trained, net)
        except Exception as e:  # a broken or foreign file: Keras raises many kinds
            raise UserError(f"{init_from} is not a readable ModifiedYolo model "
                            f"({type(e).__name__}): pass --init models/classifier.keras from "
                            "train_classifier") from None
    return net


def check_keras_file(path: Path, what: str) -> None:
    """UserError unless ``path`` names a native ``.keras`` model file: other formats (HDF5
    ``.h5``, SavedModel folders) are never loaded."""
    if Path(path).suffix != ".keras":
        raise UserError(f"{path}: {what} must be a .keras model file (got "
                        f"{Path(path).suffix or 'no suffix'}); other formats are not loaded")


def fit(cfg: TrainConfig, train_files: list[str], valid_files: list[str], state_dir: Path,
        init_from: Path | None = None, real_files: tuple[str, ...] = ()
        ) -> tuple[keras.Model, dict]:
    """Train (or resume) one phase: per epoch, set the learning rate, train_one_epoch, evaluate
    (with ``cfg.ema``, the moving average of the weights), keep the best weights and save the
    resumable state. Returns the best model and the state."""
    setup(cfg)
    net = build(cfg, init_from)
    optimizer = adam(cfg)
    state = initial_state(train_files, valid_files, real_files, cfg.real_share)
    done = checkpoint.latest(state_dir)
    if done is not None:
        state = checkpoint.restore(done, net, optimizer)
        log.info("resuming %s after epoch %d from %s", cfg.kind, state["epoch"], done)
    step = step_fn(net, optimizer, loss_function(cfg), loss_terms(cfg))
    val_step = validation_step(cfg, net)
    best_path = done / "best.weights.h5" if done is not None else None
    n_images = state["data"]["train_images"]
    decoded = None if mixes_real(cfg, real_files) else data.decoded_examples(train_files,
                                                                             n_images)
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        lr = learning_rate(cfg.schedule, epoch)
        optimizer.learning_rate.assign(lr)
        train_ds, valid_ds = datasets(cfg, (train_files, valid_files, real_files), epoch,
                                      n_images, decoded)
        start = time.perf_counter()
        try:
            loss, speed = train_one_epoch(step, train_ds, n_images,
                                          f"{cfg.kind} epoch {epoch}/{cfg.epochs}")
        except NonFiniteLoss as bad:
            raise non_finite_error(cfg, epoch, lr, bad, kept(state_dir, state)) from None
        with averaged_weights(net, optimizer):
            val = evaluate(cfg, val_step, valid_ds)
            scored = kept_average(net, state_dir, cfg, val, state.get("best"))
        if not math.isfinite(val["loss"]):
            raise UserError(f"{cfg.kind} epoch {epoch}: non-finite validation loss "
                            f"{val['loss']} at learning rate {lr:g}; training stopped, "
                            f"{kept(state_dir, state)}; lower the learning rate (train_"
                            f"{cfg.kind}.schedule in params.yaml) or check the validation data")
        better = record_epoch(cfg, state, epoch, lr, loss, val, speed, start)
        best = scored if better else best_path
        saved = checkpoint.save(state_dir, epoch, net, optimizer, best, state)
        best_path = saved / "best.weights.h5"
    if best_path is not None:
        net.load_weights(best_path)
    return net, state


def adam(cfg: TrainConfig) -> keras.optimizers.Adam:
    """Adam at the schedule's first learning rate; with ``cfg.ema`` it also keeps the moving
    average of the trainable weights (its variables are the optimizer's, so checkpoints keep
    them)."""
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema > 0 else {}
    return keras.optimizers.Adam(learning_rate=learning_rate(cfg.schedule, 1), **ema)


@contextlib.contextmanager
def averaged_weights(net: keras.Model, optimizer: keras.optimizers.Optimizer
                     ) -> Iterator[None]:
    """Within the block ``net`` holds the optimizer's moving average of its trainable weights
    (an optimizer without EMA: its own weights); on exit the trained weights come back."""
    if not optimizer.use_ema:
        yield
        return
    trained = [v.numpy() for v in net.trainable_variables]
    optimizer.finalize_variable_values(net.trainable_variables)
    try:
        yield
    finally:
        for var, value in zip(net.trainable_variables, trained):
            var.assign(value)


def kept_average(net: keras.Model, state_dir: Path, cfg: TrainConfig, val: dict,
                 best: float | None) -> Path | None:
    """With EMA, the averaged weights ``net`` holds now written to the state folder when they
    score best so far (the checkpoint then keeps them as its best model); else None."""
    if cfg.ema <= 0 or not improved(cfg, val[cfg.select], best):
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "averaged.weights.h5"
    net.save_weights(path)
    return path


def initial_state(train_files: list[str], valid_files: list[str], real_files: tuple[str, ...],
                  real_share: float) -> dict:
    """A new run's state: no epoch done, and the image counts of its data (UserError when the
    training or validation shards are empty)."""
    stats = {"train_images": count_records(train_files),
             "valid_images": count_records(valid_files)}
    if real_files:
        stats["real_tiles"] = count_records(real_files)
        stats["real_share"] = real_share
    if stats["train_images"] == 0 or stats["valid_images"] == 0:
        raise UserError(f"no training or validation images in {train_files + valid_files}: "
                        "run the synth stage first")
    return {"epoch": 0, "best": None, "best_epoch": None, "history": [], "data": stats}


def non_finite_error(cfg: TrainConfig, epoch: int, lr: float, bad: NonFiniteLoss,
                     kept_state: str) -> UserError:
    """The one-line error of a training step whose loss was not finite."""
    terms = ", ".join(f"{k} {v:.6g}" for k, v in bad.terms.items())
    return UserError(f"{cfg.kind} epoch {epoch} step {bad.step}: non-finite loss {bad.loss} "
                     f"({terms}) at learning rate {lr:g}; training stopped, {kept_state}; "
                     f"lower the learning rate (train_{cfg.kind}.schedule in params.yaml) or "
                     "check the training data")


def record_epoch(cfg: TrainConfig, state: dict, epoch: int, lr: float, loss: float,
                 val: dict[str, float], speed: float, start: float) -> bool:
    """Add the epoch to ``state`` (history row, best value and epoch, epoch count) and log it;
    whether it is the best so far."""
    value = val[cfg.select]
    better = improved(cfg, value, state["best"])
    if better:
        state["best"], state["best_epoch"] = value, epoch
    state["history"].append({"epoch": epoch, "lr": lr, "train_loss": loss,
                             **{f"valid_{k}": v for k, v in val.items()},
                             "images_per_s": speed, "seconds": time.perf_counter() - start})
    state["epoch"] = epoch
    log.info("%s epoch %d: lr %g, train loss %.4f, %s, %.1f img/s%s", cfg.kind, epoch, lr, loss,
             ", ".join(f"valid {k} {v:.4f}" for k, v in val.items()), speed,
             " (best)" if better else "")
    return better


def kept(state_dir: Path, state: dict) -> str:
    """Which saved state a stopped run leaves behind, for its message."""
    if state["epoch"] == 0:
        return f"no epoch had finished (state folder {state_dir})"
    return f"the last good state (epoch {state['epoch']}) is kept in {state_dir}"


TIMING = ("images_per_s", "seconds")
"""History fields that vary from run to run: logged and kept in the state, not in outputs."""


def renumber_shared_ids(config: str) -> str:
    """Keras writes Python object addresses as ``shared_object_id``; number them 1, 2, ... in
    order of appearance instead (the same sharing, stable bytes)."""
    ids: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        return f'{m.group(1)}{ids.setdefault(m.group(2), str(len(ids) + 1))}'

    return re.sub(r'("shared_object_id": )(\d+)', sub, config)


def save_model(net: keras.Model, path: Path, card: dict | None = None) -> None:
    """Save a .keras file atomically and byte-reproducibly: Keras stamps the save time into the
    zip entries and metadata.json; both are fixed here (the weights file is already stable).
    ``card``: the detector's card (bloodcell.model.card), added as one more zip entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=path.parent) as tmp:
        raw = Path(tmp) / path.name  # Keras wants the .keras suffix
        net.save(raw)
        with zipfile.ZipFile(raw) as src, atomic_file(path) as dst_path, \
                zipfile.ZipFile(dst_path, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                elif info.filename == "config.json":
                    data = renumber_shared_ids(data.decode()).encode()
                dst.writestr(zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0)), data)
            if card is not None:
                dst.writestr(zipfile.ZipInfo(model_card.ENTRY, (1980, 1, 1, 0, 0, 0)),
                             model_card.card_bytes(card))


def write_outputs(net: keras.Model, state: dict, cfg: TrainConfig, model_path: Path,
                  history_csv: Path, metrics_json: Path, card: dict | None = None) -> None:
    """The best model (.keras, with ``card``), the per-epoch history (CSV) and the metrics
    (JSON)."""
    save_model(net, model_path, card)
    history = pd.DataFrame(state["history"]).drop(columns=list(TIMING))
    first = ["epoch", "lr", "train_loss", "valid_loss"]
    history = history[first + sorted(set(history.columns) - set(first))]
    with atomic_file(history_csv) as tmp:
        history.to_csv(tmp, index=False, float_format="%.6g")
    metrics = {"best_epoch": state["best_epoch"], f"best_valid_{cfg.select}": state["best"],
               "epochs": state["epoch"], "final_train_loss": state["history"][-1]["train_loss"],
               "precision": cfg.policy, **state["data"]}
    # 6 significant digits, as in the history CSV: in CI the final loss's last digits once
    # differed between the Snakemake and the DVC run of one command whose models were equal
    metrics = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in metrics.items()}
    with atomic_file(metrics_json) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def detector_card(cfg: TrainConfig, key_args: list[str], inputs: list[Path],
                  init_from: Path | None) -> dict | None:
    """The card a trained detector carries (bloodcell.model.card); None for the classifier."""
    if cfg.kind != "detector":
        return None
    from bloodcell.common.tile import MODEL_RBC_PX

    decode = {"nms_iou": cfg.decode.nms_iou, "map_score_threshold": cfg.decode.score_threshold}
    return model_card.make_card(cfg.anchors, decode, MODEL_RBC_PX, key_args, inputs, init_from)


def run(cfg: TrainConfig, train_dirs: list[Path], valid_dirs: list[Path], model_path: Path,
        history_csv: Path, metrics_json: Path, key_args: list[str],
        init_from: Path | None = None, real_dirs: list[Path] | None = None) -> None:
    """Train one phase from shard folders and write its outputs; resumes when it can."""
    real_dirs = real_dirs or []
    check_keras_file(model_path, "--model")
    if init_from is not None:
        check_keras_file(init_from, "--init")
    inputs = [*train_dirs, *valid_dirs, *([init_from] if init_from else []), *real_dirs]
    for path in inputs:
        if not Path(path).exists():
            raise UserError(f"{path} does not exist: run the stages before training first")
    state_dir = checkpoint.STATE_ROOT / f"train_{cfg.kind}-{checkpoint.state_key(key_args, inputs)}"
    with policy_kept(), checkpoint.locked(state_dir, f"train-{cfg.kind}"):
        try:
            net, state = fit(cfg, record_files(train_dirs), record_files(valid_dirs),
                             state_dir, init_from, tuple(record_files(real_dirs)))
        except BaseException:
            if checkpoint.latest(state_dir) is None:  # nothing to resume: leave no trace
                checkpoint.clear(state_dir)
            raise
        card = detector_card(cfg, key_args, [*train_dirs, *valid_dirs, *real_dirs], init_from)
        write_outputs(net, state, cfg, model_path, history_csv, metrics_json, card)
        checkpoint.clear(state_dir)
