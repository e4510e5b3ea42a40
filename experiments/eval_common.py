"""What the evaluation entry points share: the flags naming the data and the encoder, the
loading of both, and the summary they print."""

from __future__ import annotations

import numpy as np
from absl import flags

from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import SOURCE_OPTIONS, ImageData
from contrastive_tf.evaluation import extract_features, labelled_data, labelled_subset
from contrastive_tf.run_folder import Pretrained, load_pretrained

from . import cli


def define_data_flags(flag_values: flags.FlagValues) -> None:
    """--dataset, --data_dir and --seed: the labelled data every evaluation reads."""
    flags.DEFINE_string(
        "dataset",
        "sample",
        "Labelled data with a test split: 'sample', a TFDS name, a Keras-layout .npz, or an image folder "
        "with train/ and test/.",
        flag_values=flag_values,
    )
    flags.DEFINE_string("data_dir", None, "TFDS data directory.", flag_values=flag_values)
    cli.define_config_flags(PretrainConfig, flag_values, names=SOURCE_OPTIONS)
    flags.DEFINE_integer(
        "seed",
        0,
        "Random seed (the labelled subset, validation split, views, initial weights).",
        flag_values=flag_values,
    )


FLAGS = flags.FLAGS


def source_options() -> dict[str, object]:
    """The parsed flags that say how to read --dataset beyond its name (`SOURCE_OPTIONS`)."""
    return {name: FLAGS[name].value for name in SOURCE_OPTIONS}


def define_encoder_flags(flag_values: flags.FlagValues) -> None:
    """--encoder_path and --label_fraction, for the entry points that evaluate a
    pretrained encoder on some of the labels."""
    flags.DEFINE_string(
        "encoder_path",
        "runs/simclr",
        "The encoder: a pretraining --model_dir, its export directory, or a .keras file.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "label_fraction",
        1.0,
        "Use this fraction of the training labels, the same share of every class.",
        flag_values=flag_values,
    )


def load_inputs() -> tuple[Pretrained, ImageData]:
    """The encoder, and the data at its image size with the training split cut to
    `--label_fraction`."""
    pretrained = load_pretrained(FLAGS.encoder_path)
    data = labelled_data(FLAGS.dataset, FLAGS.data_dir, pretrained.image_shape, **source_options())
    return pretrained, labelled_subset(data, FLAGS.label_fraction, FLAGS.seed)


def load_features() -> tuple[Pretrained, ImageData, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`load_inputs()`, and the frozen features and labels of the training and test splits."""
    pretrained, data = load_inputs()
    train, test = (extract_features(pretrained.encoder, split) for split in (data.train, data.test))
    return pretrained, data, train, test


def describe(pretrained: Pretrained, data: ImageData) -> dict:
    """What every results.json says about its inputs."""
    return {
        "dataset": data.name,
        "encoder": pretrained.name,
        "encoder_path": FLAGS.encoder_path,
        "label_fraction": FLAGS.label_fraction,
        "num_train": data.train.num_examples,
        "num_test": data.test.num_examples,
    }


def print_summary(results: dict, output_dir: str) -> None:
    top5 = f", top-5 {results['top5_accuracy']:.2%}" if "top5_accuracy" in results else ""
    fraction = results.get("label_fraction")
    labels = f", label fraction {fraction:g}" if fraction is not None else ""
    protocol = f" ({results['protocol']})" if "protocol" in results else ""
    print(
        f"{results['evaluation']}{protocol} top-1 on {results['num_test']} test images: "
        f"{results['top1_accuracy']:.2%}{top5} ({results['num_train']} training images{labels})"
    )
    print(f"results: {output_dir}/results.json")
