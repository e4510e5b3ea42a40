"""What a representation is worth: frozen features, the linear-probe protocol, and the
labelled data (and few-label subsets) that evaluations run on."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.data import UNLABELED, ImageData, Split, load_data, to_unit_range
from contrastive_tf.errors import UsageError


def extract_features(encoder: keras.Model, split: Split, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """h for every image of `split` (inference mode, no augmentation), and the labels.

    `predict` splits batches correctly under the strategy the encoder was built in.
    """
    images = split.dataset.map(lambda image, label: to_unit_range(image), num_parallel_calls=tf.data.AUTOTUNE)
    features = encoder.predict(images.batch(batch_size).prefetch(tf.data.AUTOTUNE), verbose=0)
    return np.asarray(features, np.float32), split_labels(split)


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose highest score is at their label (0 for no rows)."""
    return float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else 0.0


def split_labels(split: Split) -> np.ndarray:
    """The labels of `split`, in order."""
    batches = split.dataset.map(lambda image, label: label).batch(65_536).as_numpy_iterator()
    return np.concatenate([np.zeros(0, np.int64), *batches])


def labelled_data(dataset: str, data_dir: str | None, image_shape: tuple[int, int, int]) -> ImageData:
    """`dataset` at an encoder's image size, checked to hold what an evaluation needs:
    labels and a test split. UsageError otherwise."""
    height, width, channels = image_shape
    data = load_data(dataset, data_dir, image_size=height if height == width else None)
    if data.image_shape[-1] != channels:
        raise UsageError(
            f"{dataset} has {data.image_shape[-1]}-channel images but the encoder takes {channels}; "
            "evaluate on data like the data it was pretrained on"
        )
    if data.image_shape[:2] != (height, width):
        raise UsageError(f"{dataset} images are {data.image_shape[:2]} but the encoder takes {(height, width)}")
    if not data.num_classes or data.test is None:
        raise UsageError(
            f"{dataset} has no labelled test split; evaluation needs one (an .npz with x_test and y_test, "
            "or a folder with train/ and test/ class folders)"
        )
    return data


def stratified_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of `fraction` of the labelled examples of each class, at least one
    per class, drawn with `seed`: 1% of CIFAR-10's 5,000 per class is 50 per class."""
    if not 0 < fraction <= 1:
        raise UsageError(f"label_fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels != UNLABELED]):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def labelled_subset(data: ImageData, fraction: float, seed: int = 0) -> ImageData:
    """`data` with its training split cut to `stratified_indices`; unchanged at 1.0
    when every training example is labelled."""
    labels = split_labels(data.train)
    if fraction == 1.0 and np.all(labels != UNLABELED):
        return data
    return dataclasses.replace(data, train=split_subset(data.train, stratified_indices(labels, fraction, seed)))


def stratified_sample(split: Split, size: int, seed: int = 0) -> Split:
    """About `size` examples of `split`, the same share of every class: a fair sample even
    of a split stored class by class (an image folder), where the first `size` are not."""
    if split.num_examples <= size:
        return split
    return split_subset(split, stratified_indices(split_labels(split), size / split.num_examples, seed))


def split_subset(split: Split, indices: np.ndarray) -> Split:
    """The examples of `split` at `indices`, in their order in `split`."""
    keep = np.zeros(split.num_examples, bool)
    keep[indices] = True
    mask = tf.constant(keep)
    subset = split.dataset.enumerate().filter(lambda index, example: mask[index]).map(lambda _, example: example)
    # A filter hides the size; Keras wants it to know when an epoch ends.
    subset = subset.apply(tf.data.experimental.assert_cardinality(int(keep.sum())))
    return Split(subset, int(keep.sum()))


@dataclasses.dataclass
class ProbeResult:
    """The probe's test accuracy, its class scores (logits) for every test example, and
    its per-epoch training loss and accuracy."""

    top1_accuracy: float
    num_train: int
    num_test: int
    test_scores: np.ndarray | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    epochs: int = 40,
    l2: float = 1e-4,
    seed: int = 0,
) -> ProbeResult:
    """Top-1 accuracy of an L2-regularised multinomial logistic regression on frozen
    features, standardised with the training set's statistics (SimCLR's linear protocol)."""
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential(
        [
            keras.Input(train_features.shape[1:]),
            keras.layers.Dense(num_classes, kernel_regularizer=keras.regularizers.L2(l2), dtype="float32"),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-2, epochs * (len(train_features) // 256 + 1))
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fitted = classifier.fit((train_features - mean) / std, train_labels, batch_size=256, epochs=epochs, verbose=0)
    scores = classifier.predict((test_features - mean) / std, batch_size=1024, verbose=0)
    return ProbeResult(
        top1_accuracy(scores, test_labels), len(train_features), len(test_features), scores, fitted.history
    )


def probe_encoder(encoder: keras.Model, train: Split, test: Split, num_classes: int, **probe_args) -> ProbeResult:
    """Linear-probe accuracy of `encoder` trained on `train` and measured on `test`."""
    return linear_probe(*extract_features(encoder, train), *extract_features(encoder, test), num_classes, **probe_args)
