"""Seeded generators: every random draw comes from (params seed, stage, keys...)."""

from __future__ import annotations

import hashlib

import numpy as np


def key_int(value: object) -> int:
    """A stable 32-bit integer for a seed key (strings hashed with SHA-256, not hash())."""
    if isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    return int.from_bytes(hashlib.sha256(str(value).encode()).digest()[:4], "little")


def rng_for(seed: int, stage: str, *keys: object) -> np.random.Generator:
    """The generator of one unit of work of a stage, e.g. rng_for(seed, "synth", "train", 3)."""
    return np.random.default_rng(np.random.SeedSequence([seed, key_int(stage),
                                                         *map(key_int, keys)]))
