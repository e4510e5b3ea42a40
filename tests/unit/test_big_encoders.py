"""SimCLRv2's big encoders (Chen et al. 2020, arXiv:2006.10029): ResNet-101 and -152, widths
up to 3x and selective kernels (SK), checked against the published parameter counts, and the
selective-kernel conv against NumPy."""

import functools
import gc

import keras
import numpy as np
import pytest

from contrastive_tf.config import PretrainConfig
from contrastive_tf.encoders import SIMCLRV2_SK_RATIO, _selective_kernel_conv, build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.pretraining import prepare

SK = SIMCLRV2_SK_RATIO

# torchvision's ImageNet ResNets with their classifier (the "Params" of torchvision.models:
# resnet50 25,557,032, resnet101 44,549,160, resnet152 60,192,808), minus the classifier: a
# Dense of 2048 x 1000 weights and 1000 biases. torchvision counts `parameters()`, which for
# batch norm are its scale and shift; the moving mean and variance are buffers, not counted.
# Keras keeps all four as weights of BatchNormalization, the moving two non-trainable, so
# torchvision's count is the encoder's trainable weights.
CLASSIFIER = 2048 * 1000 + 1000
TORCHVISION_ENCODERS = {
    "resnet50": 25_557_032 - CLASSIFIER,  # 23,508,032
    "resnet101": 44_549_160 - CLASSIFIER,  # 42,500,160
    "resnet152": 60_192_808 - CLASSIFIER,  # 58,143,808
}


@functools.cache
def weight_counts(depth: str, width: float, sk_ratio: float) -> tuple[int, int]:
    """(trainable, all) weights of the encoder for 224 px images, built once per session."""
    encoder = build_encoder(depth, (224, 224, 3), width, sk_ratio)
    counts = sum(int(np.prod(weight.shape)) for weight in encoder.trainable_weights), encoder.count_params()
    del encoder
    gc.collect()  # the biggest encoders hold gigabytes
    return counts


@pytest.mark.parametrize("depth", TORCHVISION_ENCODERS)
def test_imagenet_resnets_have_torchvisions_parameter_count_without_the_classifier(depth):
    trainable, _ = weight_counts(depth, 1.0, 0.0)
    assert trainable == TORCHVISION_ENCODERS[depth]


def slow(*row):
    return pytest.param(*row, marks=pytest.mark.slow)


# SimCLRv2, Table 1 (also google-research/simclr README.md): "Param (M)" of every depth,
# width and SK setting, rounded to the million. The paper counts every variable of the
# encoder, batch norm's moving statistics included: with the trainable weights alone,
# ResNet-152 2x would round to 232 (not 233) and 2x+SK to 353 (not 354); with all of them
# every row matches. Rows that take more than a few seconds to build are slow.
@pytest.mark.parametrize(
    "depth, width, sk_ratio, millions",
    [
        ("resnet50", 1.0, 0.0, 24),
        ("resnet50", 1.0, SK, 35),
        slow("resnet50", 2.0, 0.0, 94),
        slow("resnet50", 2.0, SK, 140),
        ("resnet101", 1.0, 0.0, 43),
        slow("resnet101", 1.0, SK, 65),
        slow("resnet101", 2.0, 0.0, 170),
        slow("resnet101", 2.0, SK, 257),
        ("resnet152", 1.0, 0.0, 58),
        slow("resnet152", 1.0, SK, 89),
        slow("resnet152", 2.0, 0.0, 233),
        slow("resnet152", 2.0, SK, 354),
        slow("resnet152", 3.0, SK, 795),
    ],
)
def test_simclrv2_encoders_have_the_parameter_counts_of_table_1(depth, width, sk_ratio, millions):
    _, everything = weight_counts(depth, width, sk_ratio)
    assert round(everything / 1e6) == millions


def _conv_same(x, kernel):
    """A stride-1 convolution with zero padding that keeps the size, in NumPy."""
    pad = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    taps = np.ndindex(kernel.shape[:2])
    return sum(padded[:, i : i + height, j : j + width] @ kernel[i, j] for i, j in taps)


def _batch_norm_relu(x, gamma, beta, mean, variance):
    return np.maximum(gamma * (x - mean) / np.sqrt(variance + 1e-5) + beta, 0)


def test_selective_kernel_conv_mixes_two_branches_by_a_softmax_over_them():
    # tf2/resnet.py, SK_Conv2D: a 3x3 conv to 2F channels (BN, ReLU) split into two branches;
    # their sum, averaged over space, goes through a 1x1 conv to max(F * ratio, 32) units
    # (BN, ReLU) and a 1x1 conv to 2F logits; a softmax across the branches weighs them.
    filters = 3
    inputs = keras.Input((5, 5, 4))
    model = keras.Model(inputs, _selective_kernel_conv(inputs, filters, 1, SK))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            # Small weights keep the softmax away from 0 and 1, where any mix would pass.
            values = [0.3 * rng.normal(size=weight.shape).astype(np.float32) for weight in layer.weights]
            if isinstance(layer, keras.layers.BatchNormalization):
                values[3] = np.abs(values[3]) + 0.5  # a moving variance is positive
            layer.set_weights(values)
    (branch_kernel,), branch_norm, (hidden_kernel,), hidden_norm, (logit_kernel,) = [
        layer.get_weights() for layer in model.layers if layer.weights
    ]
    assert hidden_kernel.shape == (1, 1, filters, 32) and logit_kernel.shape == (1, 1, 32, 2 * filters)
    x = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)

    both = _batch_norm_relu(_conv_same(x, branch_kernel), *branch_norm)
    first, second = both[..., :filters], both[..., filters:]
    context = (first + second).mean(axis=(1, 2), keepdims=True)
    logits = _batch_norm_relu(context @ hidden_kernel[0, 0], *hidden_norm) @ logit_kernel[0, 0]
    weight = 1 / (1 + np.exp(logits[..., filters:] - logits[..., :filters]))  # softmax of two: the first's share
    expected = weight * first + (1 - weight) * second

    assert 0.05 < weight.min() and weight.max() < 0.95
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-4, atol=1e-5)


@functools.cache
def small_resnet50(size: int, sk_ratio: float) -> keras.Model:
    """ResNet-50 at width 1/8 (8 base channels) for `size` px colour images, built once."""
    return build_encoder("resnet50", (size, size, 3), 0.125, sk_ratio)


def _convs(encoder):
    return [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]


def test_sk_resnets_take_a_deep_stem_at_imagenet_size_and_keep_the_cifar_stem_at_32_px():
    imagenet = small_resnet50(64, SK)
    stem = _convs(imagenet)[:3]
    assert [conv.kernel_size for conv in stem] == [(3, 3)] * 3
    assert [conv.strides for conv in stem] == [(2, 2), (1, 1), (1, 1)]
    assert [conv.filters for conv in stem] == [4, 4, 8]
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in imagenet.layers)
    cifar = small_resnet50(32, SK)
    first = _convs(cifar)[0]
    assert (first.kernel_size, first.strides, first.filters) == ((3, 3), (1, 1), 8)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in cifar.layers)


@pytest.mark.parametrize("size", [32, 64])
def test_every_bottleneck_of_an_sk_resnet_has_a_selective_kernel_conv(size):
    encoder = small_resnet50(size, SK)
    # Each selective-kernel conv pools its branches once; the last pooling gives h.
    pools = [layer for layer in encoder.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    assert len(pools) == 3 + 4 + 6 + 3 + 1


def test_sk_projection_shortcuts_average_pool_then_convolve_at_stride_1():
    plain = small_resnet50(64, 0.0)
    assert sum(conv.kernel_size == (1, 1) and conv.strides == (2, 2) for conv in _convs(plain)) == 3
    assert not any(isinstance(layer, keras.layers.AveragePooling2D) for layer in plain.layers)
    sk = small_resnet50(64, SK)
    assert all(conv.strides == (1, 1) for conv in _convs(sk) if conv.kernel_size == (1, 1))
    pools = [layer for layer in sk.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert [(pool.pool_size, pool.strides) for pool in pools] == [((2, 2), (1, 1))] + [((2, 2), (2, 2))] * 3


def test_an_sk_resnet101_gives_a_flat_representation_of_2048_times_width_units():
    encoder = build_encoder("resnet101", (64, 64, 3), 0.125, SK)
    assert encoder(np.zeros((2, 64, 64, 3), np.float32)).shape == (2, 2048 // 8)


def test_the_encoder_name_says_depth_width_and_selective_kernels():
    assert small_resnet50(64, 0.0).name == "resnet50_w0.125"
    assert small_resnet50(64, SK).name == "resnet50_w0.125_sk"
    assert small_resnet50(32, 0.125).name == "resnet50_w0.125_sk0.125"


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "resnet34"])
def test_selective_kernels_need_a_bottleneck_resnet(name):
    with pytest.raises(UsageError, match="sk_ratio=0.0625 needs a bottleneck ResNet .* set sk_ratio to 0"):
        build_encoder(name, (32, 32, 3), 0.125, SK)


def test_a_negative_sk_ratio_is_a_usage_error_in_the_library_and_the_config():
    with pytest.raises(UsageError, match="sk_ratio must be >= 0, got -0.5"):
        build_encoder("resnet50", (32, 32, 3), 0.125, -0.5)
    with pytest.raises(UsageError, match="sk_ratio must be >= 0, got -0.5"):
        PretrainConfig(sk_ratio=-0.5).validate()


def test_a_run_builds_its_encoder_with_the_configured_selective_kernels(tmp_path):
    run = prepare(PretrainConfig(encoder="resnet50", width=0.125, sk_ratio=SK, model_dir=str(tmp_path)))
    assert run.new_encoder().name == "resnet50_w0.125_sk"
