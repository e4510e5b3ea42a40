"""BYOL's and SimSiam's heads are the papers' networks: their trainable parameters,
counted by hand from the reference code, on ResNet-50's 2048-d and ResNet-18's 512-d h."""

import keras
import pytest

from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import UsageError
from contrastive_tf.methods import contrastive_model


def _method(method: str, width: int, **settings):
    """The method's model as `create` builds it, on an encoder whose h is `width` wide."""
    encoder = keras.Sequential([keras.Input((width,)), keras.layers.Identity()])
    return contrastive_model(method, encoder, keras.layers.Identity(), **settings)


def _trainable(layer: keras.layers.Layer) -> int:
    return sum(int(keras.ops.size(weight)) for weight in layer.trainable_weights)


# (method, width of h): trainable parameters of (projector, predictor).
#
# BYOL, google-deepmind/byol byol/utils/networks.py, MLP (projector and predictor alike):
# Linear(hidden) -> BatchNorm(scale, offset) -> ReLU -> Linear(out, no bias), hidden 4096,
# out 256. Its first Linear has a bias, which the BN's mean subtraction cancels; we leave
# it out (as SimCLR's tf2/model.py LinearLayer and SimSiam's builder do), so each MLP
# counts 4096 fewer than the reference: in x 4096 + 2 x 4096 (BN) + 4096 x 256.
# The CIFAR recipe (solo-learn scripts/pretrain/cifar/byol.yaml) keeps these sizes on 512-d h.
#
# SimSiam, facebookresearch/simsiam simsiam/builder.py, SimSiam.__init__: projector
# Linear(no bias)-BN-ReLU twice, then Linear-BN(affine=False), all 2048 wide; the last
# Linear's bias is frozen (requires_grad=False) and cancelled by the BN, so it is not
# trained and we leave it out. Predictor Linear(2048->512, no bias)-BN-ReLU-Linear(512->2048)
# with a bias. The CIFAR recipe (solo-learn scripts/pretrain/cifar/simsiam.yaml) keeps
# 2048 / 2048 / 512 on 512-d h.
PAPER_COUNTS = {
    ("byol", 2048): (
        2048 * 4096 + 2 * 4096 + 4096 * 256,  # 9,445,376 (reference: 9,449,472 with the cancelled bias)
        256 * 4096 + 2 * 4096 + 4096 * 256,  # 2,105,344 (reference: 2,109,440)
    ),
    ("byol", 512): (
        512 * 4096 + 2 * 4096 + 4096 * 256,  # 3,153,920 (reference: 3,158,016)
        256 * 4096 + 2 * 4096 + 4096 * 256,  # 2,105,344
    ),
    ("simsiam", 2048): (
        2048 * 2048 + 2 * 2048 + 2048 * 2048 + 2 * 2048 + 2048 * 2048,  # 12,591,104
        2048 * 512 + 2 * 512 + 512 * 2048 + 2048,  # 2,100,224
    ),
    ("simsiam", 512): (
        512 * 2048 + 2 * 2048 + 2048 * 2048 + 2 * 2048 + 2048 * 2048,  # 9,445,376
        2048 * 512 + 2 * 512 + 512 * 2048 + 2048,  # 2,100,224
    ),
}


@pytest.mark.parametrize("method, width", PAPER_COUNTS)
def test_heads_have_the_papers_parameter_counts(method, width):
    model = _method(method, width)
    counted = (_trainable(model.projection_head), _trainable(model.predictor))
    assert counted == PAPER_COUNTS[method, width]


def test_simsiam_projection_ends_in_a_batch_norm_without_scale_or_shift():
    model = _method("simsiam", 32, projection_dim=16, projection_hidden_dim=16, predictor_hidden_dim=4)
    last = model.projection_head.norm_layers[-1]
    assert len(model.projection_head.norm_layers) == 3
    assert not last.scale and not last.center and last.trainable_weights == []


def test_byol_mlps_end_in_a_dense_without_bias():
    model = _method("byol", 32, projection_dim=16, projection_hidden_dim=16, predictor_hidden_dim=8)
    for mlp in (model.projection_head, model.predictor):
        assert [dense.use_bias for dense in mlp.dense_layers] == [False, False]
        assert len(mlp.norm_layers) == 1  # the hidden layer's only


def test_config_fields_set_the_head_sizes():
    config = PretrainConfig(method="byol", projection_dim=16, projection_hidden_dim=64, predictor_hidden_dim=32)
    model = _method("byol", 32, **config.method_settings())
    assert [dense.units for dense in model.projection_head.dense_layers] == [64, 16]
    assert [dense.units for dense in model.predictor.dense_layers] == [32, 16]
    with pytest.raises(UsageError, match="simclr does not use predictor_hidden_dim"):
        PretrainConfig(method="simclr", predictor_hidden_dim=64).validate()
