"""Encoders f(.): images in [0, 1] -> representation h (a flat vector per image).

Every encoder is a functional `keras.Model`, so it saves to `.keras`, exports as a
SavedModel and can be swapped for any other Keras model with a flat output. Batch norm
is `synchronized`: under a distribution strategy its statistics cover the global batch,
which SimCLR needs so that replicas cannot cheat the loss with local statistics.
"""

from __future__ import annotations

import keras
from keras import layers

from contrastive_tf.data import DIGIT_MAX_SIZE, is_small
from contrastive_tf.errors import UsageError

# Blocks per stage, and whether the stage uses bottleneck blocks.
RESNET_DEPTHS = {
    "resnet18": ([2, 2, 2, 2], False),
    "resnet34": ([3, 4, 6, 3], False),
    "resnet50": ([3, 4, 6, 3], True),
}
ENCODERS = ("small_cnn", *RESNET_DEPTHS)


def _batch_norm(x, zero_init: bool = False):
    return layers.BatchNormalization(
        synchronized=True,
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer="zeros" if zero_init else "ones",
    )(x)


def _conv_bn_relu(x, filters: int, kernel: int, stride: int = 1, relu: bool = True, zero_init: bool = False):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal")(
        x
    )
    x = _batch_norm(x, zero_init)
    return layers.ReLU()(x) if relu else x


def _residual_block(x, filters: int, stride: int, bottleneck: bool):
    out_filters = filters * 4 if bottleneck else filters
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv_bn_relu(x, out_filters, 1, stride, relu=False)
    if bottleneck:
        x = _conv_bn_relu(x, filters, 1)
        x = _conv_bn_relu(x, filters, 3, stride)
        x = _conv_bn_relu(x, out_filters, 1, relu=False, zero_init=True)
    else:
        x = _conv_bn_relu(x, filters, 3, stride)
        x = _conv_bn_relu(x, filters, 3, relu=False, zero_init=True)
    return layers.ReLU()(layers.Add()([x, shortcut]))


def resnet(
    depth: str = "resnet18",
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
) -> keras.Model:
    """A ResNet (v1.5) whose output is the global-average-pooled representation h.

    Inputs of 32 px or less get the CIFAR stem (3x3 conv, stride 1, no max-pool), as in
    SimCLR's CIFAR experiments; larger ones the ImageNet stem (7x7 stride 2 + max-pool).

    Args:
        depth: "resnet18", "resnet34" or "resnet50".
        input_shape: (height, width, channels) of the [0, 1] input images.
        width: channel multiplier; h has 512*width (or 2048*width for resnet50) units.
    """
    blocks, bottleneck = RESNET_DEPTHS[depth]
    base = max(8, int(round(64 * width)))
    inputs = keras.Input(input_shape, name="images")
    if is_small(input_shape):
        x = _conv_bn_relu(inputs, base, 3)
    else:
        x = _conv_bn_relu(inputs, base, 7, stride=2)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, count in enumerate(blocks):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            x = _residual_block(x, base * 2**stage, stride, bottleneck)
    outputs = layers.GlobalAveragePooling2D(name="representation")(x)
    return keras.Model(inputs, outputs, name=f"{depth}_w{width:g}")


def small_cnn(input_shape: tuple[int, int, int] = (28, 28, 1), width: float = 1.0) -> keras.Model:
    """The seed documents' small CNN for 28x28 digits: 3x3 conv-BN-ReLU layers of 32,
    64, 128 and 256 filters, each after the first with stride 2 (28 -> 14 -> 7 -> 4 px),
    globally average-pooled. The last layer sees most of the digit, so h describes its
    shape rather than local strokes.

    h has 256*width units. Fast enough to pretrain on MNIST on a laptop CPU in minutes.
    """
    filters = [max(8, int(round(f * width))) for f in (32, 64, 128, 256)]
    inputs = keras.Input(input_shape, name="images")
    x = _conv_bn_relu(inputs, filters[0], 3)
    for count in filters[1:]:
        x = _conv_bn_relu(x, count, 3, stride=2)
    outputs = layers.GlobalAveragePooling2D(name="representation")(x)
    return keras.Model(inputs, outputs, name=f"small_cnn_w{width:g}")


def default_encoder(input_shape: tuple[int, int, int]) -> str:
    """The encoder "auto" means: small_cnn for digit-sized images, else ResNet-18."""
    return "small_cnn" if max(input_shape[:2]) <= DIGIT_MAX_SIZE else "resnet18"


def build_encoder(name: str, input_shape: tuple[int, int, int], width: float = 1.0) -> keras.Model:
    """The encoder called `name` (one of `ENCODERS`) for images of `input_shape`."""
    if name not in ENCODERS:
        raise UsageError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    if width <= 0:
        raise UsageError(f"width must be > 0, got {width}")
    if name == "small_cnn":
        return small_cnn(input_shape, width)
    return resnet(name, input_shape, width)
