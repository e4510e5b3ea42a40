"""MoCo v2 (He et al. 2020; Chen et al. 2020): queries from the online network, keys
from its momentum copy, and InfoNCE against a queue of the keys of recent batches."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import info_nce_logits, mean_cross_entropy
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import ContrastiveModel
from contrastive_tf.methods.momentum import MomentumNetwork
from contrastive_tf.methods.queue import KeyQueue, check_queue_size
from contrastive_tf.settings import at_least, setting


@dataclasses.dataclass(frozen=True)
class MoCoSettings(settings.MethodSettings):
    """MoCo v2's settings: InfoNCE at 0.2, a queue of 4096 keys, and its MLP head; key
    momentum 0.99 suits short runs (the paper: 0.999 over 800 epochs)."""

    method = "moco"
    temperature: float = settings.temperature(0.2)
    target_momentum: float = settings.target_momentum(0.99)
    queue_size: int = settings.queue_size(4096)
    bn_groups: int = setting(
        4,
        "MoCo's shuffling batch norm on one device: both networks normalise this many groups of the batch "
        "separately, the keys' groups a random reordering of the queries'; each replica's batch needs 2 images "
        "per group.",
        valid=at_least(1),
    )
    symmetric: bool = setting(
        False,
        "MoCo: also take view 2 as the query and view 1 as the key, and average the two losses (lightly's "
        "CIFAR-10 benchmark); off: MoCo v2's one-sided loss.",
    )
    projection_layers: int = settings.projection_layers(2)
    projection_dim: int = settings.projection_dim(128)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(None)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class MoCo(ContrastiveModel):
    """MoCo v2: two views per image; the query q = g(f(view 1)) is pulled towards the key
    of view 2 from the momentum copy of f and g, and pushed from the queue's keys.

    It follows facebookresearch/moco (`moco/builder.py`, `MoCo.forward`): queries and keys
    from separate passes of the two networks, the loss one-sided (query view 1, key view 2),
    the key network updated after the step and the queue filled with the global batch's keys.
    `symmetric` adds the pair the other way round and averages the two losses, as lightly's
    CIFAR-10 benchmark (`MocoModel.training_step`) and MoCo's CIFAR demo do; as in lightly,
    whose memory bank is filled inside each loss, the second pair's negatives include the
    first pair's keys.

    Batch norm could let a query find its key through the statistics of the batch they
    share (sec. 3.3 of the paper), and on one device it does: the loss stalls and the
    features fall below random weights. As MoCo's shuffling BN does across GPUs, both
    networks here normalise `bn_groups` groups separately, and the keys' groups are a
    random reordering of the queries' (synchronised batch norm joins each group across
    replicas).

    Args:
        encoder, projection_head, augmenter: as in `SimCLR`.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2; MoCo compares a query with one key.
        temperature, target_momentum, queue_size, bn_groups, symmetric: see `MoCoSettings`.
    """

    Settings = MoCoSettings
    renamed_settings = {"momentum": "target_momentum"}
    layer_args = ("encoder", "projection_head", "augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        num_classes: int | None = None,
        num_views: int = 2,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, **kwargs)
        self.projection_head = projection_head
        self.key_network = MomentumNetwork(encoder, projection_head, name="key_network")
        self.queue = KeyQueue(self.queue_size, name="queue")
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: MoCoSettings, **common) -> MoCo:
        head = ProjectionHead(settings.projection_layers, settings.projection_dim, settings.projection_hidden_dim)
        return cls(encoder, head, augmenter, **common, **settings.model_arguments())

    @classmethod
    def check(cls, batch_size: int, **settings) -> MoCoSettings:
        own = super().check(batch_size, **settings)
        if batch_size < 2 * own.bn_groups:
            raise UsageError(
                f"moco needs batch_size >= {2 * own.bn_groups} ({own.bn_groups} batch-norm groups of 2), "
                f"got {batch_size}"
            )
        check_queue_size("moco", own.queue_size, batch_size)
        return own

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
        views, labels = self.views(data)
        # (query view, key view): view 1 against view 2, and back when symmetric.
        pairs = [(views[0], views[1]), (views[1], views[0])][: 2 if self.symmetric else 1]
        keys = [self.in_groups(self.key_network, key_view, shuffle=True) for _, key_view in pairs]
        with tf.GradientTape() as tape:
            losses, h = [], None
            for (query_view, _), pair_keys in zip(pairs, keys):
                query_h = self.in_groups(self.encoder, query_view, shuffle=False)
                queries = self.projection_head(query_h, training=True)
                # The second pair's negatives hold the first pair's keys, as lightly's memory bank does.
                pair_logits, pair_targets = info_nce_logits(
                    queries, pair_keys, self.queue.negatives(), self.temperature
                )
                self.queue.enqueue(pair_keys)
                losses.append(mean_cross_entropy(pair_targets, pair_logits))
                if h is None:
                    h, logits, targets = query_h, pair_logits, pair_targets
            loss = tf.add_n(losses) / len(losses)
            total = loss + self.probe_loss(h, labels)
        self.minimize(tape, total)
        self.key_network.update(self.encoder, self.projection_head, self.target_momentum)
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
