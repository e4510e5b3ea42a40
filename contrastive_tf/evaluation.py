"""What a representation is worth: frozen features and the linear-probe protocol."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from contrastive_tf.data import Split, evaluation_batches
from contrastive_tf.model import to_unit_range


def extract_features(encoder: keras.Model, split: Split, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """h for every image of `split` (inference mode, no augmentation), and the labels."""
    features, labels = [], []
    for images, batch_labels in evaluation_batches(split, batch_size):
        # predict_on_batch reuses the model's compiled predict function across calls.
        features.append(np.asarray(encoder.predict_on_batch(to_unit_range(images)), np.float32))
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


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
