"""MoCo v3 (facebookresearch/moco-v3, moco/builder.py): its loss, its heads and its step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import method_model, random_images
from contrastive_tf.losses import mocov3_loss
from contrastive_tf.methods import METHODS
from contrastive_tf.methods.momentum import byol_momentum
from references import numpy_mocov3


def test_loss_is_moco_v3s_contrastive_loss():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 10, 8)).astype(np.float32)
    for temperature in (0.2, 1.0):
        assert float(mocov3_loss(q, k, temperature)) == pytest.approx(numpy_mocov3(q, k, temperature), rel=1e-5)


def test_the_defaults_are_the_vit_recipes():
    """CONFIG.md's ViT runs: --moco-t=.2 --moco-m-cos, dim 256, mlp_dim 4096; builder.py
    MoCo_ViT: a 3-layer projector and a 2-layer predictor, both ending in BN without affine."""
    settings = METHODS["mocov3"].settings()
    assert {k: settings[k] for k in ("temperature", "target_momentum", "momentum_schedule")} == {
        "temperature": 0.2,
        "target_momentum": 0.99,
        "momentum_schedule": "cosine",
    }
    model = method_model("mocov3", projection_dim=16, projection_hidden_dim=32, predictor_hidden_dim=8)
    for head, layers in ((model.projection_head, 3), (model.predictor, 2)):
        assert len(head.dense_layers) == len(head.norm_layers) == layers
        assert not any(dense.use_bias for dense in head.dense_layers)
        assert not (head.norm_layers[-1].center or head.norm_layers[-1].scale)
    # The ResNet runs' predictor: `_build_mlp(2, dim, mlp_dim, dim, False)`.
    model = method_model("mocov3", projection_dim=16, predictor_hidden_dim=8, predictor_output_norm=False)
    assert len(model.predictor.norm_layers) == 1 and not model.predictor.dense_layers[-1].use_bias


def test_first_step_loss_is_the_symmetric_loss_on_the_networks_projections():
    """With identical views and the key network equal to the online one: ctr(q, k) + ctr(q, k)."""
    keras.utils.set_random_seed(0)
    images = random_images()
    model = method_model("mocov3", projection_dim=16, projection_hidden_dim=32, predictor_hidden_dim=8)
    x = images.astype(np.float32) / 255
    z = model.projection_head(model.encoder(x, training=True), training=True)
    q, k = np.asarray(model.predictor(z, training=True)), np.asarray(z)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    loss = model.fit(tf.data.Dataset.from_tensors(images), epochs=1, verbose=0).history["loss"][0]
    assert loss == pytest.approx(2 * numpy_mocov3(q, k, 0.5), rel=2e-3)


def test_the_key_network_moves_before_it_makes_the_steps_keys():
    """main_moco.py: `_update_momentum_encoder(m)` with the step's m comes first in `forward`;
    after two steps the key network is m1 (m0 k + (1 - m0) w0) + (1 - m1) w1."""
    model = method_model("mocov3", target_momentum=0.5, total_steps=4, projection_dim=16, projection_hidden_dim=32)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    keys, online = model.target_network.weights, [*model.encoder.weights, *model.projection_head.weights]
    index = next(i for i, w in enumerate(online) if w.trainable and len(w.shape) == 4)
    expected = np.asarray(keys[index])
    for step in range(2):
        m = float(byol_momentum(step, 4, 0.5))
        expected = m * expected + (1 - m) * np.asarray(online[index])
        model.fit(tf.data.Dataset.from_tensors(random_images(seed=step)), epochs=1, verbose=0)
    np.testing.assert_allclose(keys[index], expected, rtol=1e-5, atol=1e-6)


def test_a_mocov3_model_round_trips_through_a_keras_file(tmp_path):
    model = method_model("mocov3", projection_dim=16, projection_hidden_dim=32, predictor_hidden_dim=8)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.temperature == 0.5 and len(restored.weights) == len(model.weights)
