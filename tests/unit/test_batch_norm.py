"""The fused batch norm computes what Keras' does: outputs, gradients and moving statistics
in training, to float rounding, against Keras' own layer and against a float64 NumPy
transcription of it; Keras' path where the fused op cannot serve (inference, statistics over
two replicas); unfused, Keras' own ops to the bit; encoders unfused when asked; and an
encoder built with it exports as Keras' own layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.batch_norm import BatchNormalization, as_keras_layers
from contrastive_tf.encoders import build_encoder

SHAPE = (16, 6, 6, 8)


def _inputs():
    images = tf.random.stateless_normal(SHAPE, seed=[1, 2]) * 3.0 + 1.0
    weights = tf.random.stateless_normal(SHAPE, seed=[3, 4])
    return images, weights


def _step(layer, images, weights, dtype=tf.float32):
    """(outputs, d loss / d images, d gamma, d beta, moving mean, moving variance) of one
    training call, the loss sum(outputs x weights)."""
    images = tf.cast(images, dtype)
    layer.build(images.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, SHAPE[-1]))
    layer.beta.assign(np.linspace(-1.0, 1.0, SHAPE[-1]))
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = layer(images, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    gradients = tape.gradient(loss, [images, layer.gamma, layer.beta])
    return [np.asarray(t, np.float64) for t in (outputs, *gradients, layer.moving_mean, layer.moving_variance)]


def _numpy_batch_norm(x, dy, gamma, beta, momentum=0.99, epsilon=1e-3):
    """Keras' BatchNormalization.call in training (keras/src/layers/normalization/
    batch_normalization.py, its defaults: biased moments, then the moving averages), and its
    gradient."""
    axes = (0, 1, 2)
    mean, variance = x.mean(axes), x.var(axes)
    inverse = 1.0 / np.sqrt(variance + epsilon)
    normalised = (x - mean) * inverse
    y = normalised * gamma + beta
    dnorm = dy * gamma
    dx = inverse * (dnorm - dnorm.mean(axes) - normalised * (dnorm * normalised).mean(axes))
    moving = (momentum * 0.0 + (1 - momentum) * mean, momentum * 1.0 + (1 - momentum) * variance)
    return [y, dx, (dy * normalised).sum(axes), dy.sum(axes), *moving]


def test_training_computes_what_keras_batch_norm_and_its_transcription_compute():
    images, weights = _inputs()
    fused = _step(BatchNormalization(), images, weights)
    keras_own = _step(keras.layers.BatchNormalization(), images, weights)
    gamma, beta = np.linspace(0.5, 1.5, SHAPE[-1]), np.linspace(-1.0, 1.0, SHAPE[-1])
    reference = _numpy_batch_norm(images.numpy().astype(np.float64), weights.numpy().astype(np.float64), gamma, beta)
    for name, ours, theirs, expected in zip(("y", "dx", "dgamma", "dbeta", "mean", "var"), fused, keras_own, reference):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(theirs, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_bfloat16_inputs_give_bfloat16_outputs_normalised_in_float32():
    images, weights = _inputs()
    layer = BatchNormalization(dtype="mixed_bfloat16")
    outputs, dx, *_ = _step(layer, images, weights, tf.bfloat16)
    reference = _numpy_batch_norm(
        images.numpy().astype(np.float64), weights.numpy().astype(np.float64),
        np.linspace(0.5, 1.5, SHAPE[-1]), np.linspace(-1.0, 1.0, SHAPE[-1]),
    )  # fmt: skip
    assert layer(tf.cast(images, tf.bfloat16), training=True).dtype == tf.bfloat16
    np.testing.assert_allclose(outputs, reference[0], atol=0.05)  # bfloat16's 8 bits of mantissa
    np.testing.assert_allclose(dx, reference[1], atol=0.05)


def test_unfused_training_is_keras_own_to_the_bit():
    images, weights = _inputs()
    unfused = _step(BatchNormalization(fused=False), images, weights)
    keras_own = _step(keras.layers.BatchNormalization(), images, weights)
    for name, ours, theirs in zip(("y", "dx", "dgamma", "dbeta", "mean", "var"), unfused, keras_own):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


@pytest.mark.parametrize("name", ["resnet18", "small_cnn"])
def test_an_encoder_fuses_its_batch_norm_as_asked_and_its_copies_keep_the_setting(name):
    for fused in (False, True):
        encoder = build_encoder(name, (32, 32, 3), width=0.25, fused_batch_norm=fused)
        layers = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert layers and all(isinstance(layer, BatchNormalization) and layer.fused == fused for layer in layers)
        copy = keras.models.clone_model(encoder)
        assert [layer.fused for layer in copy.layers if isinstance(layer, BatchNormalization)] == [fused] * len(layers)


def test_inference_uses_the_moving_statistics_as_keras_does():
    images, weights = _inputs()
    fused, keras_own = BatchNormalization(), keras.layers.BatchNormalization()
    for layer in (fused, keras_own):
        _step(layer, images, weights)
    np.testing.assert_allclose(fused(images, training=False), keras_own(images, training=False), rtol=1e-5, atol=1e-5)


def test_statistics_over_two_replicas_are_those_of_the_global_batch(mirrored):
    images, _ = _inputs()
    with mirrored.scope():
        layer = BatchNormalization(synchronized=True)
        layer.build(images.shape)
    halves = mirrored.experimental_distribute_values_from_function(
        lambda context: images[context.replica_id_in_sync_group * 8 : (context.replica_id_in_sync_group + 1) * 8]
    )
    outputs = mirrored.run(lambda x: layer(x, training=True), args=(halves,))
    together = tf.concat(mirrored.experimental_local_results(outputs), axis=0)
    mean, variance = tf.nn.moments(images, axes=[0, 1, 2])
    np.testing.assert_allclose(together, (images - mean) / tf.sqrt(variance + 1e-3), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "small_cnn"])
def test_an_encoder_copied_for_plain_keras_holds_keras_batch_norm_and_the_same_weights(name):
    encoder = build_encoder(name, (32, 32, 3), width=0.25)
    copy = keras.models.clone_model(encoder, clone_function=as_keras_layers, recursive=True)
    copy.set_weights(encoder.get_weights())
    assert not any(isinstance(layer, BatchNormalization) for layer in copy.layers)
    images = tf.random.stateless_uniform((4, 32, 32, 3), seed=[5, 6])
    np.testing.assert_allclose(copy(images, training=False), encoder(images, training=False), rtol=1e-6, atol=1e-6)
