"""The model's hyperparameters given as text: anchor sizes (grid units) and learning-rate
schedules by epoch, parsed and looked up in pure Python, so the command line checks them before
TensorFlow is imported (the targets, the training loop and the model card use them)."""

from __future__ import annotations

ORIGINAL_ANCHORS = ((3.1, 3.1), (6.125, 3.1), (3.1, 6.125), (6.125, 6.125), (5.32, 5.32),
                    (2.7, 2.7))
"""The original's anchors (w, h) in grid units (1 unit = 16 px)."""


def parse_anchors(text: str) -> tuple[tuple[float, float], ...]:
    """Anchors from a params string ``"3.1x3.1,6.125x3.1,..."`` (w x h, grid units)."""
    pairs = []
    for item in text.split(","):
        w, h = item.strip().lower().split("x")
        pairs.append((float(w), float(h)))
    return tuple(pairs)


def parse_schedule(text: str) -> tuple[tuple[int, float], ...]:
    """``"1:1e-3,16:1e-4"`` -> ((1, 0.001), (16, 0.0001)); the first entry must be epoch 1."""
    pairs = tuple((int(e), float(lr)) for e, lr in (p.split(":") for p in text.split(",")))
    if pairs[0][0] != 1 or any(a[0] >= b[0] for a, b in zip(pairs, pairs[1:])):
        raise ValueError(f"schedule {text!r} must start at epoch 1 with rising epochs")
    return pairs


def learning_rate(schedule: tuple[tuple[int, float], ...], epoch: int) -> float:
    """The learning rate of ``epoch`` (from 1) under a piecewise-constant schedule."""
    return [lr for first, lr in schedule if first <= epoch][-1]
