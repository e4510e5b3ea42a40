"""Backbones from outside this library as its encoders: any image model of
`keras.applications` by its name, or a user's factory `module.path:function` that returns a
`keras.Model`. Each becomes an encoder with the contract every encoder here has: images in
[0, 1] of the run's shape in, the representation h [B, D] out, and batch norm synchronised
across replicas (SimCLR needs global-batch statistics; see `contrastive_tf.encoders`).
"""

from __future__ import annotations

import importlib
import inspect
import re

import keras
import tensorflow as tf
from keras import layers

from contrastive_tf.errors import UsageError, reason

# Every image model of keras.applications, by the name Keras exports it under.
APPLICATIONS = tuple(sorted(name for name in dir(keras.applications) if name[:1].isupper()))
_FACTORY_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_factory_path(name: str) -> bool:
    """Whether `name` has the form module.path:function of a user's backbone factory."""
    return _FACTORY_PATH.fullmatch(name) is not None


def no_width(name: str, width: float) -> UsageError:
    return UsageError(
        f"width={width:g} scales small_cnn, the ResNets and the MobileNets (their alpha); {name} has no width "
        "multiplier here: leave width at 1"
    )


def application(name: str, input_shape: tuple[int, int, int], width: float = 1.0, **options: object) -> keras.Model:
    """`keras.applications.<name>` as an encoder: built without its classifier, with random
    weights, for `input_shape` images, its last feature map globally average pooled into h.

    It takes [0, 1] images, as every encoder here, and applies the application's own
    preprocessing inside the model: the pixels are scaled to [0, 255] and passed through the
    `preprocess_input` of the application's module (ResNet and VGG: BGR minus the ImageNet
    means; Inception, Xception, MobileNet v1/v2, NASNet, ResNetV2: [-1, 1]; DenseNet:
    ImageNet standardisation; ConvNeXt, EfficientNet and MobileNetV3 keep their
    preprocessing in the network, which expects [0, 255], so theirs passes the pixels on).
    Grey images are repeated into the three channels the networks take. Batch norm is
    synchronised (`synchronize_batch_norm`).

    Args:
        name: one of `APPLICATIONS`, e.g. "MobileNetV3Small", "EfficientNetV2B0".
        input_shape: (height, width, channels) of the images; 1 or 3 channels, at least the
            application's smallest size (32 px for most).
        width: the width multiplier `alpha` of the MobileNets; the other applications have
            none and take only 1.
        **options: further arguments of the application, e.g. minimalistic=True for MobileNetV3.

    Example:
        >>> application("MobileNetV3Small", (32, 32, 3)).output_shape
        (None, 576)
    """
    if name not in APPLICATIONS:
        raise UsageError(f"keras.applications has no model {name!r}; choose one of {', '.join(APPLICATIONS)}")
    if input_shape[-1] not in (1, 3):
        raise UsageError(
            f"keras.applications models take colour (or grey) images, these have {input_shape[-1]} channels; "
            "choose small_cnn or a ResNet"
        )
    build = getattr(keras.applications, name)
    if "alpha" in inspect.signature(build).parameters:
        options = {"alpha": width, **options}
    elif width != 1:
        raise no_width(name, width)
    # The module that defines the model defines its preprocessing.
    preprocessing = getattr(keras.applications, build.__module__.rsplit(".", 1)[-1]).preprocess_input
    images = keras.Input(input_shape, name="images")
    x = images if input_shape[-1] == 3 else layers.Concatenate(name="grey_to_rgb")([images] * 3)
    x = preprocessing(layers.Rescaling(255.0, name="pixels_0_255")(x))
    try:
        network = build(include_top=False, weights=None, input_tensor=x, pooling="avg", **options)
    except (ValueError, tf.errors.OpError) as error:
        raise UsageError(
            f"keras.applications.{name} cannot be built for {input_shape[0]}x{input_shape[1]} images "
            f"({reason(error)}); set a larger image_size or choose another encoder"
        ) from None
    # The network starts at `images`, through the preprocessing: one flat model, whose layers
    # match a weights file of the application (legacy .h5 files are matched layer by layer).
    encoder = keras.Model(images, network.output, name=name if width == 1 else f"{name}_w{width:g}")
    return synchronize_batch_norm(encoder)


def from_factory(path: str, input_shape: tuple[int, int, int]) -> keras.Model:
    """The encoder a user's factory makes. `path` is "module.path:function", a function
    called with `input_shape` (height, width, channels) that returns a `keras.Model` taking
    images [B, H, W, C] in [0, 1] and giving h [B, D], or a feature map [B, H', W', C'],
    which is then globally average pooled. Batch norm is synchronised
    (`synchronize_batch_norm`).

    The model must survive `keras.saving.serialize_keras_object`: a run saves it in
    model.keras, and MoCo's and BYOL's momentum network copy it through its config. A
    functional or Sequential model of built-in layers does; a subclassed one needs its
    class registered (`keras.saving.register_keras_serializable`) and imported wherever
    model.keras is loaded, and builds its own batch norm in those copies, so create it with
    `synchronized=True`.

    Raises:
        UsageError: the module does not import, has no such function, the function returns
            no `keras.Model`, or the model's output is neither [B, D] nor [B, H, W, C].
    """
    if not is_factory_path(path):
        raise UsageError(f"encoder factory {path!r} is not of the form module.path:function; name it so")
    module_name, function_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(
            f"cannot import {module_name} for encoder {path} ({reason(error)}); run from the folder that holds it "
            "or add that folder to PYTHONPATH"
        ) from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise UsageError(f"{module_name} has no function {function_name}; name a function that returns a keras.Model")
    model = factory(tuple(input_shape))
    if not isinstance(model, keras.Model):
        raise UsageError(f"{path} returned {type(model).__name__}, not a keras.Model; return the model it builds")
    images = keras.Input(input_shape, name="images")
    try:
        features = model(images)
    except (ValueError, TypeError) as error:
        raise UsageError(
            f"the model of {path} cannot take images of shape {tuple(input_shape)} ({reason(error)}); build it for "
            "the input shape the function is given"
        ) from None
    shape = tuple(features.shape) if isinstance(features, keras.KerasTensor) else None
    if shape is None or len(shape) not in (2, 4):
        raise UsageError(
            f"the model of {path} gives {shape or type(features).__name__}, not h [B, D] or a feature map "
            "[B, H, W, C]; pool or flatten its output into one vector per image"
        )
    h = features if len(shape) == 2 else layers.GlobalAveragePooling2D(name="representation")(features)
    return synchronize_batch_norm(keras.Model(images, h, name=model.name))


def synchronize_batch_norm(model: keras.Model) -> keras.Model:
    """Sets `synchronized` on every `BatchNormalization` in `model`, nested ones too, so
    that under a distribution strategy their statistics cover the global batch, as the
    encoders of `contrastive_tf.encoders` are built. The layer reads the setting at each
    call and saves it in its config, so copies made from the config keep it. Returns `model`."""
    for layer in batch_norm_layers(model):
        layer.synchronized = True
    return model


def synchronize_like(copy: keras.Layer, original: keras.Layer) -> keras.Layer:
    """Gives every batch norm in `copy`, a copy of `original` made from its config, the
    `synchronized` setting of its counterpart in `original`. A subclassed model's copy
    builds its batch norm in the model's own code, without the setting
    `synchronize_batch_norm` gave the original's. Returns `copy`."""
    for mine, theirs in zip(batch_norm_layers(copy), batch_norm_layers(original), strict=True):
        mine.synchronized = theirs.synchronized
    return copy


def batch_norm_layers(model: keras.Layer) -> list[layers.BatchNormalization]:
    """Every `BatchNormalization` in `model`, nested ones too, in the order of its layers."""
    # Keras' own walk over nested layers: no public one reaches a custom layer's sublayers.
    return [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
