"""TensorFlow's thread pools, set once per process before any op runs."""

from __future__ import annotations

import os


def omp_threads() -> int | None:
    """OMP_NUM_THREADS as a positive count (Snakemake sets it per job), else None."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    return int(threads) if threads.isdigit() and int(threads) > 0 else None


def cpu_threads() -> int:
    """Threads for a runtime other than TensorFlow's pools (TFLite): OMP_NUM_THREADS when set,
    else the CPUs this process may use."""
    if (threads := omp_threads()) is not None:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_tf_threads() -> None:
    """TensorFlow's intra-op threads from OMP_NUM_THREADS (Snakemake sets it per job), and one
    inter-op thread: ops running side by side made CPU training non-deterministic even with
    op determinism on (measured: one thread gives bit-identical weights at the same speed)."""
    import tensorflow as tf

    threads = omp_threads()
    try:
        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already runs in this process (a notebook): keep its own
        pass
