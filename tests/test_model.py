"""The SimCLR keras.Model: fit, metrics, .keras files, and training under MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods import SimCLR
from contrastive_tf.precision import global_precision


def _images(count=32, size=28, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8)


def _model(augmenter=None, num_classes=None, projection_layers=2):
    return SimCLR(
        encoder=build_encoder("small_cnn", (28, 28, 1), width=0.25),
        projection_head=ProjectionHead(projection_layers, 16),
        augmenter=augmenter or SimCLRAugment(seed=0),
        temperature=0.5,
        num_classes=num_classes,
    )


def test_fit_logs_loss_contrastive_and_probe_accuracy():
    model = _model(num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    labels = np.arange(32) % 10
    history = model.fit(_images(), labels, batch_size=8, epochs=2, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy", "probe_loss", "probe_accuracy"}
    assert all(np.isfinite(history["loss"]))
    # With 8 images (16 views) a chance-level loss is about log(15).
    assert 1.0 < history["loss"][0] < 2 * np.log(15)


def test_fit_without_labels_trains_without_the_probe():
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(_images(), batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy"}


def test_call_returns_the_representation():
    model = _model()
    h = model(_images(4))
    assert h.shape == (4, 64)  # small_cnn width 0.25: 256 * 0.25 units


def test_model_round_trips_through_a_keras_file(tmp_path):
    model = _model(num_classes=10, projection_layers=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(_images(), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "simclr.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, SimCLR) and restored.temperature == 0.5 and restored.num_classes == 10
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) == 4  # optimizer state came too
    images = _images(4, seed=1)
    np.testing.assert_allclose(restored(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6)
    # It keeps training from where it was.
    restored.fit(_images(), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)


def _one_step_weights(strategy, initial_weights, images):
    with strategy.scope():
        model = _model(augmenter=keras.layers.Identity())
        model.build((None, 28, 28, 1))
        model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(len(images)), epochs=1, verbose=0)
    return history.history["loss"][0], model.get_weights()


def test_mirrored_training_step_matches_single_device(mirrored):
    """Gathered negatives, synchronised batch norm and the gradient scaling together make
    one step on 2 replicas equal one step on one device with the same global batch."""
    keras.utils.set_random_seed(0)
    images = _images(16, seed=3)
    reference = _model(augmenter=keras.layers.Identity())
    reference.build((None, 28, 28, 1))
    initial = reference.get_weights()
    single_loss, single_weights = _one_step_weights(tf.distribute.OneDeviceStrategy("/cpu:0"), initial, images)
    mirrored_loss, mirrored_weights = _one_step_weights(mirrored, initial, images)
    assert mirrored_loss == pytest.approx(single_loss, rel=1e-4)
    single_updates = [after - before for before, after in zip(initial, single_weights)]
    mirrored_updates = [after - before for before, after in zip(initial, mirrored_weights)]
    # Replicas sum in another order, and synchronised BN takes the variance from all-reduced
    # sums rather than in two passes, so updates agree to rounding, not bits. Rounding stays
    # near 1e-5 overall but can reach 1e-2 on one small BN vector on some CPUs. A missing
    # gather, unsynchronised BN or a doubled gradient is off by tens of percent or more.
    assert _relative_difference(mirrored_updates, single_updates) < 1e-2
    for single, distributed in zip(single_updates, mirrored_updates):
        if np.linalg.norm(single) > 0:  # zero e.g. for the moving variance of a constant channel
            assert _relative_difference([distributed], [single]) < 5e-2


def _relative_difference(updates, reference):
    difference = np.concatenate([(u - r).ravel() for u, r in zip(updates, reference)])
    return np.linalg.norm(difference) / np.linalg.norm(np.concatenate([r.ravel() for r in reference]))


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(build_encoder("small_cnn", (28, 28, 1)), ProjectionHead(), SimCLRAugment(), temperature=0.0)


def test_fit_compiles_the_whole_step_with_xla():
    """jit_compile=True (the default on GPUs and TPUs) compiles augmentation, encoder and loss."""
    model = _model(num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(_images(), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 1.0 < history["loss"][0] < 2 * np.log(15)


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
    history = model.fit(_images(16), batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert keras.mixed_precision.global_policy().name == "float32"
