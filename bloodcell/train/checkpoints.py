"""Resumable training state in an undeclared folder (Snakemake and DVC delete declared outputs).

Layout of a state folder (``.bloodcell-state/<stage>-<key>/``, key = hash of the stage's
arguments, its inputs' names and sizes, the source of the modules that shape the state
(CODE_FILES) and the Keras and TensorFlow versions, so a changed param, input or code starts
afresh):

- ``.lock``: held (flock) by the run using the folder; a second run of the same stage and key
  is refused (UserError) instead of sharing the folder;

- ``epoch-NNNN/``: written atomically after epoch NNNN finished: ``last.weights.h5`` (model),
  ``optimizer.npz`` (every Adam variable, iteration count and, with ``train_detector.ema``,
  the moving average of the weights included), ``best.weights.h5`` (best model so far) and
  ``state.json`` (epoch, learning rate, best metric and epoch, per-epoch history, data
  statistics);

- ``averaged.weights.h5``: with EMA, the moving average that scored best so far, which the
  next ``epoch-*`` folder copies as its best model.

Only the newest complete ``epoch-*`` folder counts; a run killed at any moment resumes from
the last finished epoch with the optimizer's state. Older folders are removed once a newer
one is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.code_deps import code_files
from bloodcell.common.errors import UserError

STATE_ROOT = Path(".bloodcell-state")
LOCK_NAME = ".lock"
CODE_FILES = tuple(code_files("bloodcell.train.loop"))
"""Source files of the training loop and everything it imports (model, loss, targets, data
pipeline, state; bloodcell.common.code_deps): their bytes are part of the resume key, so a
state saved by other code is never resumed."""


def code_digest(files: tuple[Path, ...] | None = None) -> str:
    """SHA-256 of the bytes of ``files`` (default CODE_FILES) and the Keras and TensorFlow
    versions."""
    import tensorflow as tf

    h = hashlib.sha256(f"keras={keras.__version__} tensorflow={tf.__version__}".encode())
    for f in CODE_FILES if files is None else files:
        data = Path(f).read_bytes()
        h.update(f"\0{Path(f).name}:{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def state_key(args: list[str], inputs: list[Path]) -> str:
    """A short hash of the command's arguments, its input files' names and sizes and the code
    that shapes the state (code_digest)."""
    h = hashlib.sha256(code_digest().encode())
    h.update("\0".join(args).encode())
    for path in inputs:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
            else [Path(path)]
        for f in files:
            h.update(f"{f}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked(folder: Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the block; UserError when
    another process holds it. ``what`` names the run in the message (e.g. train-classifier)."""
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{folder} is in use by another `bloodcell {what}` run with the same "
                            "params and inputs; wait for it to finish or stop it") from None
        try:  # the holder before us may have removed the folder (clear) after we opened it
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield folder
    finally:
        os.close(fd)


def latest(folder: Path) -> Path | None:
    """The newest complete epoch folder, or None."""
    done = sorted(p for p in folder.glob("epoch-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def save(folder: Path, epoch: int, model: keras.Model, optimizer: keras.optimizers.Optimizer,
         best_weights: Path | None, state: dict) -> Path:
    """Write epoch ``epoch``'s folder atomically, then drop older ones. ``best_weights`` None
    means this epoch's model is the best so far."""
    target = folder / f"epoch-{epoch:04d}"
    with atomic_dir(target, "train-state") as tmp:
        model.save_weights(tmp / "last.weights.h5")
        if best_weights is None:
            shutil.copyfile(tmp / "last.weights.h5", tmp / "best.weights.h5")
        else:
            shutil.copyfile(best_weights, tmp / "best.weights.h5")
        values = {f"v{i:04d}": v.numpy() for i, v in enumerate(optimizer.variables)}
        np.savez(tmp / "optimizer.npz", **values)
        (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    for old in folder.glob("epoch-*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return target


def restore(epoch_dir: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict:
    """Load the model, the optimizer's variables and the state of one epoch folder."""
    model.load_weights(epoch_dir / "last.weights.h5")
    optimizer.build(model.trainable_variables)
    saved = np.load(epoch_dir / "optimizer.npz")
    for i, var in enumerate(optimizer.variables):
        var.assign(saved[f"v{i:04d}"])
    return json.loads((epoch_dir / "state.json").read_text())


def clear(folder: Path) -> None:
    """Remove a finished run's state folder (and the state root when it is left empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rmdir(folder.parent)
    except OSError:
        pass
