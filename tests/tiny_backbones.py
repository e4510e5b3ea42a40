"""Backbone factories of the kind a user passes as --encoder=module.path:function, for the
tests: each takes the input shape and returns a keras.Model of [0, 1] images."""

import keras
from keras import layers


def build(input_shape):
    """Two conv-BN-ReLU layers, the second at stride 2: a feature map [B, H/2, W/2, 8],
    which the library pools into h [B, 8]."""
    images = keras.Input(input_shape)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(images)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    return keras.Model(images, layers.ReLU()(layers.BatchNormalization()(x)), name="tiny_backbone")


@keras.saving.register_keras_serializable(package="tests")
class Subclassed(keras.Model):
    """A subclassed backbone: its layers are built in its own code, so a copy made from its
    config has batch norm without the `synchronized` the library set on the original's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
        self.norm = layers.BatchNormalization()

    def call(self, images, training=False):
        return keras.ops.relu(self.norm(self.conv(images), training=training))


def subclassed(input_shape):
    model = Subclassed(name="tiny_subclassed")
    model.build((None, *input_shape))
    return model


def flat(input_shape):
    """A model that gives h [B, 4] itself."""
    images = keras.Input(input_shape)
    return keras.Model(images, layers.Dense(4)(layers.GlobalAveragePooling2D()(images)), name="tiny_flat")


def sequence(input_shape):
    """A model whose output is [B, H*W, C]: neither h nor a feature map."""
    images = keras.Input(input_shape)
    return keras.Model(images, layers.Reshape((-1, input_shape[-1]))(images), name="tiny_sequence")


def not_a_model(input_shape):
    return layers.Conv2D(8, 3)


@keras.saving.register_keras_serializable(package="tests")
class ConvBlock(layers.Layer):
    """A custom layer that holds its own batch norm: a nested layer, not a nested model."""

    def __init__(self, filters=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)
        self.norm = layers.BatchNormalization()

    def call(self, inputs, training=False):
        return keras.ops.relu(self.norm(self.conv(inputs), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def blocks(input_shape):
    """A functional model of a custom layer with batch norm inside it."""
    images = keras.Input(input_shape)
    return keras.Model(images, ConvBlock(name="block")(images), name="tiny_blocks")
