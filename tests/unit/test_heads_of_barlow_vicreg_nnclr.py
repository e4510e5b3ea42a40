"""Barlow Twins', VICReg's and NNCLR's heads are the references' networks (trainable
parameters counted by hand from the reference code, at the CIFAR-10 recipes' widths on
ResNet-18's 512-d h), and their defaults are the papers'."""

import keras
import pytest

from builders import method_model
from contrastive_tf.methods import METHODS, contrastive_model


def _trainable(layer: keras.layers.Layer) -> int:
    return sum(int(keras.ops.size(weight)) for weight in layer.trainable_weights)


def _method(method: str, **settings):
    encoder = keras.Sequential([keras.Input((512,)), keras.layers.Identity()])
    return contrastive_model(method, encoder, keras.layers.Identity(), **settings)


# Barlow Twins, facebookresearch/barlowtwins main.py, BarlowTwins.__init__: Linear(no bias)-
# BN-ReLU twice, then Linear(no bias); solo-learn's CIFAR-10 recipe makes every layer 2048.
# VICReg, facebookresearch/vicreg main_vicreg.py, Projector: the same, but its hidden Linear
# layers have a bias, which the BN cancels and we leave out (2 x 2048 fewer).
EXPANDER_2048 = 512 * 2048 + 2 * 2048 + 2048 * 2048 + 2 * 2048 + 2048 * 2048  # 9,445,376

# NNCLR, solo-learn solo/methods/nnclr.py, NNCLR.__init__: projector Linear-BN-ReLU,
# Linear-BN-ReLU, Linear-BN, all Linear with a bias; ours drops the biases before BN
# (2048 + 2048 + 256) and the last BN's shift (256). Predictor Linear(256 -> 4096)-BN-ReLU-
# Linear(4096 -> 256), both with a bias; ours drops the first (4096).
NNCLR_PROJECTOR = 512 * 2048 + 2 * 2048 + 2048 * 2048 + 2 * 2048 + 2048 * 256 + 256  # 5,775,616
NNCLR_PREDICTOR = 256 * 4096 + 2 * 4096 + 4096 * 256 + 256  # 2,105,600


@pytest.mark.parametrize("method", ["barlow_twins", "vicreg"])
def test_the_expander_has_the_references_parameter_count(method):
    model = _method(method, projection_dim=2048, projection_hidden_dim=2048)
    assert _trainable(model.projection_head) == EXPANDER_2048
    assert [dense.use_bias for dense in model.projection_head.dense_layers] == [False, False, False]
    assert len(model.projection_head.norm_layers) == 2  # none after the last layer


def test_nnclr_heads_have_the_references_parameter_counts():
    model = _method("nnclr", queue_size=64)
    assert (_trainable(model.projection_head), _trainable(model.predictor)) == (NNCLR_PROJECTOR, NNCLR_PREDICTOR)
    assert len(model.projection_head.norm_layers) == 3  # batch norm after every layer


def test_the_defaults_are_the_papers():
    """Barlow Twins: projector 8192-8192-8192, lambda 5e-3 (Zbontar et al. 2021). VICReg:
    expander 8192-8192-8192, coefficients 25 / 25 / 1 (the reference's main_vicreg.py
    defaults). NNCLR: projector [2048, 2048, 256], predictor [4096, 256], temperature 0.1,
    support set 98,304 (Dwibedi et al. 2021). All three draw BYOL's asymmetric views."""
    expander = {
        "projection_layers": 3,
        "projection_dim": 8192,
        "projection_hidden_dim": 8192,
        "head_output_bias": False,
    }
    views = {"asymmetric_views": True, "color_jitter": "torchvision"}
    barlow = {"redundancy_weight": 5e-3, **expander, **views, "loss_scale": 1.0}
    assert METHODS["barlow_twins"].settings() == barlow
    weights = {"invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0}
    unset = {"projection_dim": None, "projection_hidden_dim": None}  # 4 x batch, at most 8192: see below
    assert METHODS["vicreg"].settings() == {**weights, **expander, **unset, **views}
    assert METHODS["nnclr"].settings() == {
        "temperature": 0.1,
        "queue_size": 98304,
        "projection_layers": 3,
        "projection_dim": 256,
        "projection_hidden_dim": 2048,
        "predictor_hidden_dim": 4096,
        **views,
    }


@pytest.mark.parametrize("method", ["byol", "barlow_twins", "vicreg"])
def test_head_output_bias_gives_the_heads_last_dense_a_bias_as_lightly_and_solo_learn(method):
    """lightly's BYOLProjectionHead / BYOLPredictionHead and solo-learn's Barlow Twins and
    VICReg projectors end in nn.Linear(..., bias=True); the papers' references have none."""
    for bias in (False, True):
        model = method_model(method, head_output_bias=bias)
        heads = [model.projection_head] + ([model.predictor] if method == "byol" else [])
        assert [head.dense_layers[-1].use_bias for head in heads] == [bias] * len(heads)


@pytest.mark.parametrize("batch_size, width", [(None, 8192), (128, 512), (2048, 8192), (4096, 8192)])
def test_vicreg_expander_keeps_the_papers_width_per_image_unless_set(batch_size, width):
    """The paper's 8192 at batch 2048 (Bardes et al. 2022, sec. 4.1), scaled down with the
    batch so that the covariance term does not hold the variances down."""
    encoder = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()])
    model = contrastive_model("vicreg", encoder, keras.layers.Identity(), batch_size=batch_size)
    assert [layer.units for layer in model.projection_head.dense_layers] == [width] * 3
    model = contrastive_model("vicreg", encoder, keras.layers.Identity(), batch_size=128, projection_dim=64)
    assert [layer.units for layer in model.projection_head.dense_layers] == [512, 512, 64]
