"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of the PyTorch self-supervised benchmarks (Wu et al. 2018): features are
L2-normalised, each test image takes its k most cosine-similar training images, and a
neighbour with similarity s votes for its class with weight exp(s / temperature). It
needs no training, so it is a cheap, hyperparameter-light view of a representation.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.data import Split
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import extract_features, stratified_sample, top1_accuracy, validation_split
from contrastive_tf.losses import check_temperature

# The protocol of Wu et al. 2018 that SSL papers report kNN accuracy with.
KNN_K = 200
KNN_TEMPERATURE = 0.1
KNN_PROTOCOL = f"weighted kNN, k={KNN_K}, temperature {KNN_TEMPERATURE}, cosine similarity"


def knn_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    num_classes: int,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    batch_size: int = 256,
) -> np.ndarray:
    """The class votes [num_test, num_classes] of every test image; argmax is the prediction.

    Exact: every test image is compared with every training image, `batch_size` test
    images per matrix product, so memory stays at batch_size x num_train similarities.
    """
    check_temperature(temperature)
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    train = tf.math.l2_normalize(tf.constant(train_features, tf.float32), axis=1)
    labels = tf.one_hot(tf.constant(train_labels, tf.int64), num_classes)
    k = min(k, len(train_features))

    @tf.function(input_signature=[tf.TensorSpec((None, train.shape[1]), tf.float32)])
    def votes(test: tf.Tensor) -> tf.Tensor:
        similarities = tf.matmul(tf.math.l2_normalize(test, axis=1), train, transpose_b=True)
        nearest, index = tf.math.top_k(similarities, k)
        return tf.einsum("bk,bkc->bc", tf.exp(nearest / temperature), tf.gather(labels, index))

    test_features = np.asarray(test_features, np.float32)
    batches = [votes(test_features[start : start + batch_size]) for start in range(0, len(test_features), batch_size)]
    return np.concatenate([batch.numpy() for batch in batches]) if batches else np.zeros((0, num_classes), np.float32)


def knn_accuracy(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], num_classes: int, **knn_args
) -> float:
    """Top-1 of `knn_scores` for (features, labels) of a training and a test set."""
    (train_features, train_labels), (test_features, test_labels) = train, test
    return top1_accuracy(knn_scores(train_features, train_labels, test_features, num_classes, **knn_args), test_labels)


class KnnMonitor(keras.callbacks.Callback):
    """Logs `knn_accuracy` at the end of every `every_epochs`-th epoch: the weighted kNN
    top-1 of the encoder's current features, with (about `bank_size`) training images as
    the memory and (about `query_size`) held-out images as queries, both stratified. It needs no training,
    so it is a cheap running measure of the representation beside the online probe.
    k is 20, not 200: the memory holds ~200 images a class, not 5,000.
    `from_training_split` takes the queries from a validation split carved from the
    training split, so that watching a run (and choosing by it) never reads the test split.

    Other epochs log NaN, so that CSV and TensorBoard logs keep one column throughout.
    """

    def __init__(
        self,
        bank: Split,
        queries: Split,
        num_classes: int,
        every_epochs: int = 1,
        k: int = 20,
        temperature: float = KNN_TEMPERATURE,
        bank_size: int = 2000,
        query_size: int = 1000,
    ):
        super().__init__()
        self.bank, self.queries = stratified_sample(bank, bank_size), stratified_sample(queries, query_size)
        self.num_classes, self.every_epochs, self.k, self.temperature = num_classes, every_epochs, k, temperature

    @classmethod
    def from_training_split(
        cls,
        train: Split,
        num_classes: int,
        every_epochs: int = 1,
        validation_fraction: float = 0.1,
        seed: int = 0,
        **monitor_args,
    ) -> KnnMonitor:
        """The monitor with the memory drawn from `train` and the queries from a validation
        split carved from it (`validation_split`: stratified, seeded, disjoint from the
        memory); `monitor_args` are the other arguments of `KnnMonitor`."""
        memory, validation = validation_split(train, validation_fraction, seed)
        return cls(memory, validation, num_classes, every_epochs, **monitor_args)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["knn_accuracy"] = math.nan
        # A run stopping early (a signal, a NaN loss) ends its epoch here: it has no time to lose.
        if (epoch + 1) % self.every_epochs == 0 and not self.model.stop_training:
            bank, queries = (extract_features(self.model.encoder, split) for split in (self.bank, self.queries))
            logs["knn_accuracy"] = knn_accuracy(bank, queries, self.num_classes, k=self.k, temperature=self.temperature)
