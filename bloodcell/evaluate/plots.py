"""PNG figures for the report: PR curves, confusion matrix, training curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bloodcell.common.atomic import atomic_file  # noqa: E402
from bloodcell.common.classes import display_name  # noqa: E402

META = {"Software": None, "Creation Time": None}  # no version or time stamp: same bytes


def save(fig, path: Path) -> None:
    """Write a figure atomically as PNG, without metadata that would change its bytes."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=META)
    plt.close(fig)


def pr_curves(curves: pd.DataFrame, path: Path) -> None:
    """Precision-recall at IoU 0.5 per class; ``curves``: class_name, recall, precision."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, part in curves.groupby("class_name", sort=False):
        ax.plot(part["recall"], part["precision"], label=display_name(name))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall per class (COCO, IoU 0.5)")
    ax.legend(fontsize=8, loc="lower left")
    save(fig, path)


def confusion(pairs: pd.DataFrame, labels: list[str], path: Path) -> None:
    """Confusion matrix from (actual, predicted) rows, counts per cell."""
    index = {name: i for i, name in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), int)
    for a, p in zip(pairs["actual"], pairs["predicted"]):
        m[index[a], index[p]] += 1
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(np.log1p(m), cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        if v:
            ax.text(c, r, str(v), ha="center", va="center", fontsize=7)
    names = [display_name(n) for n in labels]
    ax.set_xticks(range(len(labels)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="actual", title="Boxes matched one-to-one at IoU 0.5")
    fig.tight_layout()
    save(fig, path)


def training_curves(histories: dict[str, pd.DataFrame], path: Path) -> None:
    """Train and validation loss per epoch, and the validation metric, for each phase."""
    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 4), squeeze=False)
    for ax, (name, h) in zip(axes[0], histories.items()):
        ax.plot(h["epoch"], h["train_loss"], "o-", label="train loss")
        ax.plot(h["epoch"], h["valid_loss"], "o-", label="valid loss")
        metric = [c for c in h.columns if c.startswith("valid_") and c != "valid_loss"]
        if metric:
            twin = ax.twinx()
            twin.plot(h["epoch"], h[metric[0]], "s--", color="tab:green", label=metric[0])
            twin.set_ylabel(metric[0])
            twin.set_ylim(0, 1)
        ax.set(xlabel="epoch", ylabel="loss", title=name)
        ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    save(fig, path)
