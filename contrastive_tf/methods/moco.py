"""MoCo v2 (He et al. 2020; Chen et al. 2020): queries from the online network, keys
from its momentum copy, and InfoNCE against a queue of the keys of recent batches."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import check_temperature, info_nce_logits, mean_cross_entropy
from contrastive_tf.methods.base import ContrastiveModel
from contrastive_tf.methods.momentum import MomentumNetwork
from contrastive_tf.methods.queue import KeyQueue, check_queue_size


@keras.saving.register_keras_serializable(package="contrastive_tf")
class MoCo(ContrastiveModel):
    """MoCo v2: two views per image; the query q = g(f(view 1)) is pulled towards the key
    of view 2 from the momentum copy of f and g, and pushed from the queue's keys.

    It follows facebookresearch/moco (`moco/builder.py`, `MoCo.forward`): queries and keys
    from separate passes of the two networks, the loss one-sided (query view 1, key view 2),
    the key network updated after the step and the queue filled with the global batch's keys.

    Batch norm could let a query find its key through the statistics of the batch they
    share (sec. 3.3 of the paper), and on one device it does: the loss stalls and the
    features fall below random weights. As MoCo's shuffling BN does across GPUs, both
    networks here normalise `bn_groups` groups separately, and the keys' groups are a
    random reordering of the queries' (synchronised batch norm joins each group across
    replicas).

    Args:
        encoder, projection_head, augmenter: as in `SimCLR`.
        temperature: InfoNCE's tau > 0; 0.2 in MoCo v2.
        momentum: m in [0, 1] of the key network, w <- m w + (1 - m) w_online; 0.999 in
            the paper for 800 epochs, lower for short runs.
        queue_size: negatives K.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2; MoCo compares a query with one key.
        bn_groups: groups with their own batch statistics; each replica's batch must
            hold at least 2 images per group.
    """

    layer_args = ("encoder", "projection_head", "augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 4096,
        num_classes: int | None = None,
        num_views: int = 2,
        bn_groups: int = 4,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, **kwargs)
        if bn_groups < 1:
            raise ValueError(f"`bn_groups` must be >= 1; received bn_groups={bn_groups}.")
        self.bn_groups = bn_groups
        check_temperature(temperature)
        if not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be in [0, 1]; received momentum={momentum}.")
        self.projection_head, self.temperature, self.momentum = projection_head, temperature, momentum
        self.key_network = MomentumNetwork(encoder, projection_head, name="key_network")
        self.queue = KeyQueue(queue_size, name="queue")
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self._build_now()

    @classmethod
    def create(
        cls,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        *,
        num_views: int = 2,
        num_classes: int | None = None,
        total_steps: int = 1000,
        temperature: float = 0.2,
        target_momentum: float = 0.99,
        queue_size: int = 4096,
        bn_groups: int = 4,
        projection_layers: int = 2,
        projection_dim: int = 128,
        projection_hidden_dim: int | None = None,
    ) -> MoCo:
        """MoCo v2 with its MLP head; momentum 0.99 suits short runs (the paper: 0.999)."""
        head = ProjectionHead(projection_layers, projection_dim, projection_hidden_dim)
        return cls(
            encoder, head, augmenter, temperature, target_momentum, queue_size, num_classes, num_views, bn_groups
        )

    @classmethod
    def check(cls, batch_size: int, **settings) -> None:
        super().check(batch_size, **settings)
        settings = {**cls.settings(), **settings}
        groups, queue_size = settings["bn_groups"], settings["queue_size"]
        if batch_size < 2 * groups:
            raise UsageError(
                f"moco needs batch_size >= {2 * groups} ({groups} batch-norm groups of 2), got {batch_size}"
            )
        check_queue_size("moco", queue_size, batch_size)

    def heads(self):
        return [self.projection_head]

    def build(self, input_shape):
        super().build(input_shape)
        if not self.key_network.built:
            self.key_network.build(input_shape)
            self.key_network.copy_weights(self.encoder, self.projection_head)
            self.queue.build(self.key_network.compute_output_shape(input_shape))

    @property
    def metrics(self):
        return [self.loss_tracker, self.contrastive_accuracy, *super().metrics[1:]]

    def train_step(self, data):
        (query_view, key_view), labels = self.views(data)
        keys = self.in_groups(self.key_network, key_view, shuffle=True)
        negatives = self.queue.negatives()
        with tf.GradientTape() as tape:
            h = self.in_groups(self.encoder, query_view, shuffle=False)
            queries = self.projection_head(h, training=True)
            logits, targets = info_nce_logits(queries, keys, negatives, self.temperature)
            loss = mean_cross_entropy(targets, logits)
            total = loss + self.probe_loss(h, labels)
        self.minimize(tape, total)
        self.key_network.update(self.encoder, self.projection_head, self.momentum)
        self.queue.enqueue(keys)
        self.loss_tracker.update_state(loss)
        self.contrastive_accuracy.update_state(targets, logits)
        return self._logs()

    def in_groups(self, network: keras.layers.Layer, views: tf.Tensor, shuffle: bool) -> tf.Tensor:
        """`network(views)` in training mode, computed in `bn_groups` groups of the views
        (in a random order when `shuffle`), returned in the views' order."""
        if views.shape[0] is not None and views.shape[0] < 2 * self.bn_groups:
            raise ValueError(f"MoCo needs >= {2 * self.bn_groups} images per replica, got {views.shape[0]}.")
        count = tf.shape(views)[0]
        order = tf.range(count)
        if shuffle:
            # Drawn from the step counter, so that a resumed run draws the same order.
            replica = tf.distribute.get_replica_context()
            replica_id = 0 if replica is None else replica.replica_id_in_sync_group
            seed = tf.stack([tf.cast(self.optimizer.iterations, tf.int32), tf.cast(replica_id, tf.int32)])
            order = tf.argsort(tf.random.stateless_uniform([count], seed))
        bounds = (tf.range(self.bn_groups + 1) * count) // self.bn_groups
        reordered = tf.gather(views, order)
        outputs = [network(reordered[bounds[i] : bounds[i + 1]], training=True) for i in range(self.bn_groups)]
        return tf.gather(tf.concat(outputs, axis=0), tf.math.invert_permutation(order))

    def get_config(self):
        return {
            **super().get_config(),
            "bn_groups": self.bn_groups,
            "temperature": self.temperature,
            "momentum": self.momentum,
            "queue_size": self.queue.size,
        }
