"""The dtype policy and XLA setting: the fastest correct ones for this machine, or the user's."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import keras
import tensorflow as tf

from contrastive_tf.errors import UsageError

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "true", "false")


def cpu_has_bfloat16_units(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AMX-BF16 or AVX512-BF16).

    Reads the Linux `/proc/cpuinfo` flags (or `cpuinfo`, for tests); elsewhere False.
    """
    if cpuinfo is None:
        path = pathlib.Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def _accelerator(strategy: tf.distribute.Strategy | None) -> tuple[str, tuple[int, int] | None]:
    """("tpu" | "gpu" | "cpu", the first GPU's compute capability)."""
    if isinstance(strategy, tf.distribute.TPUStrategy) or tf.config.list_logical_devices("TPU"):
        return "tpu", None
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "gpu", tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return "cpu", None


def fastest_precision(strategy: tf.distribute.Strategy | None = None) -> str:
    """The Keras dtype policy that trains fastest here without losing accuracy.

    TPUs, and GPUs from Ampere on (compute capability 8.0), run bfloat16 on their matrix
    units: mixed_bfloat16 is as fast as float16 there and needs no loss scaling. Volta and
    Turing tensor cores (7.x) only have float16: mixed_float16, with loss scaling. CPUs
    with AMX-BF16 or AVX512-BF16 multiply bfloat16 2-4x faster than float32. On any other
    CPU float16 is emulated (about 200x slower) and bfloat16 gains nothing: float32.
    """
    kind, capability = _accelerator(strategy)
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu":
        if capability is None or capability < (7, 0):
            return "float32"
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16_units() else "float32"


def fastest_jit_compile(strategy: tf.distribute.Strategy | None = None) -> bool:
    """XLA on GPUs and TPUs, where fusing the step pays; not on CPUs, where the
    measured step was slower with it in every configuration."""
    return _accelerator(strategy)[0] != "cpu"


def resolve_precision(precision: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """`precision` itself, or the fastest one for "auto"; UsageError if unknown."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return fastest_precision(strategy) if precision == "auto" else precision


def resolve_jit_compile(jit_compile: str | bool | None, strategy: tf.distribute.Strategy | None = None) -> bool:
    """`jit_compile` as a bool, the fastest setting for None or "auto"; UsageError if unknown."""
    if isinstance(jit_compile, bool):
        return jit_compile
    if jit_compile is None:
        return fastest_jit_compile(strategy)
    if jit_compile not in JIT_COMPILE:
        raise UsageError(f"unknown jit_compile {jit_compile!r}; choose one of {', '.join(JIT_COMPILE)}")
    return fastest_jit_compile(strategy) if jit_compile == "auto" else jit_compile == "true"


@contextlib.contextmanager
def global_precision(policy: str) -> Iterator[None]:
    """Sets Keras' global dtype policy for the models built inside, and puts the previous
    one back afterwards, so a library call never changes the caller's later models."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
