"""Picking the precision and XLA setting: "auto" follows the hardware, and names are checked."""

import keras
import pytest

from contrastive_tf.errors import UsageError
from contrastive_tf.precision import (
    cpu_has_bfloat16_units,
    fastest_jit_compile,
    fastest_precision,
    global_precision,
    resolve_jit_compile,
    resolve_precision,
)

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"), [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (SKYLAKE, False), ("", False)]
)
def test_bfloat16_units_are_read_from_cpu_flags(cpuinfo, expected):
    assert cpu_has_bfloat16_units(cpuinfo) is expected


def test_auto_on_this_cpu_follows_its_flags():
    expected = "mixed_bfloat16" if cpu_has_bfloat16_units() else "float32"
    assert fastest_precision() == resolve_precision("auto") == expected
    assert fastest_jit_compile() is False and resolve_jit_compile("auto") is False


def test_explicit_settings_override_auto():
    assert resolve_precision("mixed_float16") == "mixed_float16"
    assert resolve_jit_compile("true") is True and resolve_jit_compile(False) is False


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match="unknown precision 'fp8'; choose one of auto, float32"):
        resolve_precision("fp8")
    with pytest.raises(UsageError, match="unknown jit_compile 'maybe'"):
        resolve_jit_compile("maybe")


def test_global_precision_puts_the_callers_policy_back():
    with pytest.raises(RuntimeError):
        with global_precision("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.mixed_precision.global_policy().name == "float32"
