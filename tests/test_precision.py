"""train_*.precision: float32, mixed and auto resolve to a Keras dtype policy by machine."""

from __future__ import annotations

import pytest

from bloodcell.train.precision import cpu_flags, policy

AMX = {"avx2", "avx512f", "amx_bf16", "amx_tile"}
AVX2_ONLY = {"avx2", "fma"}


@pytest.mark.parametrize("precision, gpu, flags, expected", [
    ("float32", False, AMX, "float32"),
    ("float32", True, AMX, "float32"),
    ("mixed", False, AVX2_ONLY, "mixed_bfloat16"),   # asked for: kept, even where emulated
    ("mixed", True, AVX2_ONLY, "mixed_float16"),
    ("auto", False, AMX, "mixed_bfloat16"),
    ("auto", False, {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    ("auto", False, AVX2_ONLY, "float32"),
    ("auto", True, AVX2_ONLY, "mixed_float16"),
])
def test_policy_by_machine(precision, gpu, flags, expected):
    assert policy(precision, gpu, flags) == expected


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="float32, mixed, auto"):
        policy("half", False, AMX)


def test_cpu_flags_read_the_flags_line_and_survive_a_missing_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "absent") == set()


def test_a_training_run_gives_back_the_global_policy_even_when_it_fails():
    """A run sets its own policy (setup); whatever ends it, models a caller builds afterwards in
    the same process get the caller's policy again (a failed bfloat16 run had left its policy
    to later tests, whose float32 models then computed in bfloat16)."""
    import keras

    from bloodcell.train.loop import policy_kept

    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError), policy_kept():
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        raise RuntimeError("a run that fails after setup")
    assert keras.mixed_precision.global_policy().name == "float32"
