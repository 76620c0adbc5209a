"""Resumable training state in an undeclared folder (Snakemake and DVC delete declared outputs).

Layout of a state folder (``.bloodcell-state/<stage>-<key>/``, key = hash of the stage's
arguments and its inputs' names and sizes, so a changed param or input starts afresh):

- ``epoch-NNNN/``: written atomically after epoch NNNN finished: ``last.weights.h5`` (model),
  ``optimizer.npz`` (every Adam variable, iteration count included), ``best.weights.h5``
  (best model so far) and ``state.json`` (epoch, learning rate, best metric and epoch,
  per-epoch history, data statistics).

Only the newest complete ``epoch-*`` folder counts; a run killed at any moment resumes from
the last finished epoch with the optimizer's state. Older folders are removed once a newer
one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from bloodcell.atomic import atomic_dir

STATE_ROOT = Path(".bloodcell-state")


def state_key(args: list[str], inputs: list[Path]) -> str:
    """A short hash of the command's arguments and its input files' names and sizes."""
    h = hashlib.sha256("\0".join(args).encode())
    for path in inputs:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
            else [Path(path)]
        for f in files:
            h.update(f"{f}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def latest(folder: Path) -> Path | None:
    """The newest complete epoch folder, or None."""
    done = sorted(p for p in folder.glob("epoch-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def save(folder: Path, epoch: int, model: keras.Model, optimizer: keras.optimizers.Optimizer,
         best_weights: Path | None, state: dict) -> Path:
    """Write epoch ``epoch``'s folder atomically, then drop older ones. ``best_weights`` None
    means this epoch's model is the best so far."""
    target = folder / f"epoch-{epoch:04d}"
    with atomic_dir(target) as tmp:
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
