"""What a representation is worth: frozen features and the linear-probe protocol."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.data import Split
from contrastive_tf.model import to_unit_range


def extract_features(encoder: keras.Model, split: Split, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """h for every image of `split` (inference mode, no augmentation), and the labels.

    `predict` splits batches correctly under the strategy the encoder was built in.
    """
    images = split.dataset.map(lambda image, label: to_unit_range(image), num_parallel_calls=tf.data.AUTOTUNE)
    features = encoder.predict(images.batch(batch_size).prefetch(tf.data.AUTOTUNE), verbose=0)
    labels = np.concatenate(list(split.dataset.map(lambda image, label: label).batch(65_536).as_numpy_iterator()))
    return np.asarray(features, np.float32), labels


@dataclasses.dataclass
class ProbeResult:
    top1_accuracy: float
    num_train: int
    num_test: int


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
    classifier.fit((train_features - mean) / std, train_labels, batch_size=256, epochs=epochs, verbose=0)
    _, accuracy = classifier.evaluate((test_features - mean) / std, test_labels, batch_size=1024, verbose=0)
    return ProbeResult(float(accuracy), len(train_features), len(test_features))


def probe_encoder(encoder: keras.Model, train: Split, test: Split, num_classes: int, **probe_args) -> ProbeResult:
    """Linear-probe accuracy of `encoder` trained on `train` and measured on `test`."""
    return linear_probe(*extract_features(encoder, train), *extract_features(encoder, test), num_classes, **probe_args)
