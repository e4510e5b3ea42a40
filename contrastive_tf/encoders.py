"""Encoders f(.): images in [0, 1] -> representation h (a flat vector per image).

Every encoder is a functional `keras.Model`, so it saves to `.keras`, exports as a
SavedModel and can be swapped for any other Keras model with a flat output. Batch norm
is `synchronized`: under a distribution strategy its statistics cover the global batch,
which SimCLR needs so that replicas cannot cheat the loss with local statistics.
`build_encoder` also makes encoders of `keras.applications` models and of a user's
factory (see `contrastive_tf.backbones`).

The bottleneck ResNets (50, 101, 152) can take SimCLRv2's selective kernels (Chen et al.
2020, arXiv:2006.10029; google-research/simclr, tf2/resnet.py) with `sk_ratio` > 0.
"""

from __future__ import annotations

import difflib
import os

import keras
from keras import layers, ops

from contrastive_tf import initializers, storage
from contrastive_tf.backbones import (
    APPLICATIONS,
    application,
    batch_norm_layers,
    from_factory,
    is_factory_path,
    no_width,
)
from contrastive_tf.batch_norm import BatchNormalization
from contrastive_tf.data import DIGIT_MAX_SIZE, is_small
from contrastive_tf.errors import UsageError, reason
from contrastive_tf.vit import VITS, vision_transformer

# Blocks per stage, and whether the stage uses bottleneck blocks.
RESNET_DEPTHS = {
    "resnet18": ([2, 2, 2, 2], False),
    "resnet34": ([3, 4, 6, 3], False),
    "resnet50": ([3, 4, 6, 3], True),
    "resnet101": ([3, 4, 23, 3], True),
    "resnet152": ([3, 8, 36, 3], True),
}
ENCODERS = ("small_cnn", *RESNET_DEPTHS, *VITS)
SK_ENCODERS = tuple(name for name, (_, bottleneck) in RESNET_DEPTHS.items() if bottleneck)
# Channel means and standard deviations an encoder can standardise its [0, 1] pixels by, as
# torchvision's Normalize in the peers' transforms: lightly's IMAGENET_NORMALIZE
# (lightly/transforms/utils.py) and solo-learn's CIFAR-10 (solo/data/pretrain_dataloader.py).
INPUT_NORMALIZATIONS = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
# SimCLRv2's SK ResNets: the attention's hidden layer is 1/16 of the branch width, never below 32 units.
SIMCLRV2_SK_RATIO = 0.0625
SK_MIN_HIDDEN = 32


def _batch_norm(x, zero_init: bool = False):
    return BatchNormalization(
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


def _selective_kernel_conv(x, filters: int, stride: int, sk_ratio: float):
    """The selective-kernel 3x3 conv of SimCLRv2's ResNets (after Li et al. 2019): one conv
    makes two branches of `filters` channels, and every channel of every image mixes them
    with softmax weights computed from the spatial mean of their sum."""
    branches = ops.stack(ops.split(_conv_bn_relu(x, 2 * filters, 3, stride), 2, axis=-1))
    context = layers.GlobalAveragePooling2D(keepdims=True)(ops.sum(branches, axis=0))
    context = _conv_bn_relu(context, max(int(filters * sk_ratio), SK_MIN_HIDDEN), 1)
    logits = layers.Conv2D(2 * filters, 1, use_bias=False, kernel_initializer="he_normal")(context)
    weights = ops.softmax(ops.stack(ops.split(logits, 2, axis=-1)), axis=0)
    return ops.sum(branches * weights, axis=0)


def _average_pool_shortcut(x, out_filters: int, stride: int):
    """ResNet-D's projection shortcut (He et al. 2019), which SimCLRv2's SK ResNets use: an
    average over each 2x2 window, then a 1x1 conv at stride 1, so no pixel is skipped."""
    if stride == 1:
        x = layers.AveragePooling2D(2, strides=1, padding="same")(x)
    else:
        # Pad at the end only, as the reference does, so an odd size averages in a zero.
        x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = layers.AveragePooling2D(2, strides=stride)(x)
    return _conv_bn_relu(x, out_filters, 1, relu=False)


def _residual_block(x, filters: int, stride: int, bottleneck: bool, sk_ratio: float = 0.0, zero_init: bool = True):
    out_filters = filters * 4 if bottleneck else filters
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        if sk_ratio:
            shortcut = _average_pool_shortcut(x, out_filters, stride)
        else:
            shortcut = _conv_bn_relu(x, out_filters, 1, stride, relu=False)
    if bottleneck:
        x = _conv_bn_relu(x, filters, 1)
        if sk_ratio:
            x = _selective_kernel_conv(x, filters, stride, sk_ratio)
        else:
            x = _conv_bn_relu(x, filters, 3, stride)
        x = _conv_bn_relu(x, out_filters, 1, relu=False, zero_init=zero_init)
    else:
        x = _conv_bn_relu(x, filters, 3, stride)
        x = _conv_bn_relu(x, filters, 3, relu=False, zero_init=zero_init)
    return layers.ReLU()(layers.Add()([x, shortcut]))


def _no_selective_kernels(name: str, sk_ratio: float) -> UsageError:
    return UsageError(
        f"sk_ratio={sk_ratio:g} needs a bottleneck ResNet ({', '.join(SK_ENCODERS)}): selective kernels replace "
        f"the 3x3 conv of a bottleneck block, and {name} has none; set sk_ratio to 0 or choose one of those encoders"
    )


def resnet(
    depth: str = "resnet18",
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    sk_ratio: float = 0.0,
    zero_init_residual: bool = True,
    input_normalization: str = "none",
) -> keras.Model:
    """A ResNet (v1.5) whose output is the global-average-pooled representation h.

    Inputs of 32 px or less get the CIFAR stem (3x3 conv, stride 1, no max-pool), as in
    SimCLR's CIFAR experiments; larger ones the ImageNet stem (7x7 stride 2 + max-pool).

    With `sk_ratio` > 0 the ResNet is SimCLRv2's SK ResNet (google-research/simclr,
    tf2/resnet.py): every bottleneck's 3x3 conv is a selective-kernel conv whose attention
    has max(sk_ratio * its width, 32) hidden units, projection shortcuts average-pool before
    their 1x1 conv, and the ImageNet stem is three 3x3 convs (stride 2, then 1 and 1; half
    width, half, full) before the max-pool. The CIFAR stem stays one 3x3 conv.

    Args:
        depth: one of `RESNET_DEPTHS`: "resnet18", "resnet34", "resnet50", "resnet101", "resnet152".
        input_shape: (height, width, channels) of the [0, 1] input images.
        width: channel multiplier; h has 512*width (18, 34) or 2048*width (50, 101, 152) units.
        sk_ratio: 0 for plain ResNets; SimCLRv2 uses 0.0625 (`SIMCLRV2_SK_RATIO`). Bottleneck
            ResNets only.
        zero_init_residual: start each residual block's last batch-norm scale at 0, as
            SimCLR's ResNets (so each block starts as its shortcut); False starts it at 1,
            as torchvision's (solo-learn) and lightly's.
        input_normalization: a key of `INPUT_NORMALIZATIONS` (see `build_encoder`).

    Example:
        >>> resnet("resnet50", (224, 224, 3), width=2, sk_ratio=0.0625).name
        'resnet50_w2_sk'
    """
    blocks, bottleneck = RESNET_DEPTHS[depth]
    if sk_ratio and not bottleneck:
        raise _no_selective_kernels(depth, sk_ratio)
    base = max(8, int(round(64 * width)))
    inputs, x = _images(input_shape, input_normalization)
    if is_small(input_shape):
        x = _conv_bn_relu(x, base, 3)
    else:
        if sk_ratio:
            x = _conv_bn_relu(x, base // 2, 3, stride=2)
            x = _conv_bn_relu(x, base // 2, 3)
            x = _conv_bn_relu(x, base, 3)
        else:
            x = _conv_bn_relu(x, base, 7, stride=2)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, count in enumerate(blocks):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            x = _residual_block(x, base * 2**stage, stride, bottleneck, sk_ratio, zero_init_residual)
    outputs = layers.GlobalAveragePooling2D(name="representation")(x)
    sk = "" if not sk_ratio else "_sk" if sk_ratio == SIMCLRV2_SK_RATIO else f"_sk{sk_ratio:g}"
    return keras.Model(inputs, outputs, name=f"{depth}_w{width:g}{sk}")


def small_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    width: float = 1.0,
    pooling_grid: int = 1,
    input_normalization: str = "none",
) -> keras.Model:
    """The seed documents' small CNN for 28x28 digits: 3x3 conv-BN-ReLU layers of 32,
    64, 128 and 256 filters, each after the first with stride 2 (28 -> 14 -> 7 -> 4 px),
    then pooled. The last layer sees most of the digit, so h describes its shape rather
    than local strokes.

    h has 256*width*pooling_grid**2 units: the last feature map averaged over a
    pooling_grid x pooling_grid grid of cells and flattened. 1 is global average pooling,
    as every ResNet here; 2 also keeps which quarter of the image each feature fired in,
    which a digit's identity depends on (issue 15: on MNIST it lifted the linear probe, kNN
    and the 1% evaluations, for a 4% longer pretraining; docs/results.md). Fast enough to
    pretrain on MNIST on a laptop CPU in minutes.
    """
    if pooling_grid < 1:
        raise UsageError(f"pooling_grid must be >= 1, got {pooling_grid}")
    filters = [max(8, int(round(f * width))) for f in (32, 64, 128, 256)]
    inputs, x = _images(input_shape, input_normalization)
    x = _conv_bn_relu(x, filters[0], 3)
    for count in filters[1:]:
        x = _conv_bn_relu(x, count, 3, stride=2)
    if pooling_grid == 1:
        outputs = layers.GlobalAveragePooling2D(name="representation")(x)
    else:
        size = min(x.shape[1:3])
        if size < pooling_grid:
            raise UsageError(
                f"pooling_grid {pooling_grid} is finer than small_cnn's last feature map ({x.shape[1]}x{x.shape[2]} "
                f"for {input_shape[0]}x{input_shape[1]} images); use at most {size}"
            )
        x = layers.AdaptiveAveragePooling2D(pooling_grid)(x)
        outputs = layers.Flatten(name="representation")(x)
    grid = "" if pooling_grid == 1 else f"_grid{pooling_grid}"
    return keras.Model(inputs, outputs, name=f"small_cnn_w{width:g}{grid}")


def default_encoder(input_shape: tuple[int, int, int]) -> str:
    """The encoder "auto" means: small_cnn for digit-sized images, else ResNet-18."""
    return "small_cnn" if max(input_shape[:2]) <= DIGIT_MAX_SIZE else "resnet18"


def is_encoder_name(name: str) -> bool:
    """Whether `name` names an encoder: "auto", one of `ENCODERS`, a `keras.applications`
    model (`backbones.APPLICATIONS`) or a factory's module.path:function."""
    return name == "auto" or name in ENCODERS or name in APPLICATIONS or is_factory_path(name)


def unknown_encoder(name: str) -> str:
    """The one-line error for a `name` that names no encoder, with the closest names."""
    known = ("auto", *ENCODERS, *APPLICATIONS)
    # Case-blind, so that vgg16 finds VGG16; resnet50 is ours and ResNet50 Keras', so both are kept.
    close = difflib.get_close_matches(name.lower(), [known_name.lower() for known_name in known], n=3, cutoff=0.6)
    suggestions = [known_name for match in dict.fromkeys(close) for known_name in known if known_name.lower() == match]
    hint = f" (close: {', '.join(suggestions)})" if suggestions else ""
    return (
        f"unknown encoder {name!r}{hint}; choose auto, {', '.join(ENCODERS)}, an image model of keras.applications "
        "by its name, or module.path:function"
    )


def build_encoder(
    name: str,
    input_shape: tuple[int, int, int],
    width: float = 1.0,
    sk_ratio: float = 0.0,
    pooling_grid: int = 1,
    zero_init_residual: bool = True,
    input_normalization: str = "none",
    weights: str | os.PathLike | None = None,
    patch_size: int | None = None,
    vit_pooling: str = "cls",
    frozen_patch_projection: bool = True,
    initializer: str = "keras",
    fused_batch_norm: bool = True,
) -> keras.Model:
    """The encoder called `name` for images of `input_shape`.

    `name` is one of `ENCODERS`, "auto" (`default_encoder`), an image model of
    `keras.applications` by its name ("MobileNetV3Small", "EfficientNetV2B0"; see
    `backbones.application`), or "module.path:function", a factory of the user's that
    returns a `keras.Model` (see `backbones.from_factory`). Every one takes [0, 1] images and
    gives h [B, D].

    Args:
        width: channel multiplier of small_cnn and the ResNets, alpha of the MobileNets.
        sk_ratio: SimCLRv2's selective kernels if > 0 (bottleneck ResNets only; see `resnet`).
        pooling_grid: h pooled over a grid of cells if > 1 (small_cnn only; see `small_cnn`).
        zero_init_residual: the ResNets' last batch-norm scale of each block at 0 (see `resnet`).
        initializer: one of `initializers.INITIALIZERS`: whose draw small_cnn's and the
            ResNets' convolution kernels take (Keras', SimCLR's, torchvision's, PyTorch's).
        fused_batch_norm: small_cnn's and the ResNets' batch norm trains in one fused op
            (see `batch_norm`): faster, the same maths rounded in another order; false:
            Keras' own ops, as the other encoders' batch norm always.
        input_normalization: a key of `INPUT_NORMALIZATIONS`: the [0, 1] pixels are
            standardised by those channel means and deviations inside the encoder, so that
            its export takes [0, 1] images as every other does (small_cnn and the ResNets;
            the others bring their own preprocessing).
        patch_size, vit_pooling, frozen_patch_projection: a ViT's patch size (None: by the
            image size), pooling and frozen patch projection (see `vit.vision_transformer`).
        weights: a weights file to load: one saved from the same encoder
            (`encoder.save_weights`), or a `keras.applications` model's weights without its
            classifier (.h5). None leaves the weights random.
    """
    if not is_encoder_name(name):
        raise UsageError(unknown_encoder(name))
    if name == "auto":
        name = default_encoder(input_shape)
    if width <= 0:
        raise UsageError(f"width must be > 0, got {width}")
    if sk_ratio < 0:
        raise UsageError(f"sk_ratio must be >= 0, got {sk_ratio}")
    if input_normalization not in INPUT_NORMALIZATIONS:
        raise UsageError(
            f"unknown input_normalization {input_normalization!r}; choose one of {', '.join(INPUT_NORMALIZATIONS)}"
        )
    initializers.check(initializer)
    # Our CNNs, whose convolutions `initializer` draws; other encoders draw their own weights.
    own_cnn = name == "small_cnn" or name in RESNET_DEPTHS
    if initializer != "keras" and not own_cnn:
        raise UsageError(
            f"initializer {initializer} is for small_cnn and the ResNets; {name} draws its own weights: "
            "leave initializer at keras"
        )
    if sk_ratio and name not in SK_ENCODERS:
        raise _no_selective_kernels(name, sk_ratio)
    if pooling_grid != 1 and name != "small_cnn":
        raise UsageError(
            f"pooling_grid={pooling_grid} is a small_cnn option; {name} pools globally: leave pooling_grid at 1"
        )
    if input_normalization != "none" and name not in ENCODERS:
        raise UsageError(
            f"input_normalization {input_normalization} is for small_cnn and the ResNets; {name} preprocesses its "
            "own [0, 1] images: leave input_normalization at none"
        )
    if name == "small_cnn":
        encoder = small_cnn(input_shape, width, pooling_grid, input_normalization)
    elif name in RESNET_DEPTHS:
        encoder = resnet(name, input_shape, width, sk_ratio, zero_init_residual, input_normalization)
    elif name in VITS and width == 1:
        image_input = _images(input_shape, input_normalization)
        encoder = vision_transformer(
            name, input_shape, patch_size, vit_pooling, frozen_patch_projection, image_input=image_input
        )
    elif name in APPLICATIONS:
        encoder = application(name, input_shape, width)
    elif width != 1:
        raise no_width(name, width)
    else:
        encoder = from_factory(name, input_shape)
    if own_cnn:
        initializers.draw_convolutions(encoder, initializer)
        for layer in batch_norm_layers(encoder):
            layer.fused = fused_batch_norm
    if weights is not None:
        _load_weights(encoder, weights)
    return encoder


def _load_weights(encoder: keras.Model, path: str | os.PathLike) -> None:
    if not storage.exists(path):
        raise UsageError(f"encoder_weights {path} does not exist; pass a weights file on this machine")
    try:
        encoder.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise UsageError(
            f"encoder_weights {path} do not fit {encoder.name} ({reason(error).rstrip(':')}); pass weights saved "
            "from the same encoder at the same width"
        ) from None


def _images(input_shape: tuple[int, int, int], input_normalization: str = "none"):
    """The encoder's input, [0, 1] images, and the tensor its layers start from: the images
    standardised by `INPUT_NORMALIZATIONS[input_normalization]` (unchanged for "none")."""
    inputs = keras.Input(input_shape, name="images")
    statistics = INPUT_NORMALIZATIONS[input_normalization]
    if statistics is None:
        return inputs, inputs
    if input_shape[-1] != 3:
        raise UsageError(
            f"input_normalization {input_normalization} standardises 3 colour channels; these images have "
            f"{input_shape[-1]}: leave input_normalization at none"
        )
    mean, std = statistics
    variance = [d * d for d in std]
    return inputs, layers.Normalization(mean=mean, variance=variance, name="input_normalization")(inputs)
