"""Pretrain an encoder with a method of `contrastive_tf.METHODS` (`--method`), probe it,
and export it as a SavedModel.

Every flag is a field of `PretrainConfig`; docs/cli.md lists them.

python -m experiments.pretrain                       # embedded MNIST sample, a few minutes on a CPU
python -m experiments.pretrain --method=byol
python -m experiments.pretrain --dataset=cifar10 --strategy=mirrored
python -m experiments.pretrain --dataset=path/to/images --epochs=100
"""

from __future__ import annotations

from absl import flags

from contrastive_tf import distribute
from contrastive_tf.config import PretrainConfig
from contrastive_tf.knn import KNN_K
from contrastive_tf.pretraining import pretrain

from . import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config_flags(PretrainConfig, flag_values)
    flags.DEFINE_integer(
        "cpu_replicas",
        0,
        "With strategy mirrored and no GPU: split the CPU into this many devices.",
        flag_values=flag_values,
    )


def main(argv: list[str]) -> None:
    if FLAGS.cpu_replicas:
        distribute.use_logical_cpus(FLAGS.cpu_replicas)
    result = pretrain(cli.config_from_flags(PretrainConfig))
    if result.export_path is None:
        return
    probes = {"learned": result.probe, "random weights": result.random_probe}
    scores = [f"{name} {probe.top1_accuracy:.2%}" for name, probe in probes.items() if probe is not None]
    if scores:
        num_test = result.final_evaluation["test_examples"]
        print(f"linear probe top-1 on {num_test} test images: {' | '.join(scores)}")
    if result.knn_top1 is not None:
        print(f"kNN top-1 (k={KNN_K}): {result.knn_top1:.2%}")
    print(f"figures: {', '.join(str(path) for path in result.figures)}")
    print(f"SavedModel: {result.export_path}")


if __name__ == "__main__":
    cli.run(main, define_flags)
