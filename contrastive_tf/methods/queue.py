"""A queue of the embeddings of recent batches: MoCo's negatives (its keys) and NNCLR's
support set (its projections). Every replica holds the same queue, filled with the global
batch."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.losses import gather_replicas


def check_queue_size(method: str, queue_size: int, batch_size: int) -> None:
    """UsageError unless a queue of `queue_size` rows can take a global batch of
    `batch_size` embeddings, as every step enqueues one."""
    if queue_size < batch_size:
        raise UsageError(
            f"{method}'s queue_size ({queue_size}) must be >= batch_size ({batch_size}): "
            "every step enqueues a batch of embeddings"
        )


@keras.saving.register_keras_serializable(package="contrastive_tf")
class KeyQueue(keras.layers.Layer):
    """The L2-normalised embeddings of the last `size` images, the oldest overwritten
    first. It starts from random unit vectors, as MoCo's queue and NNCLR's support set do
    (facebookresearch/moco `moco/builder.py`; solo-learn `solo/methods/nnclr.py`).

    Args:
        size: the number of rows (MoCo's K negatives, NNCLR's support set); at least
            the global batch size.

    Example:
        >>> queue = KeyQueue(size=4096)
        >>> queue.build((None, 128))
        >>> queue.enqueue(keys)             # inside a train step: every replica's keys
        >>> queue.nearest(projections)      # the row closest to each projection
    """

    def __init__(self, size: int = 4096, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        if size < 1:
            raise ValueError(f"`size` must be >= 1; received size={size}.")
        self.size = size

    def build(self, embedding_shape):
        self.keys = self.add_weight(
            shape=(self.size, embedding_shape[-1]), initializer="random_normal", trainable=False, name="keys"
        )
        self.position = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="position")

    def negatives(self) -> tf.Tensor:
        """The queue's rows [size, d], unit length."""
        return tf.math.l2_normalize(tf.convert_to_tensor(self.keys), axis=1)

    def nearest(self, z: tf.Tensor) -> tf.Tensor:
        """For each row of `z` [n, d], the queue's row of highest cosine similarity to it
        (unit length, no gradient): NNCLR's nearest neighbour."""
        rows = self.negatives()
        similarities = tf.matmul(tf.math.l2_normalize(tf.cast(z, tf.float32), axis=1), rows, transpose_b=True)
        return tf.gather(rows, tf.argmax(similarities, axis=1))

    def enqueue(self, keys: tf.Tensor) -> None:
        """Writes this replica's `keys` [n, d] and every other replica's over the oldest
        rows, in the order of the global batch (at most `size` rows in all)."""
        keys, _ = gather_replicas(tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1))
        count = tf.shape(keys)[0]
        rows = (self.position + tf.range(count)) % self.size
        self.keys.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.keys), rows[:, None], keys))
        self.position.assign((self.position + count) % self.size)

    def get_config(self):
        return {**super().get_config(), "size": self.size}
