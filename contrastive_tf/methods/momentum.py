"""Momentum (EMA) networks: MoCo's key encoder and BYOL's target network are slowly moving
copies of the online encoder and projection head, w <- m w + (1 - m) w_online after each
step, which the optimizer never trains."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from contrastive_tf.backbones import synchronize_like

MOMENTUM_SCHEDULES = ("cosine", "constant")


def scheduled_momentum(step: tf.Tensor, total_steps: int, base: float, schedule: str = "cosine") -> tf.Tensor | float:
    """The momentum at `step`: BYOL's cosine from `base` to 1 (`byol_momentum`), or `base`
    throughout ("constant")."""
    return byol_momentum(step, total_steps, base) if schedule == "cosine" else base


def byol_momentum(step: tf.Tensor, total_steps: int, base: float = 0.996) -> tf.Tensor:
    """BYOL's schedule, 1 - (1 - base) (cos(pi step / total_steps) + 1) / 2: `base` at
    the first step, rising to 1 at the last."""
    progress = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return 1.0 - (1.0 - base) * (tf.cos(math.pi * progress) + 1.0) / 2.0


@keras.saving.register_keras_serializable(package="contrastive_tf")
class MomentumNetwork(keras.layers.Layer):
    """A momentum copy of an online encoder and projection head: images -> projections,
    with no gradient. Its batch norm normalises with batch statistics in training mode,
    as the online network's does (a frozen Keras layer would use its moving averages),
    synchronised across replicas where the online network's is (subclassed models too).

    Args:
        encoder, projection_head: the online layers to copy (their architecture; the
            weights are copied by `copy_weights`).

    Example:
        >>> target = MomentumNetwork(encoder, head)
        >>> target.build(images.shape); target.copy_weights(encoder, head)
        >>> keys = target(images, training=True)
        >>> target.update(encoder, head, momentum=0.99)   # after each optimizer step
    """

    def __init__(self, encoder: keras.Model, projection_head: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.projection_head = (
            synchronize_like(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)), layer)
            for layer in (encoder, projection_head)
        )

    def build(self, input_shape):
        # A copy of a built layer arrives built.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.projection_head.built:
            self.projection_head.build(self.encoder.compute_output_shape(input_shape))
        # Out of `trainable_weights`, so that no optimizer sees them; the layers stay
        # trainable, which keeps their batch norm on batch statistics.
        for weight in self.weights:
            weight.trainable = False

    def call(self, images, training=False):
        h = self.encoder(images, training=training)
        return tf.stop_gradient(self.projection_head(h, training=training))

    def compute_output_shape(self, input_shape):
        return self.projection_head.compute_output_shape(self.encoder.compute_output_shape(input_shape))

    def _pairs(self, encoder: keras.Model, projection_head: keras.layers.Layer):
        """(own weight, online weight) for every weight the online optimizer trains."""
        online = [*encoder.weights, *projection_head.weights]
        own = [*self.encoder.weights, *self.projection_head.weights]
        if [weight.shape for weight in own] != [weight.shape for weight in online]:
            raise ValueError("the momentum network and the online network have different weights")
        return [(mine, theirs) for mine, theirs in zip(own, online) if theirs.trainable]

    def copy_weights(self, encoder: keras.Model, projection_head: keras.layers.Layer) -> None:
        """Starts from the online network's weights, as MoCo and BYOL do."""
        for mine, theirs in self._pairs(encoder, projection_head):
            mine.assign(theirs)

    def update(self, encoder: keras.Model, projection_head: keras.layers.Layer, momentum: float | tf.Tensor) -> None:
        """w <- momentum w + (1 - momentum) w_online. Under a strategy every replica
        holds the same online weights, so each updates its own copy to the same value."""
        for mine, theirs in self._pairs(encoder, projection_head):
            mine.assign(mine + (1.0 - momentum) * (tf.cast(theirs, mine.dtype) - mine))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "projection_head": keras.saving.serialize_keras_object(self.projection_head),
        }

    @classmethod
    def from_config(cls, config):
        for key in ("encoder", "projection_head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
