"""The quality table: pretrain, then the linear probe, kNN and 1%/10% fine-tuning, beside
the random-weights and supervised-from-scratch baselines on the same labels; a row group
per data set and method.

python -m experiments.quality --datasets=mnist --mnist=../shared/data/mnist.npz
python -m experiments.quality --datasets=cifar10 --cifar10=/tmp/cifar10-jpeg   # the unpacked shared copy
python -m experiments.quality --datasets=mnist --methods=simclr,moco,byol,simsiam,supcon --mnist_epochs=2
python -m experiments.quality --configs=configs/cpu_mnist.flags --label_fractions=0.01   # a recipe file's rows
python -m experiments.quality --configs=configs/simclr_cifar10.flags,configs/moco_cifar10.flags \
    --override=--dataset=/tmp/cifar10-jpeg --override=--epochs=1 --override=--width=0.25   # at a short schedule

Prints one Markdown table (the README shows it) and writes it with every figure to
--output_dir/results.json. Each data set's pretraining runs to its --*_epochs; with
--configs, each recipe file is pretrained as `python -m experiments.pretrain --flagfile=FILE`
followed by the --override flags would (a row group per file, named for it) instead of the
--datasets x --methods groups.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import keras
import numpy as np
from absl import flags

from contrastive_tf.checkpoints import latest_step
from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import SOURCE_OPTIONS
from contrastive_tf.evaluation import (
    STANDARDISED,
    extract_features,
    labelled_data,
    labelled_subset,
    linear_probe,
    stratified_indices,
)
from contrastive_tf.finetuning import FINE_TUNING_CROP_SCALE, Classifier, fine_tune, light_augmentation
from contrastive_tf.knn import KNN_K, knn_accuracy
from contrastive_tf.methods import METHODS, setting_names
from contrastive_tf.pretraining import pretrain
from contrastive_tf.reports import write_results
from contrastive_tf.run_folder import CHECKPOINTS_DIR, load_pretrained

from . import cli

# What fits the time budget on 2 CPU cores (see the README).
RECIPES = {
    "mnist": dict(encoder="small_cnn", batch_size=256, temperature=0.2, crop_scale_min=0.2),
    "cifar10": dict(
        encoder="resnet18", width=0.25, batch_size=256, temperature=0.5, crop_scale_min=0.08, color_jitter_strength=0.5
    ),
}
# BYOL uses 0.99 for its shorter schedules; 0.996 is for 1,000 epochs. VICReg's 8192-wide
# expander needs batches of thousands: on batches of 256 its covariance term holds the
# variances down (2048 wide scored below random weights on MNIST, 512 wide 94.5% kNN).
METHOD_SETTINGS = {
    "byol": dict(target_momentum=0.99),
    "vicreg": dict(projection_dim=512, projection_hidden_dim=512),
}


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_list("datasets", ["mnist", "cifar10"], "Which rows to make: mnist, cifar10.", flag_values=flag_values)
    flags.DEFINE_list(
        "methods", ["simclr"], f"Pretraining methods, a row group each: {', '.join(METHODS)}.", flag_values=flag_values
    )
    flags.DEFINE_string("mnist", "mnist", "MNIST: the TFDS name or a Keras-layout .npz.", flag_values=flag_values)
    flags.DEFINE_string(
        "cifar10",
        "cifar10",
        "CIFAR-10: the TFDS name or an image folder with train/ and test/.",
        flag_values=flag_values,
    )
    cli.define_recipe_flags(flag_values, replaces="--datasets and --methods (a row group each)")
    flags.DEFINE_integer("mnist_epochs", 6, "Pretraining epochs on MNIST.", flag_values=flag_values)
    flags.DEFINE_integer("cifar10_epochs", 12, "Pretraining epochs on CIFAR-10.", flag_values=flag_values)
    flags.DEFINE_list(
        "label_fractions",
        ["0.01", "0.1"],
        "Label fractions for fine-tuning and the baselines.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("finetune_epochs", 30, "Fine-tuning (and from-scratch) epochs.", flag_values=flag_values)
    flags.DEFINE_float(
        "finetune_learning_rate",
        1e-3,
        "Fine-tuning (and from-scratch) Adam learning rate, cosine-decayed to 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "finetune_crop_scale_min",
        FINE_TUNING_CROP_SCALE[0],
        "Smallest random-crop area fraction in fine-tuning (and from scratch); SimCLR's: 0.08.",
        lower_bound=0.0,
        upper_bound=1.0,
        flag_values=flag_values,
    )
    flags.DEFINE_string("output_dir", "runs/quality", "Pretraining runs, results.json.", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=flag_values)


FLAGS = flags.FLAGS


@dataclasses.dataclass
class Row:
    dataset: str
    method: str
    evaluation: str
    labels: str
    learned: float
    random_weights: float | None = None
    from_scratch: float | None = None


def _fine_tune(encoder: keras.Model, data, fraction: float) -> float:
    keras.utils.set_random_seed(FLAGS.seed)
    settings = _fine_tuning()
    crop_scale = (settings.pop("crop_scale_min"), 1.0)
    augmentation = light_augmentation(data.image_shape[-1], FLAGS.seed, crop_scale=crop_scale)
    model = Classifier(encoder, data.num_classes, augmentation)
    subset = labelled_subset(data, fraction, FLAGS.seed)
    return fine_tune(model, subset.train, data.test, **settings, seed=FLAGS.seed).top1_accuracy


def _fine_tuning() -> dict:
    """The fine-tuning settings of every fine-tune and from-scratch row, as results.json records them."""
    return {
        "epochs": FLAGS.finetune_epochs,
        "learning_rate": FLAGS.finetune_learning_rate,
        "crop_scale_min": FLAGS.finetune_crop_scale_min,
    }


@dataclasses.dataclass
class Baselines:
    """What the learned encoder is compared with on one data set: the features of the
    same architecture with random weights, and its fine-tuning from scratch per label
    fraction. The same for every method, so they are made once."""

    features: tuple
    from_scratch: dict[float, float]


def make_baselines(encoder: keras.Model, data) -> Baselines:
    keras.utils.set_random_seed(FLAGS.seed)
    random_encoder = keras.models.clone_model(encoder)
    features = (extract_features(random_encoder, data.train), extract_features(random_encoder, data.test))
    scratch = {
        fraction: _fine_tune(keras.models.clone_model(encoder), data, fraction)
        for fraction in map(float, FLAGS.label_fractions)
    }
    return Baselines(features, scratch)


def dataset_config(name: str, source: str, epochs: int, method: str) -> PretrainConfig:
    """The pretraining of data set `name` (mnist, cifar10) from `source` by `method`, with
    the data set's recipe in `RECIPES`."""
    other_methods_settings = setting_names() - set(METHODS[method].settings())
    return PretrainConfig(
        dataset=source,
        method=method,
        epochs=epochs,
        seed=FLAGS.seed,
        # A recipe's method settings go to the methods that have them.
        **{key: value for key, value in RECIPES[name].items() if key not in other_methods_settings},
        **METHOD_SETTINGS.get(method, {}),
    )


def quality_rows(name: str, config: PretrainConfig, baselines: dict[str, Baselines]) -> tuple[list[Row], float]:
    """The rows of the pretraining `config`, named `name`, and its pretraining time in
    minutes; `baselines` holds (or is given) the baselines of its data and architecture."""
    method, source = config.method, config.dataset
    model_dir = pathlib.Path(FLAGS.output_dir) / name / method
    if latest_step(model_dir / CHECKPOINTS_DIR):
        # Resuming would report the time of what was left, not of the pretraining.
        cli.fail(f"{model_dir} holds an earlier pretraining run; pass a new --output_dir")
    config = dataclasses.replace(config, model_dir=str(model_dir), overwrite=True, verbose=2)
    start = time.perf_counter()
    result = pretrain(config)
    minutes = (time.perf_counter() - start) / 60
    trained = load_pretrained(model_dir)
    options = {name: getattr(config, name) for name in SOURCE_OPTIONS}
    data = labelled_data(source, config.data_dir, trained.image_shape, **options)
    # The same data and architecture have the same baselines, whatever the method.
    key = f"{source}/{trained.encoder.name}"
    if key not in baselines:
        baselines[key] = make_baselines(trained.encoder, data)
    baseline = baselines[key]
    features = {
        "learned": (extract_features(trained.encoder, data.train), extract_features(trained.encoder, data.test)),
        "random": baseline.features,
    }

    def probe(kind: str, indices: np.ndarray | None = None) -> float:
        (train_features, train_labels), test = features[kind]
        if indices is not None:
            train_features, train_labels = train_features[indices], train_labels[indices]
        return linear_probe(train_features, train_labels, *test, data.num_classes).top1_accuracy

    linear = f"linear probe ({STANDARDISED})"  # the protocol `linear_probe` runs
    rows = [
        Row(name, method, linear, "100%", probe("learned"), probe("random")),
        Row(
            name,
            method,
            f"kNN (k={KNN_K})",
            "100%",
            *(knn_accuracy(*features[kind], data.num_classes) for kind in features),
        ),
    ]
    labels = features["learned"][0][1]
    for fraction in map(float, FLAGS.label_fractions):
        indices = stratified_indices(labels, fraction, FLAGS.seed)
        share = f"{fraction:.0%}"
        rows.append(Row(name, method, linear, share, probe("learned", indices), probe("random", indices)))
        tuned = _fine_tune(load_pretrained(model_dir).encoder, data, fraction)  # fine-tuning changes it
        rows.append(Row(name, method, "fine-tune", share, tuned, from_scratch=baseline.from_scratch[fraction]))
    print(f"{name}, {method}: pretraining took {minutes:.1f} min, final loss {result.history['loss'][-1]:.3f}")
    return rows, minutes


def table(rows: list[Row], minutes: dict[str, float]) -> str:
    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    lines = [
        "| data set | method (pretraining time) | evaluation | labels | learned | random weights | from scratch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        method = f"{row.method} ({minutes[f'{row.dataset}/{row.method}']:.0f} min)"
        values = " | ".join(cell(value) for value in (row.learned, row.random_weights, row.from_scratch))
        lines.append(f"| {row.dataset} | {method} | {row.evaluation} | {row.labels} | {values} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    sources = {"mnist": (FLAGS.mnist, FLAGS.mnist_epochs), "cifar10": (FLAGS.cifar10, FLAGS.cifar10_epochs)}
    unknown = set(FLAGS.datasets) - set(sources)
    if unknown:
        cli.fail(f"unknown --datasets {', '.join(sorted(unknown))}; choose from mnist, cifar10")
    unknown = set(FLAGS.methods) - set(METHODS)
    if unknown:
        cli.fail(f"unknown --methods {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    groups = list(cli.recipe_configs().items()) or [
        (name, dataset_config(name, *sources[name], method)) for name in FLAGS.datasets for method in FLAGS.methods
    ]
    rows, minutes, baselines = [], {}, {}
    for name, config in groups:
        found, minutes[f"{name}/{config.method}"] = quality_rows(name, config, baselines)
        rows += found
        # Written after every method, so that a run cut short keeps the rows it made.
        text = table(rows, minutes)
        print(text)
        write_results(
            FLAGS.output_dir,
            {
                "rows": [dataclasses.asdict(row) for row in rows],
                "pretraining_minutes": minutes,
                "fine_tuning": _fine_tuning(),
                "table": text,
            },
        )


if __name__ == "__main__":
    cli.run(main, define_flags)
