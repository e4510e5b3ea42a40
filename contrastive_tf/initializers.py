"""Whose initial weights a run starts from: the draws of the convolutions and of the heads'
dense layers that Keras, SimCLR's reference, torchvision and PyTorch make.

Batch norm follows most of these layers, and the heads end in a cosine or a normalisation,
so a draw's scale barely changes what the network computes at first; it sets how far each
step moves a layer relative to its weights (the effective learning rate) until weight decay
settles the norms, which in a short run it never does: beside lightly's BYOL (2 epochs on
CIFAR-10), ours went from 4.0 kNN points below to 1.0 below with PyTorch's draws
(docs/results.md, "Side by side with lightly")."""

from __future__ import annotations

import keras

from contrastive_tf.errors import UsageError
from contrastive_tf.methods.momentum import MomentumNetwork

INITIALIZERS = ("keras", "simclr", "torchvision", "pytorch")


def _torch_uniform() -> keras.initializers.Initializer:
    """kaiming_uniform_ with a = sqrt(5), torch's nn.Conv2d and nn.Linear default: U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


# Convolution kernels, where the draw is not Keras' he_normal (truncated normal, std sqrt(2 / fan_in)).
_CONV_KERNELS = {
    # google-research/simclr tf2/resnet.py: VarianceScaling(), std sqrt(1 / fan_in).
    "simclr": lambda: keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal"),
    # torchvision/models/resnet.py (solo-learn; lightly's ImageNet benchmarks):
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"), std sqrt(2 / fan_out).
    "torchvision": lambda: keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
    # torch's nn.Conv2d default (lightly's ResNetGenerator, its CIFAR-10 benchmark's backbone).
    "pytorch": _torch_uniform,
}


def check(name: str) -> None:
    if name not in INITIALIZERS:
        raise UsageError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")


def draw_convolutions(model: keras.Model, name: str) -> None:
    """Redraws every `Conv2D` kernel of `model` (its own layers, not nested models') as
    `name` draws it; "keras" leaves Keras' he_normal as the layers drew it."""
    check(name)
    if name == "keras":
        return
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(_CONV_KERNELS[name]()(layer.kernel.shape, layer.kernel.dtype))


def _draw_dense(layer: keras.layers.Dense, name: str) -> None:
    fan_in = layer.kernel.shape[0]
    if name == "simclr":
        # google-research/simclr tf2/model.py, LinearLayer: RandomNormal(stddev=0.01), zero bias.
        kernel = keras.initializers.RandomNormal(stddev=0.01)
        bias = keras.initializers.Zeros()
    else:
        # torch's nn.Linear default (lightly's and solo-learn's heads): weight and bias U(+-1/sqrt(fan_in)).
        kernel = _torch_uniform()
        bias = keras.initializers.RandomUniform(-(fan_in**-0.5), fan_in**-0.5)
    layer.kernel.assign(kernel(layer.kernel.shape, layer.kernel.dtype))
    if layer.bias is not None:
        layer.bias.assign(bias(layer.bias.shape, layer.bias.dtype))


def draw_heads(model: keras.Model, name: str) -> None:
    """Redraws the dense layers of a built method's heads (`model.heads()`) as `name` draws
    them ("keras": glorot_uniform and zero bias, as they are), then starts its momentum
    networks again from the online weights, as the methods do when they are built."""
    check(name)
    if name == "keras":
        return
    for head in model.heads():
        for layer in head._flatten_layers():
            if isinstance(layer, keras.layers.Dense):
                _draw_dense(layer, name)
    for layer in model._flatten_layers():
        if isinstance(layer, MomentumNetwork):
            layer.copy_weights(model.encoder, model.projection_head)
