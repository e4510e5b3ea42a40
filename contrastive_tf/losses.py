"""Contrastive objectives. NT-Xent (SimCLR) is exact across replicas.

Under a `tf.distribute` strategy each replica gathers every replica's projections, so
each anchor is contrasted with the whole global batch: 2N - 2 negatives for a global
batch of N images (2N views). Each replica returns the mean over its own anchors, so the
mean of the replicas' losses is the single-device loss on the global batch.
"""

from __future__ import annotations

import tensorflow as tf

from contrastive_tf.errors import UsageError

# Added to a view's similarity with itself so that it is never a candidate.
_SELF_MASK = 1e9


def _gather_replicas(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """All replicas' z stacked on axis 0, and where this replica's rows start."""
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return z, tf.constant(0)
    offset = tf.cast(replica.replica_id_in_sync_group, tf.int32) * tf.shape(z)[0]
    # all_gather's gradient sums the upstream gradients of every replica.
    return replica.all_gather(z, axis=0), offset


def nt_xent_logits(z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5) -> tuple[tf.Tensor, tf.Tensor]:
    """Logits and targets of NT-Xent, one row per local anchor.

    Args:
        z_a, z_b: [n, d] projections of the two views of this replica's n images.
        temperature: tau > 0; cosine similarities are divided by it.

    Returns:
        logits [2n, 2N]: row i holds anchor i's similarity to every view of the
            global batch (the other view of each image first, then the same view;
            an anchor's similarity to itself is masked out).
        targets [2n]: the column of each anchor's positive.
    """
    if not isinstance(temperature, tf.Tensor) and temperature <= 0:
        raise UsageError(f"temperature must be > 0, got {temperature}")
    # Normalise and compare in float32, whatever the compute precision.
    z_a = tf.math.l2_normalize(tf.cast(z_a, tf.float32), axis=1)
    z_b = tf.math.l2_normalize(tf.cast(z_b, tf.float32), axis=1)
    all_a, offset = _gather_replicas(z_a)
    all_b, _ = _gather_replicas(z_b)
    n, global_n = tf.shape(z_a)[0], tf.shape(all_a)[0]
    targets = offset + tf.range(n)
    self_mask = tf.one_hot(targets, global_n) * _SELF_MASK

    def rows(anchors, same_view, other_view):
        positive_and_cross = tf.matmul(anchors, other_view, transpose_b=True) / temperature
        same = tf.matmul(anchors, same_view, transpose_b=True) / temperature - self_mask
        return tf.concat([positive_and_cross, same], axis=1)

    logits = tf.concat([rows(z_a, all_a, all_b), rows(z_b, all_b, all_a)], axis=0)
    return logits, tf.concat([targets, targets], axis=0)


def mean_cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of integer `targets` [M] under `logits` [M, K], in float32."""
    targets = tf.cast(targets, tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32)))


def nt_xent_loss(z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5) -> tf.Tensor:
    """SimCLR's NT-Xent loss: mean over all 2n local anchors of
    -log(exp(sim(i, pos)/tau) / sum_{k != i} exp(sim(i, k)/tau)), cosine similarity.

    Args:
        z_a, z_b: [n, d] projections of two views of the same n images (any float dtype).
        temperature: tau > 0.

    Returns:
        A float32 scalar. Under a strategy, the mean over this replica's anchors, with
        negatives from all replicas.

    Example:
        >>> z_a, z_b = tf.random.normal([8, 16]), tf.random.normal([8, 16])
        >>> loss = nt_xent_loss(z_a, z_b, temperature=0.1)
    """
    logits, targets = nt_xent_logits(z_a, z_b, temperature)
    return mean_cross_entropy(targets, logits)
