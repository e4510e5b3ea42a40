"""Measure throughput on this machine and print one table (and `--json` rows).

    python -m experiments.benchmark                   # the full table, a few minutes on 2 CPU cores
    python -m experiments.benchmark --json=bench.json --steps=5
    python -m experiments.benchmark --configs=configs/cpu_mnist.flags   # a recipe's own step and its MFU
    python -m experiments.benchmark --host_crops=folder --host_images=2048   # one host row, over more images

Rows: the host's input pipeline at 224 px, two views of each image cropped from
ImageNet-sized JPEGs in TFRecord shards and in class folders on one tf.data thread, with
the cores it kept busy (images/s over cores: the rate per host core); the matmul peak of
each timed precision; the SimCLR train step of the small CNN (28 px) and ResNet-18 (32 px)
at each precision and XLA setting; the fastest ResNet-18 step again without augmentation
(the difference is what augmenting costs while training); `fit` over short epochs with a
fresh tf.data iterator per epoch and with one iterator for the run; the augmentation
alone; and the whole tf.data input pipeline making two views. With `--configs`, the table
is instead each recipe file's own training step (its method, encoder, batch, data pipeline
and precision, as `pretrain` runs it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import flags

import contrastive_tf
from contrastive_tf.precision import JIT_COMPILE, PRECISIONS, resolve_jit_compile, resolve_precision

from . import benchmarks, cli

ENCODER_SHAPES = {"small_cnn": (28, 28, 1), "resnet18": (32, 32, 3)}


def define_flags(flag_values: flags.FlagValues) -> None:
    """Declares the benchmark's flags in `flag_values` (`cli.run` and the CLI reference call it)."""
    flags.DEFINE_string("json", None, "Also write the rows as a JSON list to this path.", flag_values=flag_values)
    flags.DEFINE_list(
        "encoders",
        list(ENCODER_SHAPES),
        f"Encoders to time: {', '.join(ENCODER_SHAPES)}.",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "precisions",
        ["float32", "auto"],
        f"Keras dtype policies to time: {', '.join(PRECISIONS)}. The default, float32 and what auto picks here, "
        "leaves out the precisions this hardware only emulates (bfloat16 without AVX512-BF16 or AMX is many "
        "times slower than float32).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "jit_compile",
        ["auto"],
        f"XLA settings to time: {', '.join(JIT_COMPILE)} (auto: on for GPUs and TPUs).",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "host_crops",
        list(benchmarks.HOST_CROP_SOURCES),
        f"Sources of the host pipeline to time at 224 px ({', '.join(benchmarks.HOST_CROP_SOURCES)}; empty: "
        "none): two views of each of --host_images ImageNet-sized JPEGs cropped on one tf.data thread, as "
        "pretraining crops them from images larger than its image_size.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "host_images",
        1024,
        "Synthetic ImageNet-like JPEGs (about 400x340 px, 100 KB) of the host rows; one epoch of them is timed.",
        flag_values=flag_values,
    )
    cli.define_recipe_flags(flag_values, replaces="the encoder, host and input rows (a train-step row each)")
    flags.DEFINE_integer("batch_size", 256, "Images per train step (each gives two views).", flag_values=flag_values)
    flags.DEFINE_integer("steps", 10, "Timed train steps per row, after 3 warm-up steps.", flag_values=flag_values)
    flags.DEFINE_integer(
        "matmul_size", 4096, "Side of the square matmuls that measure the peak FLOP/s.", flag_values=flag_values
    )


FLAGS = flags.FLAGS


def _table(rows: list[benchmarks.Measurement]) -> str:
    header = (
        f"{'name':<29}{'encoder':<16}{'px':>4}{'batch':>7}  {'precision':<15}{'xla':<6}"
        f"{'img/s':>10}{'MFU':>8}{'GFLOP/img':>11}{'RSS MB':>9}{'cores':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        mfu = f"{row.mfu:.1%}" if row.mfu is not None else "-"
        gflops = f"{row.training_gflops_per_image:.3f}" if row.training_gflops_per_image is not None else "-"
        rss = f"{row.peak_rss_mb:.0f}" if row.peak_rss_mb is not None else "-"  # None: no `resource` (Windows)
        cores = f"{row.cpu_cores:.2f}" if row.cpu_cores is not None else "-"
        lines.append(
            f"{row.name:<29}{row.encoder:<16}{row.image_size:>4}{row.batch_size:>7}  {row.precision:<15}"
            f"{str(row.jit_compile).lower():<6}{row.images_per_second:>10.1f}{mfu:>8}{gflops:>11}{rss:>9}{cores:>7}"
        )
    return "\n".join(lines)


def _print_last(rows: list[benchmarks.Measurement]) -> None:
    """Prints the newest row as it is measured (the whole table follows at the end)."""
    print(_table(rows[-1:]).splitlines()[-1], flush=True)


def main(argv: list[str]) -> None:
    for flag, known in (("encoders", ENCODER_SHAPES), ("host_crops", benchmarks.HOST_CROP_SOURCES)):
        unknown = set(FLAGS[flag].value) - set(known)
        if unknown:
            cli.fail(f"unknown {flag} {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    if FLAGS.host_crops and FLAGS.host_images < FLAGS.batch_size:
        cli.fail(f"host_images {FLAGS.host_images} is less than one batch of {FLAGS.batch_size}")
    recipes = cli.recipe_configs()
    rows = []
    if not recipes:
        # First, while the process holds little else: their peak memory is the pipeline's.
        for row in benchmarks.host_crops_throughput(FLAGS.host_crops, FLAGS.host_images, FLAGS.batch_size):
            rows.append(row)
            _print_last(rows)
    wanted = [config.precision for config in recipes.values()] if recipes else FLAGS.precisions
    precisions = list(dict.fromkeys(resolve_precision(name) for name in wanted))
    jit_settings = list(dict.fromkeys(resolve_jit_compile(name) for name in FLAGS.jit_compile))
    # The peak of each timed precision's matmul dtype (an emulated one alone takes minutes).
    dtypes = {name.removeprefix("mixed_"): getattr(tf, name.removeprefix("mixed_")) for name in precisions}
    peaks = {name: benchmarks.matmul_peak_flops(dtype, FLAGS.matmul_size) for name, dtype in dtypes.items()}
    print(
        f"matmul {FLAGS.matmul_size}^2 peak: "
        + ", ".join(f"{name} {flops / 1e9:.0f} GFLOP/s" for name, flops in peaks.items())
    )

    def time_step(encoder: str, precision: str, jit: bool, augment: bool = True) -> benchmarks.Measurement:
        peak = peaks[precision.removeprefix("mixed_")]
        rows.append(
            benchmarks.train_step_throughput(
                encoder, ENCODER_SHAPES[encoder], FLAGS.batch_size, precision, jit, peak, FLAGS.steps, augment=augment
            )
        )
        _print_last(rows)
        return rows[-1]

    if recipes:
        for name, config in recipes.items():
            rows.append(benchmarks.recipe_step_throughput(name, config, peaks, FLAGS.steps))
            _print_last(rows)
        print()
        print(_table(rows))
        _finish(rows, peaks)
        return
    for encoder in FLAGS.encoders:
        for precision in precisions:
            for jit in jit_settings:
                time_step(encoder, precision, jit)
    resnet = [r for r in rows if r.encoder == "resnet18"]
    fastest = max(resnet, key=lambda r: r.images_per_second) if resnet else None
    bare = time_step("resnet18", fastest.precision, fastest.jit_compile, augment=False) if fastest else None
    for one_iterator in (False, True):
        rows.append(
            benchmarks.epochs_throughput(one_iterator, batch_size=FLAGS.batch_size, steps_per_epoch=2 * FLAGS.steps)
        )
        _print_last(rows)
    augmentation = benchmarks.augmentation_throughput((32, 32, 3))
    pipeline = benchmarks.input_pipeline_throughput((32, 32, 3))
    rows += [augmentation, pipeline]
    print()
    print(_table(rows))
    for row in rows:
        if row.cpu_cores:
            print(
                f"{row.name}: {row.images_per_second / row.cpu_cores:.0f} images per CPU-second "
                f"({1000 * row.cpu_cores / row.images_per_second:.2f} ms of CPU an image, two views)"
            )
    if fastest:
        in_training = benchmarks.augmentation_rate_in_training(fastest, bare)
        setting = f"{fastest.precision}, xla={str(fastest.jit_compile).lower()}"
        if math.isinf(in_training):
            inside = "without augmentation the step was no faster: augmenting costs less than the run-to-run noise"
        else:
            inside = (
                f"inside that step the augmentation makes both views at {in_training:.0f} images/s "
                f"({in_training / fastest.images_per_second:.1f}x faster than the step consumes them)"
            )
        print(
            f"\nthe fastest ResNet-18 step ({setting}) trains on {fastest.images_per_second:.1f} images/s;\n"
            f"{inside};\nalone, the augmentation makes both views at {augmentation.images_per_second:.0f} images/s "
            f"({augmentation.images_per_second / fastest.images_per_second:.1f}x)"
        )
    _finish(rows, peaks)


def _finish(rows: list[benchmarks.Measurement], peaks: dict[str, float]) -> None:
    """Writes `--json`, the rows with the peaks and the versions that measured them."""
    if FLAGS.json:
        versions = {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "contrastive_tf": contrastive_tf.__version__,
        }
        common = {"matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()}, "versions": versions}
        with open(FLAGS.json, "w") as file:
            json.dump([{**dataclasses.asdict(row), **common} for row in rows], file, indent=2)
        print(f"rows written to {FLAGS.json}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, define_flags)
