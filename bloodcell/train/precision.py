"""The compute precision of training: ``train_*.precision: float32 | mixed | auto``.

``mixed`` computes in bfloat16 on a CPU (Keras's ``mixed_bfloat16``) and in float16 on a GPU
(``mixed_float16``), with float32 weights. On a CPU it pays only where the CPU multiplies
bfloat16 natively (Intel AMX or AVX-512 BF16: the convolutions then run about three times as
fast, the detector step about 1.4 times; ``python benchmarks/train_speed.py``); elsewhere
oneDNN emulates it and training is slower than in float32. ``auto`` therefore picks ``mixed``
on a GPU or on such a CPU and float32 otherwise. A run is byte-reproducible on one machine
either way; two machines that resolve ``auto`` differently train different bytes.
"""

from __future__ import annotations

from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of a CPU that computes bfloat16 natively."""
CHOICES = ("float32", "mixed", "auto")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags (Linux's /proc/cpuinfo; empty where there is none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def policy(precision: str, gpu: bool, flags: set[str]) -> str:
    """The Keras dtype policy for ``precision`` on a machine with (``gpu``) or without a GPU
    and with the CPU feature ``flags``."""
    if precision not in CHOICES:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(CHOICES)}")
    native = gpu or any(f in flags for f in BF16_CPU_FLAGS)
    if precision == "float32" or (precision == "auto" and not native):
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"


def machine_policy(precision: str) -> str:
    """:func:`policy` on this machine."""
    import tensorflow as tf

    return policy(precision, bool(tf.config.list_physical_devices("GPU")), cpu_flags())
