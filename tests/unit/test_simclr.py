"""The SimCLR keras.Model: fit, metrics, .keras files, XLA and mixed precision."""

import keras
import numpy as np
import pytest

from builders import random_images, simclr_model
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods import SimCLR, contrastive_model
from contrastive_tf.precision import global_precision
from references import numpy_lightly_simclr_head, numpy_simclr_loss


def test_fit_logs_loss_contrastive_and_probe_accuracy():
    model = simclr_model(num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    labels = np.arange(32) % 10
    history = model.fit(random_images(32), labels, batch_size=8, epochs=2, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy", "probe_loss", "probe_accuracy"}
    assert all(np.isfinite(history["loss"]))
    # With 8 images (16 views) a chance-level loss is about log(15) per view, 2 log(15) in all.
    assert 2.0 < history["loss"][0] < 2 * 2 * np.log(15)


def test_fit_without_labels_trains_without_the_probe():
    model = simclr_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(random_images(32), batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy"}


def test_call_returns_the_representation():
    model = simclr_model()
    h = model(random_images(4))
    assert h.shape == (4, 64)  # small_cnn width 0.25: 256 * 0.25 units


def test_model_round_trips_through_a_keras_file(tmp_path):
    model = simclr_model(num_classes=10, projection_layers=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(random_images(32), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "simclr.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, SimCLR) and restored.temperature == 0.5 and restored.num_classes == 10
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) == 4  # optimizer state came too
    images = random_images(4, seed=1)
    np.testing.assert_allclose(restored(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6)
    # It keeps training from where it was.
    restored.fit(random_images(32), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(build_encoder("small_cnn", (28, 28, 1)), ProjectionHead(), SimCLRAugment(), temperature=0.0)


def test_fit_compiles_the_whole_step_with_xla():
    """jit_compile=True (the default on GPUs and TPUs) compiles augmentation, encoder and loss."""
    model = simclr_model(num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(random_images(32), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 2.0 < history["loss"][0] < 2 * 2 * np.log(15)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_step_at_low_temperature_is_finite(policy):
    """The encoder computes in half precision; NT-Xent's normalisation and softmax stay in float32."""
    with global_precision(policy):
        model = SimCLR(
            encoder=build_encoder("small_cnn", (28, 28, 1), width=0.25),
            projection_head=ProjectionHead(2, 16),
            augmenter=SimCLRAugment(seed=0),
            temperature=0.05,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert model.encoder.compute_dtype == policy.removeprefix("mixed_")
    history = model.fit(random_images(16), batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert keras.mixed_precision.global_policy().name == "float32"


class _RecordingEncoder(keras.Model):
    """An encoder that records the batch size of every call."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.calls = encoder, []

    def call(self, images, training=False):
        self.calls.append(int(images.shape[0]))
        return self.encoder(images, training=training)


@pytest.mark.parametrize("num_views", [2, 3])
def test_one_step_runs_the_encoder_once_over_all_views(num_views):
    """As google-research/simclr tf2/model.py (Model.__call__, tf.concat(features_list, 0)):
    batch norm sees all V*N views at once and moves its averages once per step."""
    encoder = _RecordingEncoder(build_encoder("small_cnn", (28, 28, 1), width=0.25))
    model = SimCLR(encoder, ProjectionHead(2, 16), SimCLRAugment(seed=0), num_views=num_views, num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    encoder.calls.clear()
    model.fit(random_images(8), np.arange(8), batch_size=8, epochs=1, verbose=0)
    assert encoder.calls == [num_views * 8]


def test_the_loss_is_the_references_loss_a_plus_loss_b():
    """SimCLR's step loss equals google-research/simclr tf2/objective.py add_contrastive_loss
    on the projections of the same views (the identity augmenter makes them known)."""
    keras.utils.set_random_seed(0)
    model = simclr_model(augmenter=keras.layers.Identity())
    images = random_images(8)
    z = np.asarray(model.projection_head(model.encoder(np.concatenate([images] * 2) / 255, training=True)))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    loss = model.fit(images, batch_size=8, epochs=1, verbose=0).history["loss"][0]
    assert loss == pytest.approx(numpy_simclr_loss(z, 0.5), rel=1e-4)


def test_projection_batch_norm_all_is_lightlys_simclr_projection_head():
    """`projection_batch_norm="all"` gives lightly's SimCLRProjectionHead: batch norm with a
    scale and a shift after both Linear layers (no biases), its output the NumPy
    transcription's on the same weights; "none" and "paper" keep SimCLR's heads."""
    encoder = keras.Sequential([keras.Input((32,)), keras.layers.Identity()])
    model = contrastive_model("simclr", encoder, keras.layers.Identity(), projection_batch_norm="all")
    head = model.projection_head
    assert [dense.use_bias for dense in head.dense_layers] == [False, False]
    assert [(norm.center, norm.scale) for norm in head.norm_layers] == [(True, True), (True, True)]
    rng = np.random.default_rng(0)
    layers = []
    for dense, norm in zip(head.dense_layers, head.norm_layers):
        gamma, beta = rng.uniform(0.5, 1.5, norm.gamma.shape), rng.normal(0, 0.5, norm.beta.shape)
        norm.gamma.assign(gamma), norm.beta.assign(beta)
        layers.append((keras.ops.convert_to_numpy(dense.kernel), gamma, beta))
    h = rng.normal(size=(16, 32)).astype("float32")
    z = keras.ops.convert_to_numpy(head(h, training=True))
    np.testing.assert_allclose(z, numpy_lightly_simclr_head(h, layers), rtol=1e-4, atol=1e-4)
    for norm, layers in (("none", 3), ("paper", 2)):
        head = contrastive_model(
            "simclr", encoder, keras.layers.Identity(), projection_batch_norm=norm, projection_layers=layers
        ).projection_head
        assert head.norm_layers == []
    v2 = contrastive_model("simclr", encoder, keras.layers.Identity(), projection_layers=3).projection_head
    assert [(norm.center, norm.scale) for norm in v2.norm_layers] == [(True, True)] * 2 + [(False, True)]
