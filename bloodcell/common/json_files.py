"""Writing JSON outputs with stable bytes: sorted keys, fixed indent, floats rounded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bloodcell.common.atomic import atomic_file


def rounded(value, digits: int = 6):
    """Floats rounded to ``digits`` decimals throughout a JSON-like structure, numpy scalars
    made Python numbers (stable bytes across platforms)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(doc: object, path: Path, *, indent: int = 2, digits: int | None = 6) -> None:
    """``doc`` as sorted JSON with ``indent``, floats rounded to ``digits`` (None: as they are),
    written atomically (bloodcell.common.atomic)."""
    data = doc if digits is None else rounded(doc, digits)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=True) + "\n", encoding="utf-8")
