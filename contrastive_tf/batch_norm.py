"""Batch norm whose training step on images is one fused TensorFlow op.

Keras' `BatchNormalization` computes its statistics, normalisation and their gradients as
a chain of element-wise ops, casting bfloat16 inputs to float32 and back; on a CPU that
chain costs more than the convolutions of a narrow ResNet. `FusedBatchNormV3` (oneDNN on
CPUs, cuDNN on GPUs, XLA on TPUs) does the same maths in one op forward and one backward,
in the compute dtype with float32 statistics. Measured on the encoder of
`configs/cpu_cifar10.flags` (ResNet-18 at width 0.25, 256 images of 32 px, forward and
backward; 2-core Intel Xeon, avx512_bf16, amx_bf16): 372 -> 709 images/s in bfloat16,
328 -> 429 in float32.

The library's encoders take it unless `fused_batch_norm` is false: Keras' ops then, the
same maths rounded in another order (the CIFAR-10 CPU recipe's seeds with each are in
docs/performance.md, "The CPU recipes after the change").

The layer is Keras' own in every other case (inference, masks, renorm, other axes, and
statistics synchronised over more than one replica, which the fused op cannot gather), and
its weights and config are Keras' own: `as_keras_layers` turns a model's copies back into
`keras.layers.BatchNormalization` for files that plain Keras loads.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="contrastive_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with its training step on [B, H, W, C] images
    fused: the same outputs, gradients and moving statistics (the moving variance from the
    batch's biased variance, as Keras'), to float rounding (tested against Keras').

    Args:
        fused: whether training takes the fused op; false: Keras' own ops throughout. The
            layer reads it at each call and saves it in its config.
    """

    def __init__(self, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.fused = fused

    def get_config(self) -> dict:
        return {**super().get_config(), "fused": self.fused}

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([inputs.shape[-1]]),
            offset=tf.cast(self.beta, tf.float32) if self.center else tf.zeros([inputs.shape[-1]]),
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            is_training=True,
        )
        # The op returns the unbiased variance; Keras moves towards the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, training, mask) -> bool:
        if not (self.fused and training and self.trainable) or mask is not None or self.renorm:
            return False
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or inputs.dtype not in (tf.float32, tf.bfloat16):
            return False
        if self.synchronized:
            replica = tf.distribute.get_replica_context()
            return replica is None or replica.num_replicas_in_sync == 1
        return True


def as_keras_layers(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A `keras.models.clone_model` clone function: Keras' own batch norm for this module's,
    every other layer cloned from its config."""
    if isinstance(layer, BatchNormalization):
        config = layer.get_config()
        del config["fused"]
        return keras.layers.BatchNormalization.from_config(config)
    return layer.__class__.from_config(layer.get_config())
