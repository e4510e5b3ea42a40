"""Encoders and projection heads: shapes, stems, width, synchronised batch norm."""

import keras
import numpy as np
import pytest

from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead


@pytest.mark.parametrize(
    "name, input_shape, width, units",
    [
        ("small_cnn", (28, 28, 1), 1.0, 256),
        ("small_cnn", (28, 28, 1), 0.5, 128),
        ("resnet18", (32, 32, 3), 0.25, 128),
        ("resnet34", (32, 32, 3), 0.125, 64),
        ("resnet50", (32, 32, 3), 0.125, 256),
        ("resnet18", (64, 64, 3), 0.125, 64),
    ],
)
def test_encoder_gives_a_flat_representation(name, input_shape, width, units):
    encoder = build_encoder(name, input_shape, width)
    h = encoder(np.zeros((2, *input_shape), np.float32))
    assert h.shape == (2, units)


def test_small_images_get_the_cifar_stem_and_large_ones_the_imagenet_stem():
    cifar = build_encoder("resnet18", (32, 32, 3), 0.125)
    imagenet = build_encoder("resnet18", (64, 64, 3), 0.125)
    first_conv = [layer for layer in cifar.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert first_conv.kernel_size == (3, 3) and first_conv.strides == (1, 1)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in cifar.layers)
    first_conv = [layer for layer in imagenet.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert first_conv.kernel_size == (7, 7) and first_conv.strides == (2, 2)
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in imagenet.layers)


def test_resnet18_has_the_standard_parameter_count():
    # ResNet-18 with the CIFAR stem and no classifier: 11.17 M parameters.
    assert build_encoder("resnet18", (32, 32, 3)).count_params() == pytest.approx(11.17e6, rel=0.01)


def test_every_batch_norm_is_synchronised():
    for encoder in (build_encoder("small_cnn", (28, 28, 1)), build_encoder("resnet18", (32, 32, 3), 0.125)):
        norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(layer.synchronized for layer in norms)


def test_unknown_encoder_and_bad_width_are_usage_errors():
    with pytest.raises(UsageError, match="unknown encoder 'vgg'"):
        build_encoder("vgg", (32, 32, 3))
    with pytest.raises(UsageError, match="width must be > 0"):
        build_encoder("resnet18", (32, 32, 3), 0)


def test_small_cnn_pools_h_over_a_grid_of_the_last_feature_map():
    encoder = build_encoder("small_cnn", (28, 28, 1), pooling_grid=2)
    assert encoder.name == "small_cnn_w1_grid2"
    images = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    last_relu = [layer for layer in encoder.layers if isinstance(layer, keras.layers.ReLU)][-1]
    maps = np.asarray(keras.Model(encoder.inputs, last_relu.output)(images))
    assert maps.shape == (3, 4, 4, 256)
    # Cell (i, j) of the 2x2 grid averages rows 2i..2i+1 and columns 2j..2j+1; h flattens
    # the cells row by row with the channels innermost.
    cells = maps.reshape(3, 2, 2, 2, 2, 256).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(encoder(images)), cells.reshape(3, 1024), rtol=1e-5, atol=1e-6)
    assert build_encoder("small_cnn", (28, 28, 1), pooling_grid=1).output_shape == (None, 256)


def test_pooling_grid_is_a_small_cnn_option_no_finer_than_its_last_map():
    with pytest.raises(UsageError, match="pooling_grid=2 is a small_cnn option; resnet18 pools globally"):
        build_encoder("resnet18", (32, 32, 3), 0.125, pooling_grid=2)
    with pytest.raises(UsageError, match="finer than small_cnn's last feature map \\(4x4 for 28x28 images\\)"):
        build_encoder("small_cnn", (28, 28, 1), pooling_grid=5)
    with pytest.raises(UsageError, match="pooling_grid must be >= 1"):
        build_encoder("small_cnn", (28, 28, 1), pooling_grid=0)


@pytest.mark.parametrize("num_layers, batch_norm", [(2, False), (3, True)])
def test_projection_head_v1_and_v2(num_layers, batch_norm):
    head = ProjectionHead(num_layers=num_layers, output_dim=16)
    z = head(np.ones((4, 32), np.float32))
    assert z.shape == (4, 16) and head.batch_norm is batch_norm
    assert len(head.dense_layers) == num_layers
    assert head.layers_upto(1, np.ones((4, 32), np.float32)).shape == (4, 32)  # hidden width = width of h


def test_projection_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(num_layers=0)
    with pytest.raises(ValueError, match="output_dim"):
        ProjectionHead(output_dim=0)


def test_projection_head_batch_norm_uses_the_encoders_momentum_and_epsilon():
    # SimCLR's head normalises as its ResNet does (tf2/resnet.py, BatchNormRelu: decay 0.9, epsilon 1e-5).
    head = ProjectionHead(num_layers=3, output_dim=16)
    head.build((None, 32))
    encoder = build_encoder("small_cnn", (28, 28, 1), 0.25)
    encoder_norm = next(layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert len(head.norm_layers) == 3
    for norm in head.norm_layers:
        assert (norm.momentum, norm.epsilon) == (0.9, 1e-5) == (encoder_norm.momentum, encoder_norm.epsilon)


def test_projection_head_can_normalise_the_output_alone():
    head = ProjectionHead(num_layers=2, output_dim=8, batch_norm=False, output_norm=True)
    x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    z = np.asarray(head(x, training=True))
    assert len(head.norm_layers) == 1 and head.dense_layers[0].use_bias and not head.dense_layers[1].use_bias
    # In training mode the last BN (scale 1, no shift) gives each feature mean 0 and variance ~1.
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=0), 1, atol=1e-2)


# (kernel std x sqrt(fan_in), the same x sqrt(fan_out)) the reference code draws: a 3x3 conv
# keeping the width has fan_in = fan_out; one doubling it (stride 2) has fan_out = 2 fan_in.
# google-research/simclr tf2/resnet.py: VarianceScaling() (scale 1, fan_in, truncated normal);
# torchvision/models/resnet.py: kaiming_normal_(mode="fan_out", nonlinearity="relu");
# torch/nn/modules/conv.py, reset_parameters: kaiming_uniform_(a=sqrt(5)), U(+-1/sqrt(fan_in)).
CONV_DRAWS = {
    "keras": (np.sqrt(2), None),
    "simclr": (1.0, None),
    "torchvision": (None, np.sqrt(2)),
    "pytorch": (1 / np.sqrt(3), None),
}


@pytest.mark.parametrize("initializer", CONV_DRAWS)
def test_initializer_draws_the_convolutions_as_its_reference(initializer):
    keras.utils.set_random_seed(0)
    encoder = build_encoder("resnet18", (32, 32, 3), 0.5, initializer=initializer)
    convs = [layer.kernel.numpy() for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    for kernel in [k for k in convs if k.shape == (3, 3, 128, 128)][:1] + [
        k for k in convs if k.shape == (3, 3, 64, 128)
    ]:
        fan_in, fan_out = 9 * kernel.shape[2], 9 * kernel.shape[3]
        by_fan_in, by_fan_out = CONV_DRAWS[initializer]
        expected = by_fan_in / np.sqrt(fan_in) if by_fan_in else by_fan_out / np.sqrt(fan_out)
        assert kernel.std() == pytest.approx(expected, rel=0.02)
        if initializer == "pytorch":
            assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in)


def test_initializer_is_refused_for_encoders_that_draw_their_own():
    with pytest.raises(UsageError, match="initializer pytorch is for small_cnn and the ResNets; MobileNetV3Small"):
        build_encoder("MobileNetV3Small", (32, 32, 3), initializer="pytorch")
    with pytest.raises(UsageError, match="unknown initializer 'torch'; choose one of keras, simclr"):
        build_encoder("resnet18", (32, 32, 3), initializer="torch")


def test_zero_init_residual_false_starts_every_batch_norm_scale_at_one():
    """torchvision's ResNet (solo-learn) and lightly's ResNetGenerator start the residual
    branch's last batch-norm scale at 1; SimCLR's at 0."""
    scales = {
        zero: [
            float(np.min(layer.gamma.numpy()))
            for layer in build_encoder("resnet18", (32, 32, 3), width=0.125, zero_init_residual=zero).layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        for zero in (True, False)
    }
    assert scales[False] == [1.0] * len(scales[False])
    assert scales[True].count(0.0) == 8  # the second BN of each of ResNet-18's 8 blocks


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_input_normalization_standardises_the_pixels_as_torchvisions_normalize(name):
    encoder = build_encoder(name, (32, 32, 3), width=0.125, input_normalization="imagenet")
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    standardised = encoder.get_layer("input_normalization")(images).numpy()
    # torchvision.transforms.Normalize: (x - mean) / std per channel; lightly's IMAGENET_NORMALIZE.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(standardised, (images - mean) / std, rtol=1e-5, atol=1e-5)


def test_input_normalization_of_grayscale_images_is_refused_in_one_line():
    with pytest.raises(
        UsageError, match="input_normalization cifar10 standardises 3 colour channels; these images have 1"
    ):
        build_encoder("small_cnn", (28, 28, 1), input_normalization="cifar10")
